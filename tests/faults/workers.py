"""The timing the fault tests run with, and helpers to watch and break worker processes."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime

import redis

from actors.heartbeat import LIVENESS_MARKER_KEY
from tests.e2e.api import task
from tests.e2e.stack import Stack

#: Short intervals, so that a crash is noticed and repaired within seconds: a heartbeat every
#: second (a worker is dead 3 s after its last beat) and a rebalance every 2 s, re-sending a task
#: whose message is missing once it has been queued for 1 s.
FAST_FAULT_ENV = {
    "CALLBOARD_HEARTBEAT_INTERVAL": "1",
    "CALLBOARD_REBALANCE_PERIOD": "2",
    "CALLBOARD_RESEND_GRACE": "1",
}
HEARTBEAT_INTERVAL = float(FAST_FAULT_ENV["CALLBOARD_HEARTBEAT_INTERVAL"])
REBALANCE_PERIOD = float(FAST_FAULT_ENV["CALLBOARD_REBALANCE_PERIOD"])
#: The README's bound on recovery: heartbeat expiry (3 intervals), then the next rebalance tick.
RECOVERY_BOUND = 3 * HEARTBEAT_INTERVAL + REBALANCE_PERIOD
#: What the README's bound leaves out: a worker's idle consumer fetches the tick's message up to
#: Dramatiq's worker timeout (1 s) late, and the run itself takes a few milliseconds. Measured
#: recoveries land anywhere up to the bound plus this.
TICK_PICKUP_ALLOWANCE = 1.0
#: Seconds after which Dramatiq's maintenance gives back the messages a dead worker process had
#: prefetched (``actors.broker.broker_heartbeat_timeout``: our heartbeat's lifetime, at least 10).
BROKER_HEARTBEAT_TIMEOUT = max(10.0, 3 * HEARTBEAT_INTERVAL)
#: One worker process with 5 threads: it runs 5 tasks and prefetches as many again.
ONE_PROCESS = {"CALLBOARD_WORKER_PROCESSES": "1", "CALLBOARD_WORKER_THREADS": "5"}


def heartbeat(stack: Stack, worker_id: str) -> dict:
    """The heartbeat of worker ``worker_id`` as ``GET /workers`` shows it (it must be live)."""
    workers = {w["worker_id"]: w for w in stack.get("/workers").json()["workers"]}
    assert worker_id in workers, workers
    return workers[worker_id]


def running_tasks(stack: Stack, task_ids: list[str], *, count: int) -> list[str] | None:
    """The tasks among ``task_ids`` that are running, if there are ``count`` of them."""
    running = [t for t in task_ids if task(stack, t)["status"] == "running"]
    return running if len(running) == count else None


def wait_liveness_trusted(stack: Stack, client: redis.Redis) -> None:
    """Wait until the rebalance trusts missing heartbeats: Redis has kept its data for a whole
    heartbeat lifetime since the rebalance first marked it."""
    ttl = 3 * HEARTBEAT_INTERVAL

    def trusted() -> bool:
        since = client.get(LIVENESS_MARKER_KEY)
        return since is not None and time.time() - float(since) >= ttl

    stack.wait_until(trusted, timeout=ttl + 3 * REBALANCE_PERIOD, message="liveness to be trusted")


def kill_just_after_a_beat(stack: Stack, name: str, worker_id: str) -> datetime:
    """``kill -9`` the group of ``name`` right after worker ``worker_id`` beat; return that beat's
    time, which is then its last."""
    return signal_just_after_a_beat(stack, name, worker_id, signal.SIGKILL)


def signal_just_after_a_beat(stack: Stack, name: str, worker_id: str, signum: int) -> datetime:
    """Send ``signum`` to the group of ``name`` right after worker ``worker_id`` beat; return
    that beat's time (its last, if the signal stops or kills it)."""
    previous = heartbeat(stack, worker_id)["beat_at"]

    def fresh_beat() -> float | None:
        beat_at = heartbeat(stack, worker_id)["beat_at"]
        return beat_at if beat_at != previous else None

    beat_at = stack.wait_until(fresh_beat, timeout=3 * HEARTBEAT_INTERVAL, interval=0.01)
    if signum == signal.SIGKILL:
        stack.kill(name)
    else:
        stack.signal_group(name, signum)
    assert time.time() - beat_at < HEARTBEAT_INTERVAL / 2, "the signal came too late after the beat"
    return datetime.fromtimestamp(beat_at, UTC)
