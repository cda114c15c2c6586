"""Worker-side metrics, published to Redis next to the heartbeat, exposed by the web's /metrics.

Each worker process counts the messages it processes: by type (the queue: a task type, or
``rebalance``) and outcome (``done``; ``error`` when the actor raised, i.e. the task could not be
run or recorded; ``skipped`` when a middleware dropped the message, e.g. a stale rebalance), how
long each took, and how many are in flight. (A task's own outcome, succeeded, failed or
cancelled, is the ledger's: ``callboard_tasks``.) A thread publishes them every few seconds in one
Redis transaction:

* a snapshot of this process's counts since it started, under ``callboard:worker-metrics:<worker
  id>`` with the heartbeat's time-to-live (deleted at a clean stop), for per-process series;
* the increments since the last publish, added to one hash for the whole deployment, so the
  cluster-wide counters and the duration histogram keep growing when workers restart. (A sum of
  the live processes' counts would drop whenever one exits, and Prometheus reads any drop as a
  reset to zero: ``rate()`` would see a burst. Redis restarting empty is a true reset.)

Why Redis, and not prometheus_client's multiprocess mode (what Dramatiq's own Prometheus
middleware uses): that mode shares counters through files in a directory that must be local to
one host, be wiped at every start, and be served by an extra HTTP exposer on its own port from a
fork of the worker. A PaaS gives worker processes no reachable port, and each host would be one
more scrape target. Redis is already where workers publish their liveness, every web process can
read it, and it works across hosts: Prometheus scrapes the web's ``/metrics`` and nothing else.
The price: values are up to one publish interval old, a worker killed with ``kill -9`` loses the
increments since its last publish, and a publish whose reply is lost may be counted twice.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import math
import threading
import time
from collections import Counter

import redis
from dramatiq import Middleware
from dramatiq.common import q_name

from actors.worker_state import WorkerState

KEY_PREFIX = "callboard:worker-metrics:"
TOTALS_KEY = "callboard:worker-metrics-totals"
#: Seconds between publishes, at most (the heartbeat interval, if shorter).
DEFAULT_PUBLISH_INTERVAL = 5.0
#: Upper bounds, in seconds, of the message duration histogram's buckets (tasks B last minutes).
DURATION_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    *(30.0, 60.0, 120.0, 300.0, 600.0, math.inf),
)
#: Outcomes of a message (see the module docstring).
OUTCOMES = ("done", "error", "skipped")

logger = logging.getLogger("callboard.metrics")


class WorkerMetrics(Middleware):
    """Counts this worker process's messages and publishes the counts to Redis."""

    def __init__(self, state: WorkerState, client: redis.Redis, *, interval: float, ttl: float):
        self.state = state
        self.client = client
        self.interval = interval
        self.ttl = ttl
        self._lock = threading.Lock()
        self._started: dict[tuple[str, int], tuple[str, float]] = {}
        self._messages: Counter[tuple[str, str]] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._unpublished: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def before_worker_boot(self, broker, worker) -> None:
        self.publish()
        self._thread = threading.Thread(target=self._run, name="callboard-metrics", daemon=True)
        self._thread.start()

    def after_worker_shutdown(self, broker, worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.publish():  # the last increments go to the totals
            try:
                self.client.delete(KEY_PREFIX + self.state.worker_id)
            except redis.RedisError as exc:
                logger.warning("Could not remove the metrics of %r: %s", self.state.worker_id, exc)

    def before_process_message(self, broker, message) -> None:
        kind = q_name(message.queue_name)
        with self._lock:
            self._started[(message.message_id, threading.get_ident())] = (kind, time.monotonic())
            self._in_flight[kind] += 1

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        self._finish(message, "done" if exception is None else "error")

    def after_skip_message(self, broker, message) -> None:
        self._finish(message, "skipped")

    def publish(self) -> bool:
        """Write this process's snapshot and add its new increments to the totals; False (the
        increments kept for the next try) if Redis is unreachable."""
        with self._lock:
            snapshot = {
                "worker_id": self.state.worker_id,
                "published_at": time.time(),
                "messages": [
                    {"type": kind, "outcome": outcome, "count": count}
                    for (kind, outcome), count in sorted(self._messages.items())
                ],
                "in_flight": dict(self._in_flight),
            }
            increments, self._unpublished = self._unpublished, Counter()
        pipeline = self.client.pipeline(transaction=True)
        key = KEY_PREFIX + self.state.worker_id
        pipeline.set(key, json.dumps(snapshot), px=int(self.ttl * 1000))
        for field, amount in increments.items():
            if isinstance(amount, float):
                pipeline.hincrbyfloat(TOTALS_KEY, field, amount)
            else:
                pipeline.hincrby(TOTALS_KEY, field, amount)
        try:
            pipeline.execute()
        except redis.RedisError as exc:
            with self._lock:
                self._unpublished.update(increments)
            if not self._failing:  # once per outage: the heartbeat already says it every beat
                logger.warning(
                    "Could not publish the metrics of %r (kept for the next try): %s",
                    self.state.worker_id,
                    exc,
                )
            self._failing = True
            return False
        if self._failing:
            logger.info("Metrics of %r published again.", self.state.worker_id)
        self._failing = False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.publish()

    def _finish(self, message, outcome: str) -> None:
        with self._lock:
            started = self._started.pop((message.message_id, threading.get_ident()), None)
            if started is None:
                return  # skipped by a middleware before ours saw it
            kind, since = started
            seconds = time.monotonic() - since
            self._in_flight[kind] -= 1
            self._messages[(kind, outcome)] += 1
            self._unpublished[f"messages|{kind}|{outcome}"] += 1
            self._unpublished[f"duration_count|{kind}"] += 1
            self._unpublished[f"duration_sum|{kind}"] += seconds
            # Cumulative buckets, as Prometheus exposes them: every bound at or above the value.
            for bound in DURATION_BUCKETS[bisect.bisect_left(DURATION_BUCKETS, seconds) :]:
                self._unpublished[f"duration_bucket|{kind}|{bound}"] += 1


@dataclasses.dataclass
class DurationTotals:
    """The cluster-wide duration histogram of one type: cumulative count per bucket bound."""

    buckets: dict[float, int] = dataclasses.field(default_factory=dict)
    count: int = 0
    sum: float = 0.0


@dataclasses.dataclass
class Totals:
    """Every worker's counts since the totals began (Redis started or was flushed)."""

    messages: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    durations: dict[str, DurationTotals] = dataclasses.field(default_factory=dict)


def worker_snapshots(client: redis.Redis) -> list[dict]:
    """The latest published snapshot of every worker process whose metrics have not expired."""
    keys = sorted(client.scan_iter(match=KEY_PREFIX + "*", count=500))
    return [json.loads(raw) for raw in (client.mget(keys) if keys else []) if raw is not None]


def totals(client: redis.Redis) -> Totals:
    """The cluster-wide counts and duration histograms."""
    found = Totals()
    for raw_field, raw_value in client.hgetall(TOTALS_KEY).items():
        what, kind, *rest = raw_field.decode().split("|")
        if what == "messages":
            found.messages[(kind, rest[0])] = int(raw_value)
            continue
        duration = found.durations.setdefault(kind, DurationTotals())
        if what == "duration_count":
            duration.count = int(raw_value)
        elif what == "duration_sum":
            duration.sum = float(raw_value)
        elif what == "duration_bucket":
            duration.buckets[float(rest[0])] = int(raw_value)
    return found
