"""End-to-end: delayed tasks with the real web, worker and scheduler processes.

A task submitted with ``delay_ms`` stays queued, shows its due time, and starts within a second
after it. It survives Redis losing everything (a FLUSHDB of the session's db): the rebalance
finds the queued task without a message and sends it again with the delay that remains, so it
still starts near its due time, once.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from conftest import REDIS_CLAIM_KEY, SESSION_ID

from .api import event_kinds, task
from .stack import FAST_REBALANCE_ENV, Stack

#: How late after its due time a delayed task may start (the issue's promise).
START_TOLERANCE = timedelta(seconds=1)
#: How late a task re-sent after Redis lost it may start, for it to count as "near its due
#: time": the re-send kept the remaining delay (sent with its full delay again, the task below
#: would start about 8 s late; sent with none, it would start early). The one-second promise
#: itself is measured by the first test, with five samples.
RESENT_TOLERANCE = timedelta(seconds=2)
#: One worker process: fewer heartbeats to wait for, the same delay handling.
ONE_WORKER = {**FAST_REBALANCE_ENV, "CALLBOARD_WORKER_PROCESSES": "1"}


def submit_delayed(stack: Stack, delay_ms: int) -> dict:
    """POST an A task delayed by ``delay_ms``; return the answer."""
    response = stack.post(
        "/tasks",
        json={"type": "a", "payload": {"text": "later", "rounds": 1}, "delay_ms": delay_ms},
    )
    assert response.status_code == 202, response.text
    return response.json()


def started(stack: Stack, task_id: str) -> dict | None:
    body = task(stack, task_id)
    return body if body["started_at"] else None


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def assert_started_on_time(body: dict, tolerance: timedelta) -> None:
    run_at, started_at = at(body["run_at"]), at(body["started_at"])
    lateness = started_at - run_at
    # run_at comes from the web process's clock, started_at from PostgreSQL's: same machine.
    assert timedelta(0) <= lateness <= tolerance, (
        f"due {run_at.isoformat()}, started {started_at.isoformat()} ({lateness} late)"
    )


def start_stack(stack: Stack) -> None:
    stack.start(extra_env=ONE_WORKER)
    stack.wait_http_ready()
    stack.wait_workers(1)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_delayed_tasks_stay_queued_until_due_then_start_within_a_second(stack):
    # Given the whole stack
    start_stack(stack)

    # When five tasks are submitted with delays of 2 to 7.2 s: one sample could be lucky, and
    # due times 1.3 s apart meet the worker's polling at independent moments
    delays_ms = [2000 + 1300 * n for n in range(5)]
    submitted = [submit_delayed(stack, delay) for delay in delays_ms]
    for body, delay in zip(submitted, delays_ms, strict=True):
        due_in = at(body["run_at"]) - at(body["created_at"])
        assert abs(due_in - timedelta(milliseconds=delay)) < timedelta(seconds=0.5), body

    # Then until each starts, it is queued with its due time visible
    pending = {body["id"]: body for body in submitted}
    done: dict[str, dict] = {}
    deadline = time.monotonic() + 20
    while pending and time.monotonic() < deadline:
        for task_id, body in list(pending.items()):
            now = task(stack, task_id)
            if now["started_at"] is None:
                assert (now["status"], now["run_at"]) == ("queued", body["run_at"])
            else:
                done[task_id] = pending.pop(task_id)  # judged below, from the ledger's times
        time.sleep(0.05)
    assert not pending, f"never started: {sorted(pending)}"
    # and each started within a second after its due time, and succeeded
    finished = {task_id: task(stack, task_id) for task_id in done}
    late = {}
    for task_id, body in finished.items():
        lateness = at(body["started_at"]) - at(body["run_at"])
        if not timedelta(0) <= lateness <= START_TOLERANCE:
            late[task_id] = lateness.total_seconds()
    assert not late, f"started outside [run_at, run_at + 1 s]: seconds late by task {late}"
    stack.wait_until(
        lambda: all(task(stack, t)["status"] == "succeeded" for t in finished), timeout=10
    )


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("worker", ["kept-running", "restarted"])
def test_a_delayed_task_survives_redis_losing_everything(stack, redis_client, broker, worker):
    # Given the whole stack, with a quick repair loop, and a task due in 10 s whose message
    # Redis holds
    start_stack(stack)
    body = submit_delayed(stack, 10_000)
    task_id = body["id"]
    stack.wait_until(
        lambda: broker.messages_present("a", [task_id])[task_id], timeout=5, message="its message"
    )

    # When Redis loses everything (and, in one variant, the worker's memory is lost too)
    if worker == "restarted":
        stack.kill("worker")
    redis_client.flushdb()
    redis_client.set(REDIS_CLAIM_KEY, SESSION_ID, ex=2 * 3600)  # keep the session's claim
    assert broker.messages_present("a", [task_id]) == {task_id: False}
    if worker == "restarted":
        stack.start(["worker"], extra_env=ONE_WORKER)

    # Then the rebalance sends it again, still delayed: it is queued, not started
    stack.wait_until(
        lambda: "resent" in event_kinds(stack, task_id), timeout=15, message="the re-send"
    )
    assert broker.messages_present("a", [task_id]) == {task_id: True}
    now = task(stack, task_id)
    assert (now["status"], now["started_at"], now["run_at"]) == ("queued", None, body["run_at"])
    # and it starts near its original due time, once
    done = stack.wait_until(lambda: started(stack, task_id), timeout=20, interval=0.05)
    assert_started_on_time(done, RESENT_TOLERANCE)
    stack.wait_until(lambda: task(stack, task_id)["status"] == "succeeded", timeout=10)
    assert event_kinds(stack, task_id).count("started") == 1
