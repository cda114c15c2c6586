"""Operator endpoints: liveness, readiness, workers, and the repair loop's recent runs."""

from __future__ import annotations

import falcon
import redis
from spectree import Response

from actors.heartbeat import live_workers
from actors.ledger_broker import LedgerRedisBroker
from actors.rebalance import QUEUE_NAME as REBALANCE_QUEUE
from actors.task_types import REGISTRY
from models import reads
from models.db import UNAVAILABLE_ERRORS, database, drop_broken_connection
from web import schemas
from web.errors import Problem
from web.openapi import spec
from web.representations import rebalance_run_json

TAG = "operations"
UNAUTHORIZED = {"HTTP_401": schemas.Problem}


class HealthResource:
    """``/healthz``: the web process is up. Touches nothing else."""

    @spec.validate(resp=Response(HTTP_200=schemas.Health), tags=[TAG])
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Liveness: the web process is up (no token needed)."""
        resp.media = {"status": "ok"}


class ReadyResource:
    """``/readyz``: PostgreSQL and Redis are reachable; 503 naming the one that is not."""

    def __init__(self, broker: LedgerRedisBroker) -> None:
        self.broker = broker

    @spec.validate(resp=Response(HTTP_200=schemas.Readiness, HTTP_503=schemas.Problem), tags=[TAG])
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Readiness: PostgreSQL and Redis are reachable (no token needed); 503 names the one
        that is not."""
        checks = {"postgres": self._postgres(), "redis": self._redis()}
        down = [name for name, state in checks.items() if state != "ok"]
        if down:
            raise Problem(
                falcon.HTTP_503,
                title="Not ready",
                detail=f"Unreachable: {', '.join(down)}.",
                headers={"Retry-After": "5"},
                checks=checks,
            )
        resp.media = {"status": "ready", "checks": checks}

    def _postgres(self) -> str:
        try:
            database.execute_sql("SELECT 1").fetchone()
            return "ok"
        except UNAVAILABLE_ERRORS as exc:
            drop_broken_connection()
            return f"unreachable: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"

    def _redis(self) -> str:
        try:
            self.broker.client.ping()
            return "ok"
        except redis.RedisError as exc:
            return f"unreachable: {exc}"


class WorkersResource:
    """``/workers``: live workers from their heartbeats."""

    def __init__(self, broker: LedgerRedisBroker) -> None:
        self.broker = broker

    @spec.validate(
        resp=Response(HTTP_200=schemas.Workers, HTTP_503=schemas.Problem, **UNAUTHORIZED),
        tags=[TAG],
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Live workers, from their heartbeats, with the age of each one's last beat."""
        try:
            workers = live_workers(self.broker.client)
        except redis.RedisError as exc:
            raise _redis_unavailable("the heartbeats", exc) from None
        resp.media = {"workers": workers}


class RebalanceResource:
    """``/rebalance``: the latest runs of the repair loop, newest first."""

    @spec.validate(
        query=schemas.RebalanceQuery,
        resp=Response(HTTP_200=schemas.RebalanceRuns, HTTP_503=schemas.Problem, **UNAUTHORIZED),
        tags=[TAG],
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The latest runs of the repair loop, newest first: when, how long, what each did."""
        runs = reads.recent_rebalance_runs(req.context.query.limit)
        resp.media = {"runs": [rebalance_run_json(r) for r in runs]}


class StatsResource:
    """``/stats``: queues, task counts and workers, for dashboards and the CLI."""

    def __init__(self, broker: LedgerRedisBroker) -> None:
        self.broker = broker

    @spec.validate(
        resp=Response(HTTP_200=schemas.Stats, HTTP_503=schemas.Problem, **UNAUTHORIZED),
        tags=[TAG],
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Queues (waiting, delayed, in flight, dead-lettered), tasks by type and status, live
        workers, and workers that died holding tasks."""
        counts = reads.task_counts()
        holders = reads.running_holders()
        try:
            queues = self.broker.queue_stats([*REGISTRY, REBALANCE_QUEUE])
            workers = live_workers(self.broker.client)
        except redis.RedisError as exc:
            raise _redis_unavailable("the queues and heartbeats", exc) from None
        live = {w["worker_id"] for w in workers}
        resp.media = {
            "queues": queues,
            "tasks": counts,
            "workers": workers,
            "dead_workers": [w for w in holders if w not in live],
        }


def _redis_unavailable(holds: str, error: redis.RedisError) -> Problem:
    return Problem(
        falcon.HTTP_503,
        title="Service unavailable",
        detail=f"Redis, which holds {holds}, is unreachable: {error}",
        headers={"Retry-After": "5"},
    )
