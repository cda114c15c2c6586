"""Fault tests: worker processes killed with -9, stopped by SIGTERM, and killed by their own task.

Every test runs the real web, scheduler and one or more ``dramatiq`` workers, with a heartbeat
every second (a worker is dead 3 s after its last beat) and a rebalance every 2 s.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import pytest

from actors.sending import send_tasks
from models import transitions
from models.transitions import NewTask
from tests.e2e.api import submit, task, wait_all_final
from tests.e2e.stack import group_pids, wait_until

from .observe import assert_each_succeeded_exactly_once, first, histories
from .workers import (
    BROKER_HEARTBEAT_TIMEOUT,
    HEARTBEAT_INTERVAL,
    ONE_PROCESS,
    REBALANCE_PERIOD,
    RECOVERY_BOUND,
    TICK_PICKUP_ALLOWANCE,
    heartbeat,
    kill_just_after_a_beat,
    running_tasks,
    wait_liveness_trusted,
)

#: The test-only task type of ``tests/faults/suicide_task.py``, and that module's name for a
#: worker's command line. This process does not import it: registering the type here would
#: change the API the other tests see, and the web process does not know it either.
SUICIDE_TYPE = "suicide"
SUICIDE_MODULE = "tests.faults.suicide_task"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_b_tasks_running_and_prefetched_on_a_worker_killed_with_kill_9_all_finish_on_another(
    stack, redis_client
):
    # Given one worker process, and a Redis that has kept its data for a heartbeat lifetime
    stack.start(["web", "scheduler", "worker"], extra_env=ONE_PROCESS)
    stack.wait_http_ready()
    (victim,) = stack.wait_workers(1)
    wait_liveness_trusted(stack, redis_client)
    # ... running five 6 s B tasks and holding five more it prefetched
    tasks = [submit(stack, "b", {"duration_ms": 6000, "steps": 6}) for _ in range(10)]
    running = stack.wait_until(
        lambda: running_tasks(stack, tasks, count=5), timeout=15, message="five B tasks running"
    )
    prefetched = [t for t in tasks if t not in running]
    # ... its heartbeat says who it is and what it holds
    beat = stack.wait_until(
        lambda: (b := heartbeat(stack, victim["worker_id"]))["held"] and b,
        timeout=3 * HEARTBEAT_INTERVAL,
        message="a heartbeat listing the running tasks",
    )
    assert int(beat["pid"]) in group_pids(stack.pid("worker")), beat
    assert beat["threads"] == 5 and {"a", "b", "rebalance"} <= set(beat["queues"]), beat
    assert set(beat["held"]) == set(running), beat
    assert beat["host"] and beat["started_at"] <= beat["beat_at"], beat
    assert beat["processed"] >= 0 and beat["interval"] == HEARTBEAT_INTERVAL, beat
    assert 0 <= beat["age_s"] <= 2 * HEARTBEAT_INTERVAL, beat
    # ... and a second worker, idle
    stack.define("worker_2", stack.commands["worker"])
    stack.start(["worker_2"], extra_env=ONE_PROCESS)
    stack.wait_workers(2)

    # When the first worker's process group is killed with -9, just after it beat
    last_beat = kill_just_after_a_beat(stack, "worker", victim["worker_id"])
    killed_at = datetime.now(UTC)

    # Then every task succeeds once, on the second worker
    finished = wait_all_final(stack, tasks, timeout=45)
    assert_each_succeeded_exactly_once(stack, finished)
    assert all(body["worker"] != victim["worker_id"] for body in finished.values()), finished
    history = histories(stack, tasks)
    # ... the running ones were recovered (naming the dead worker) within the README's bound
    recovery_times = {}
    for task_id in running:
        recovered = first(history[task_id], "recovered")
        assert recovered is not None, history[task_id]
        assert recovered["detail"]["dead_worker"] == victim["worker_id"], recovered
        assert finished[task_id]["recoveries"] == 1, finished[task_id]
        assert finished[task_id]["attempts"] == 2, finished[task_id]
        recovery_times[task_id] = (recovered["at"] - last_beat).total_seconds()
    bound = RECOVERY_BOUND + TICK_PICKUP_ALLOWANCE
    assert max(recovery_times.values()) <= bound, (recovery_times, bound)
    # ... and the prefetched ones, never started there, were given back by Dramatiq's maintenance
    # once the dead process's broker heartbeat was old enough, and ran once, without a recovery
    restart_times = {}
    for task_id in prefetched:
        assert first(history[task_id], "recovered") is None, history[task_id]
        assert finished[task_id]["recoveries"] == 0, finished[task_id]
        assert finished[task_id]["attempts"] == 1, finished[task_id]
        started = first(history[task_id], "started")
        restart_times[task_id] = (started["at"] - killed_at).total_seconds()
    prefetch_bound = BROKER_HEARTBEAT_TIMEOUT + REBALANCE_PERIOD + TICK_PICKUP_ALLOWANCE
    assert max(restart_times.values()) <= prefetch_bound, (restart_times, prefetch_bound)
    print(
        f"kill -9: running tasks recovered {sorted(recovery_times.values())} s after the last"
        f" beat (README bound {RECOVERY_BOUND} s, + {TICK_PICKUP_ALLOWANCE} s pickup); prefetched"
        f" tasks started"
        f" {sorted(restart_times.values())} s after the kill (bound {prefetch_bound} s)"
    )


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_killed_workers_tasks_are_recovered_in_time_while_every_other_thread_is_busy(
    stack, redis_client
):
    # Given a worker whose 5 threads are all busy with long B tasks, prefetching no more
    busy_env = {**ONE_PROCESS, "dramatiq_queue_prefetch": "5"}
    stack.start(["web", "scheduler", "worker"], extra_env=busy_env)
    stack.wait_http_ready()
    (busy,) = stack.wait_workers(1)
    wait_liveness_trusted(stack, redis_client)
    long = [submit(stack, "b", {"duration_ms": 60_000, "steps": 60}) for _ in range(5)]
    stack.wait_until(lambda: running_tasks(stack, long, count=5), timeout=10)
    # ... and a second worker running three B tasks
    stack.define("victim", stack.commands["worker"])
    stack.start(["victim"], extra_env=ONE_PROCESS)
    (victim,) = [w for w in stack.wait_workers(2) if w["worker_id"] != busy["worker_id"]]
    held = [submit(stack, "b", {"duration_ms": 3000, "steps": 3}) for _ in range(3)]
    stack.wait_until(lambda: running_tasks(stack, held, count=3), timeout=10)
    assert {task(stack, t)["worker"] for t in held} == {victim["worker_id"]}

    # When the second worker is killed with -9
    last_beat = kill_just_after_a_beat(stack, "victim", victim["worker_id"])

    # Then its tasks are recovered within the README's bound all the same
    def recovered() -> dict[str, dict] | None:
        found = {t: first(histories(stack, [t])[t], "recovered") for t in held}
        return found if all(found.values()) else None

    events = stack.wait_until(recovered, timeout=RECOVERY_BOUND + 10, message="the recoveries")
    recovery_s = [(e["at"] - last_beat).total_seconds() for e in events.values()]
    bound = RECOVERY_BOUND + TICK_PICKUP_ALLOWANCE
    assert max(recovery_s) <= bound, (recovery_s, bound)
    # ... and once the long tasks are cancelled, they run to the end on the first worker, once
    for task_id in long:
        assert stack.post(f"/tasks/{task_id}/cancel").status_code == 202
    finished = wait_all_final(stack, [*long, *held], timeout=20)
    assert {finished[t]["status"] for t in long} == {"cancelled"}
    assert_each_succeeded_exactly_once(stack, {t: finished[t] for t in held})
    print(f"busy survivor: recovered {sorted(recovery_s)} s after the last beat")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_sigterm_to_a_worker_group_finishes_short_tasks_and_hands_the_rest_to_another_worker(
    stack,
):
    # Given a worker process that stops within 3 s of a SIGTERM, running one B task that can
    # finish within that time and four that cannot, with two more prefetched; the rebalance
    # re-sends nothing for 30 s, so whatever runs again soon was handed back by the stop itself
    env = {**ONE_PROCESS, "CALLBOARD_SHUTDOWN_TIMEOUT": "3", "CALLBOARD_RESEND_GRACE": "30"}
    stack.start(["web", "scheduler", "worker"], extra_env=env)
    stack.wait_http_ready()
    (stopping,) = stack.wait_workers(1)
    short = submit(stack, "b", {"duration_ms": 3000, "steps": 6})
    long = [submit(stack, "b", {"duration_ms": 6000, "steps": 6}) for _ in range(6)]
    running = stack.wait_until(
        lambda: running_tasks(stack, [short, *long], count=5), timeout=15, message="five B running"
    )
    assert short in running, running
    # ... and a second worker with room for all of them
    stack.define("worker_2", stack.commands["worker"])
    stack.start(["worker_2"], extra_env={**env, "CALLBOARD_WORKER_THREADS": "8"})
    (other,) = [w for w in stack.wait_workers(2) if w["worker_id"] != stopping["worker_id"]]

    # When the first worker's process group gets SIGTERM, as honcho sends it
    signalled_at = datetime.now(UTC)
    stack.signal_group("worker", signal.SIGTERM)

    # Then it exits 0 soon after its shutdown timeout (Dramatiq's main process needs up to 1 s
    # more), its heartbeat deleted at once (it would otherwise stay listed for 3 s), and having
    # stopped once however many TERMs arrived
    exit_code = stack.wait_exit("worker", timeout=3 + 5)
    stopped_s = (datetime.now(UTC) - signalled_at).total_seconds()
    assert stopped_s < 3 + 1.5, stopped_s
    listed = [w["worker_id"] for w in stack.get("/workers").json()["workers"]]
    log = stack.log_text("worker")
    assert exit_code == 0, log
    assert listed == [other["worker_id"]], listed
    assert "Killing worker process" not in log, log
    # ... the short task finished there, once, after the signal
    finished = wait_all_final(stack, [short, *long], timeout=30)
    assert_each_succeeded_exactly_once(stack, finished)
    history = histories(stack, [short, *long])
    assert finished[short]["worker"] == stopping["worker_id"], finished[short]
    assert finished[short]["attempts"] == 1, finished[short]
    assert first(history[short], "succeeded")["at"] > signalled_at, history[short]
    # ... and every long one ran to the end on the other worker soon after, without a recovery:
    # the running ones handed back (queued again), the prefetched ones given back to Redis
    restarted_s = {}
    for task_id in long:
        kinds = [event["kind"] for event in history[task_id]]
        assert finished[task_id]["worker"] == other["worker_id"], finished[task_id]
        assert finished[task_id]["recoveries"] == 0, finished[task_id]
        assert "recovered" not in kinds and "resent" not in kinds, kinds
        handed_back = first(history[task_id], "handed_back")
        assert (handed_back is not None) == (task_id in running), kinds
        assert finished[task_id]["attempts"] == (2 if task_id in running else 1), kinds
        if handed_back is not None:
            assert handed_back["worker"] == stopping["worker_id"], handed_back
            assert (handed_back["at"] - signalled_at).total_seconds() < 1, handed_back
        started = first(history[task_id], "started", after=signalled_at)
        assert started["worker"] == other["worker_id"], started
        restarted_s[task_id] = (started["at"] - signalled_at).total_seconds()
    assert max(restarted_s.values()) <= 3 + 2, restarted_s
    print(
        f"SIGTERM: worker exited 0 after {stopped_s:.2f} s; long tasks started on the other"
        f" worker {sorted(round(v, 2) for v in restarted_s.values())} s after the signal"
    )


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_task_that_kills_its_worker_every_time_ends_failed_as_poison_while_others_flow(
    stack, db, broker, redis_client
):
    # Given the usual stack, whose worker does not know the test-only "suicide" type, and a
    # worker for that type alone, restarted whenever it dies (as a PaaS restarts a dyno)
    max_recoveries = 3
    env = {**ONE_PROCESS, "CALLBOARD_MAX_RECOVERIES": str(max_recoveries)}
    stack.start(["web", "scheduler", "worker"], extra_env=env)
    stack.define(
        "poison_worker",
        stack.commands["worker"].replace("dramatiq actors", f"dramatiq actors {SUICIDE_MODULE}", 1)
        + f" --queues {SUICIDE_TYPE}",
    )
    stack.start(["poison_worker"], extra_env=env)
    stack.wait_http_ready()
    stack.wait_workers(2)
    wait_liveness_trusted(stack, redis_client)

    # When a suicide task is recorded and sent (the web process does not know its type)
    (poison,) = transitions.create_tasks(db, [NewTask(SUICIDE_TYPE, {})])
    send_tasks(broker, [(poison.id, SUICIDE_TYPE, None)])
    poison = str(poison.id)
    # ... while A tasks keep arriving over HTTP
    deaths: list[int] = []
    others: list[str] = []

    def poisoned() -> bool:
        assert not {n for n in stack.unexpected_exits() if n != "poison_worker"}, stack.logs()
        if not stack.is_running("poison_worker"):
            deaths.append(stack.wait_exit("poison_worker", timeout=1))
            stack.start(["poison_worker"], extra_env=env)
        others.append(submit(stack, "a", {"text": f"bystander {len(others)}", "rounds": 500}))
        return task(stack, poison)["status"] == "failed"

    wait_until(poisoned, timeout=max_recoveries * (RECOVERY_BOUND + 5), interval=0.5)

    # Then it ended failed after killing its worker max_recoveries times, saying so
    body = task(stack, poison)
    assert body["recoveries"] == max_recoveries, body
    assert body["attempts"] == max_recoveries, body
    assert "poison" in body["error"], body
    assert f"CALLBOARD_MAX_RECOVERIES={max_recoveries}" in body["error"], body
    history = histories(stack, [poison])[poison]
    kinds = [event["kind"] for event in history]
    assert kinds.count("started") == max_recoveries, kinds
    assert kinds.count("recovered") == max_recoveries - 1, kinds
    assert kinds[-1] == "failed" and "succeeded" not in kinds, kinds
    dead_workers = [e["detail"]["dead_worker"] for e in history if "dead_worker" in e["detail"]]
    assert len(set(dead_workers)) == max_recoveries, history
    assert len(deaths) >= max_recoveries - 1 and all(code != 0 for code in deaths), deaths
    # ... and the other tasks kept flowing, each done within seconds, once
    finished = wait_all_final(stack, others, timeout=15)
    assert_each_succeeded_exactly_once(stack, finished)
    latencies = [
        (datetime.fromisoformat(b["finished_at"]) - datetime.fromisoformat(b["created_at"]))
        for b in finished.values()
    ]
    assert max(latencies).total_seconds() < 3, sorted(latencies)[-5:]
    # ... and every rebalance ran to the end, although its worker does not know the type
    assert "Failed to process message rebalance" not in stack.log_text("worker")
    print(
        f"poison: failed after {len(deaths)} worker deaths; {len(others)} A tasks meanwhile,"
        f" slowest {max(latencies).total_seconds():.2f} s"
    )
