"""Worker heartbeats in Redis: who is alive, what each worker holds, what it has processed.

Each worker process writes one key, ``callboard:workers:<worker id>``, every ``interval`` seconds
with a time-to-live of three intervals; a clean shutdown deletes it. A worker whose key is gone
is dead, and the rebalance recovers the tasks the ledger says it held.

Redis may restart empty, which deletes every heartbeat at once although the workers are alive.
``liveness_is_trustworthy`` guards against reading that as a mass death: the rebalance keeps a
marker key that dies with Redis's data, and judges liveness only once the marker has existed
for a full time-to-live, i.e. once every live worker has had time to beat again.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import redis
from dramatiq import Middleware

from actors.worker_state import WorkerState

KEY_PREFIX = "callboard:workers:"
LIVENESS_MARKER_KEY = "callboard:liveness-since"

logger = logging.getLogger("callboard.heartbeat")


class WorkerHeartbeat(Middleware):
    """Publishes this worker process's heartbeat from boot until shutdown."""

    def __init__(self, state: WorkerState, client: redis.Redis, *, interval: float, ttl: float):
        self.state = state
        self.client = client
        self.interval = interval
        self.ttl = ttl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queues: list[str] = []
        self._threads = 0

    def before_worker_boot(self, broker, worker) -> None:
        # Beat before any worker thread can claim a task, so no claim is ever held by a worker
        # that the rebalance cannot see.
        self._queues = sorted(worker.consumer_whitelist or broker.get_declared_queues())
        self._threads = worker.worker_threads
        self._beat()
        self._thread = threading.Thread(target=self._run, name="callboard-heartbeat", daemon=True)
        self._thread.start()

    def after_worker_shutdown(self, broker, worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.client.delete(KEY_PREFIX + self.state.worker_id)
            logger.info("Heartbeat of worker %r removed.", self.state.worker_id)
        except redis.RedisError as exc:
            logger.warning("Could not remove the heartbeat of %r: %s", self.state.worker_id, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat()

    def _beat(self) -> bool:
        record = {
            "worker_id": self.state.worker_id,
            "host": socket.gethostname(),
            "pid": self.state.worker_id.split(":")[1],
            "queues": self._queues,
            "threads": self._threads,
            "held": self.state.held_task_ids(),
            "processed": self.state.processed,
            "started_at": self.state.started_at,
            "beat_at": time.time(),
            "interval": self.interval,
        }
        try:
            self.client.set(
                KEY_PREFIX + self.state.worker_id, json.dumps(record), px=int(self.ttl * 1000)
            )
            return True
        except redis.RedisError as exc:
            logger.warning("Could not publish the heartbeat of %r: %s", self.state.worker_id, exc)
            return False


def live_workers(client: redis.Redis) -> list[dict]:
    """Every worker whose heartbeat has not expired, with the age of its last beat."""
    keys = list(client.scan_iter(match=KEY_PREFIX + "*", count=500))
    now = time.time()
    workers = []
    for raw in client.mget(keys) if keys else []:
        if raw is None:
            continue  # expired between SCAN and MGET
        record = json.loads(raw)
        record["age_s"] = round(now - record["beat_at"], 3)
        workers.append(record)
    return sorted(workers, key=lambda w: w["worker_id"])


def dead_among(client: redis.Redis, worker_ids: list[str]) -> list[str]:
    """The ids, among ``worker_ids``, whose heartbeat has expired."""
    if not worker_ids:
        return []
    pipeline = client.pipeline(transaction=False)
    for worker_id in worker_ids:
        pipeline.exists(KEY_PREFIX + worker_id)
    return [w for w, alive in zip(worker_ids, pipeline.execute(), strict=True) if not alive]


def liveness_is_trustworthy(client: redis.Redis, ttl: float) -> bool:
    """Whether Redis has kept its data long enough for a missing heartbeat to mean death."""
    now = time.time()
    client.set(LIVENESS_MARKER_KEY, now, nx=True)
    since = float(client.get(LIVENESS_MARKER_KEY) or now)
    return now - since >= ttl
