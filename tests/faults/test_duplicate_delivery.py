"""Fault tests: the same message delivered more than once, early, concurrently and late.

Delivery is at least once; the ledger's claim makes the recorded outcome exactly once. Here real
workers get duplicate messages (sent again by the test, under the task's own message id, as the
rebalance or a hand-back would) and a worker frozen with SIGSTOP wakes up after its task was
recovered and finished elsewhere.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from actors.sending import send_tasks
from tests.e2e.api import submit, task, wait_all_final

from .observe import assert_each_succeeded_exactly_once, first, histories
from .workers import (
    ONE_PROCESS,
    RECOVERY_BOUND,
    TICK_PICKUP_ALLOWANCE,
    running_tasks,
    signal_just_after_a_beat,
    wait_liveness_trusted,
)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_messages_delivered_twice_early_concurrently_and_late_record_one_outcome(stack, broker):
    # Given, before any worker runs: an A task whose message was sent twice, a B task, and a
    # cancelled task whose message was sent twice anyway
    stack.start(["web", "scheduler"])
    stack.wait_http_ready()
    twice = submit(stack, "a", {"text": "twice", "rounds": 1000})
    send_tasks(broker, [(twice, "a", None)])
    concurrent = submit(stack, "b", {"duration_ms": 4000, "steps": 4})
    cancelled = submit(stack, "b", {"duration_ms": 100, "steps": 1})
    assert stack.post(f"/tasks/{cancelled}/cancel").status_code == 200
    send_tasks(broker, [(cancelled, "b", None)])

    # When two worker processes start, and the B task's message is sent twice more while it runs
    stack.start(["worker"])
    stack.wait_until(
        lambda: task(stack, concurrent)["status"] == "running", timeout=15, message="B running"
    )
    send_tasks(broker, [(concurrent, "b", None)])
    send_tasks(broker, [(concurrent, "b", None)])
    _wait_ignored(stack, {concurrent: 2})
    assert task(stack, concurrent)["status"] == "running", "the duplicates came too late"
    finished = wait_all_final(stack, [twice, concurrent], timeout=20)

    # Then each task ran once and succeeded once; the cancelled one never started
    assert_each_succeeded_exactly_once(stack, finished)
    for task_id in (twice, concurrent):
        kinds = Counter(e["kind"] for e in histories(stack, [task_id])[task_id])
        assert kinds["started"] == 1 and finished[task_id]["attempts"] == 1, kinds
    assert task(stack, cancelled)["status"] == "cancelled"
    assert "started" not in [e["kind"] for e in histories(stack, [cancelled])[cancelled]]
    # ... every extra delivery was received and ignored, the concurrent ones while the task ran
    expected_ignored = {twice: 1, concurrent: 2, cancelled: 2}
    _wait_ignored(stack, expected_ignored)

    # When late messages arrive for the finished and the cancelled tasks
    before = {t: (task(stack, t), histories(stack, [t])[t]) for t in (twice, concurrent, cancelled)}
    send_tasks(broker, [(twice, "a", None), (concurrent, "b", None), (cancelled, "b", None)])

    # Then they are ignored too, and nothing about those tasks changes
    _wait_ignored(stack, {t: n + 1 for t, n in expected_ignored.items()})
    for task_id, (body, history) in before.items():
        assert task(stack, task_id) == body
        assert histories(stack, [task_id])[task_id] == history


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_worker_frozen_past_its_heartbeat_records_nothing_for_its_reclaimed_task(
    stack, broker, redis_client
):
    # Given a worker running a B task, a second worker, and liveness trusted
    stack.start(["web", "scheduler", "worker"], extra_env=ONE_PROCESS)
    stack.wait_http_ready()
    (frozen,) = stack.wait_workers(1)
    wait_liveness_trusted(stack, redis_client)
    task_id = submit(stack, "b", {"duration_ms": 6000, "steps": 12})
    stack.wait_until(lambda: running_tasks(stack, [task_id], count=1), timeout=10)
    stack.define("worker_2", stack.commands["worker"])
    stack.start(["worker_2"], extra_env=ONE_PROCESS)
    (other,) = [w for w in stack.wait_workers(2) if w["worker_id"] != frozen["worker_id"]]

    # When the first worker is frozen (SIGSTOP) long enough for its heartbeat to expire, and
    # thawed (SIGCONT) once the task was recovered and claimed by the second worker
    last_beat = signal_just_after_a_beat(stack, "worker", frozen["worker_id"], signal.SIGSTOP)
    stack.wait_until(
        lambda: task(stack, task_id)["worker"] == other["worker_id"],
        timeout=RECOVERY_BOUND + 5,
        message="the task to be reclaimed by the second worker",
    )
    stack.signal_group("worker", signal.SIGCONT)

    # Then the task succeeds once, recorded by the second worker's attempt
    finished = wait_all_final(stack, [task_id], timeout=20)
    assert_each_succeeded_exactly_once(stack, finished)
    body = finished[task_id]
    assert (body["worker"], body["attempts"], body["recoveries"]) == (other["worker_id"], 2, 1)
    history = histories(stack, [task_id])[task_id]
    recovered = first(history, "recovered")
    assert recovered["detail"]["dead_worker"] == frozen["worker_id"], history
    recovery_s = (recovered["at"] - last_beat).total_seconds()
    assert recovery_s <= RECOVERY_BOUND + TICK_PICKUP_ALLOWANCE, history
    assert first(history, "succeeded")["worker"] == other["worker_id"], history
    # ... the thawed worker found out it lost the task and dropped its own attempt
    stack.wait_until(
        lambda: f"Task {task_id!r} was taken from this worker" in stack.log_text("worker"),
        timeout=10,
        message="the thawed worker to drop its attempt",
    )
    assert histories(stack, [task_id])[task_id] == history
    # ... and is alive again, beating
    stack.wait_workers(2)

    # When a late message for the task arrives
    send_tasks(broker, [(task_id, "b", None)])

    # Then it is ignored and nothing changes
    _wait_ignored(stack, {task_id: 1})
    assert task(stack, task_id) == body
    assert histories(stack, [task_id])[task_id] == history
    print(f"frozen worker: its task recovered {recovery_s:.3f} s after its last beat")


def _wait_ignored(stack, counts: dict[str, int]) -> None:
    """Wait until the workers logged that they ignored each task's message ``counts`` times."""

    def ignored() -> dict[str, int]:
        logs = stack.log_text("worker") + stack.log_text("worker_2")
        return {t: logs.count(f"Ignoring a message for task {t!r}") for t in counts}

    stack.wait_until(
        lambda: ignored() == counts,
        timeout=15,
        message=lambda: f"ignored deliveries {counts}, seen {ignored()}",
    )
