"""Fault tests: Redis down at submit, and Redis restarted empty while tasks are queued and running.

Every process of the stack uses a ``redis-server`` of the test's own (``redis_server``), which
keeps nothing on disk, as Callboard's production Redis: a restart comes back empty. The ledger is
the session's PostgreSQL database.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from tests.e2e.api import submit, task, wait_all_final
from tests.e2e.stack import group_pids

from .observe import (
    CpuMeter,
    LogWindow,
    assert_each_succeeded_exactly_once,
    ledger_event_counts,
    ledger_statuses,
    outage_lines,
    retry_delays_by_pid,
)
from .workers import REBALANCE_PERIOD

#: Seconds Redis stays down while the test watches CPU and logs.
OUTAGE_S = 6.0
#: The most CPU a process group may use while Redis is down (1.0 is one core, busy).
MAX_CPU_SHARE = 0.2
#: The most log records a worker process may write per second about a Redis that stays down,
#: besides one per failed ack of each message done meanwhile: a few reconnect attempts, and one
#: failed heartbeat per (1 s) interval. Stock Dramatiq alone wrote 4 per second, for ever.
MAX_WORKER_RECORDS_PER_S = 3.0
PROCESSES = ["web", "worker", "scheduler"]
#: The Procfile's default number of worker processes.
WORKER_PROCESSES = 2


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_tasks_submitted_while_redis_is_down_are_accepted_and_run_once_it_is_back(
    stack, redis_server
):
    # Given the stack on a Redis of its own, with both worker processes up
    stack.base_env["REDIS_URL"] = redis_server.url
    stack.start()
    stack.wait_http_ready()
    workers_before = {w["worker_id"] for w in stack.wait_workers(2)}
    pids_before = {name: group_pids(stack.pid(name)) for name in PROCESSES}

    # When Redis dies, and tasks are submitted while it is down
    redis_server.kill()
    cpu = CpuMeter(stack, PROCESSES)
    logs = LogWindow(stack)
    latencies = []
    accepted = []
    for i in range(6):
        started = time.monotonic()
        accepted.append(submit(stack, "a", {"text": f"while redis is down {i}", "rounds": 100}))
        accepted.append(submit(stack, "b", {"duration_ms": 200, "steps": 2}))
        latencies.append((time.monotonic() - started) / 2)

    # Then each was accepted (202), promptly, and is recorded as queued
    assert max(latencies) < 1.0, latencies
    assert {task(stack, t)["status"] for t in accepted} == {"queued"}
    # ... readiness names Redis
    ready = stack.get("/readyz", timeout=10)
    assert ready.status_code == 503 and "redis" in ready.json()["detail"].lower(), ready.text
    # ... and while it stays down no process dies or spins, and each says what is wrong, calmly
    stack.wait_until(lambda: time.monotonic() - cpu.started >= OUTAGE_S, timeout=OUTAGE_S + 10)
    shares, rates = _check_outage_behaviour(stack, cpu, logs, requests=len(accepted) + 1)

    # When Redis comes back, empty
    redis_server.start()

    # Then every accepted task runs once, sent by the rebalance; no process was restarted
    finished = wait_all_final(stack, accepted, timeout=6 * REBALANCE_PERIOD + 10)
    assert_each_succeeded_exactly_once(stack, finished)
    for task_id in accepted:
        kinds = [e["kind"] for e in stack.get(f"/tasks/{task_id}/events").json()["events"]]
        assert "resent" in kinds, kinds
    assert {name: group_pids(stack.pid(name)) for name in PROCESSES} == pids_before
    assert {w["worker_id"] for w in stack.wait_workers(2)} == workers_before
    assert stack.unexpected_exits() == {}
    print(
        f"Redis down at submit: POST latency max {max(latencies):.3f} s; CPU share {shares};"
        f" log records/s {rates}"
    )


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_redis_restarted_empty_with_hundreds_queued_and_some_running_loses_nothing(
    stack, redis_server, db
):
    # Given the stack on a Redis of its own, B tasks of 4 s running, and 300 short B tasks
    # queued behind them
    stack.base_env["REDIS_URL"] = redis_server.url
    stack.start()
    stack.wait_http_ready()
    workers_before = {w["worker_id"] for w in stack.wait_workers(2)}
    pids_before = {name: group_pids(stack.pid(name)) for name in PROCESSES}
    long = _submit_batch(stack, [("b", {"duration_ms": 4000, "steps": 8})] * 10)
    stack.wait_until(
        lambda: ledger_statuses(db, long)["running"] >= 5, timeout=15, message="5 B running"
    )
    short = _submit_batch(stack, [("b", {"duration_ms": 100, "steps": 1})] * 300)
    accepted = long + short
    assert ledger_statuses(db, short)["queued"] >= 250, ledger_statuses(db, short)

    # When Redis is killed and restarted empty a few seconds later, mid-processing
    redis_server.kill()
    cpu = CpuMeter(stack, PROCESSES)
    logs = LogWindow(stack)
    stack.wait_until(lambda: time.monotonic() - cpu.started >= OUTAGE_S, timeout=OUTAGE_S + 10)
    shares, rates = _check_outage_behaviour(stack, cpu, logs, requests=0)
    redis_server.start()
    restarted_at = time.monotonic()

    # Then every task completes, once, without restarting any process
    stack.wait_until(
        lambda: ledger_statuses(db, accepted)["succeeded"] == len(accepted),
        timeout=60,
        interval=0.5,
        message=lambda: f"all {len(accepted)} tasks to succeed: {ledger_statuses(db, accepted)}",
    )
    recovered_s = time.monotonic() - restarted_at
    assert ledger_statuses(db, accepted) == {"succeeded": len(accepted)}
    assert set(ledger_event_counts(db, accepted, "succeeded").values()) == {1}
    assert set(ledger_event_counts(db, long, "started").values()) == {1}
    assert {name: group_pids(stack.pid(name)) for name in PROCESSES} == pids_before
    assert {w["worker_id"] for w in stack.wait_workers(2)} == workers_before
    print(
        f"Redis restarted empty: {len(accepted)} tasks done {recovered_s:.1f} s after Redis came"
        f" back; CPU share while down {shares}; log records/s {rates}"
    )


def _check_outage_behaviour(stack, cpu: CpuMeter, logs: LogWindow, *, requests: int):
    """Check that, while Redis was down, no process spun, and each logged what is wrong at a
    calm pace: the workers once per reconnect attempt, with a backoff, the scheduler once per
    tick, the web process at most once per request. Returns the CPU shares and log rates."""
    shares = cpu.shares()
    elapsed = time.monotonic() - logs.started
    lines = {name: outage_lines(logs, name) for name in PROCESSES}
    rates = {name: round(len(found) / elapsed, 2) for name, found in lines.items()}
    for name in PROCESSES:
        assert shares[name] < MAX_CPU_SHARE, shares
    # Every worker process: one record per reconnect attempt, the delay doubling each time, and
    # one per heartbeat that could not be written...
    acks = [line for line in lines["worker"] if "Failed to post_process_message(" in line]
    paced = len(lines["worker"]) - len(acks)
    assert paced / elapsed / WORKER_PROCESSES <= MAX_WORKER_RECORDS_PER_S, lines["worker"]
    # ... and for each message done meanwhile, one per ack attempt, every 5 s (Dramatiq's pace)
    per_message = Counter(re.search(r"post_process_message\((.*?)\)\)", a)[1] for a in acks)
    assert all(n <= elapsed / 5 + 1 for n in per_message.values()), per_message
    delays = retry_delays_by_pid(lines["worker"])
    assert len(delays) == WORKER_PROCESSES, lines["worker"]
    for announced in delays.values():
        assert len(announced) >= 2 and announced == sorted(announced), delays
        assert announced[-1] >= 2 * announced[0], delays
    assert any(re.search(r"Redis is unreachable", line) for line in lines["worker"])
    assert len(lines["scheduler"]) <= elapsed / REBALANCE_PERIOD + 1, lines["scheduler"]
    assert any(re.search(r"(?i)redis", line) for line in lines["scheduler"]), lines
    assert len(lines["web"]) <= requests, lines["web"]
    rates["worker, paced, per process"] = round(paced / elapsed / WORKER_PROCESSES, 2)
    return shares, rates


def _submit_batch(stack, items: list[tuple[str, dict]]) -> list[str]:
    """POST the tasks as one batch; return their ids."""
    body = {"tasks": [{"type": task_type, "payload": payload} for task_type, payload in items]}
    response = stack.post("/tasks/batch", json=body, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["ids"]
