"""``GET /metrics``: Prometheus metrics of the HTTP API, the ledger, the queues and the workers.

Three sources, each exposed by this web process:
- HTTP requests, counted by ``HttpMetrics`` in this process: by route template (never the raw
  path; ``unmatched`` for unknown paths, ``static`` for docs assets), method and status, with a
  latency histogram by route and method.
- The ledger and Redis, read at scrape time by ``ServiceCollector``: tasks by type and status,
  queue depths, live workers, the last rebalance. Nothing is cached, so every web process
  answers the same; if PostgreSQL or Redis is down, its part is left out and
  ``callboard_metrics_source_up`` says so, instead of the scrape failing.
- The workers' own counters (messages by type and outcome, durations, in flight), which each
  worker process publishes to Redis (see ``actors.worker_metrics`` for why), exposed summed over
  the deployment and per live worker process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import falcon
import redis
from falcon.routing import CompiledRouter
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from actors import worker_metrics
from actors.heartbeat import live_workers
from actors.ledger_broker import LedgerRedisBroker
from actors.rebalance import QUEUE_NAME as REBALANCE_QUEUE
from actors.task_types import REGISTRY
from models import reads
from models.db import UNAVAILABLE_ERRORS, drop_broken_connection
from models.tables import STATUSES

#: Route label of a request that matched no route, and of a file served from a static route.
UNMATCHED = "unmatched"
STATIC = "static"
QUEUE_STATES = ("waiting", "delayed", "in_flight", "dead_lettered")

logger = logging.getLogger("callboard.web")


def metrics_registry(broker: LedgerRedisBroker) -> CollectorRegistry:
    """A registry of this app's metrics: the service collector and the process's own."""
    registry = CollectorRegistry()
    registry.register(ServiceCollector(broker))
    ProcessCollector(registry=registry)
    return registry


class HttpMetrics:
    """Falcon middleware counting requests by route template, method and status, with latency.

    Put it before any middleware that may answer early (authentication, body limits), so that
    those answers are counted too; ``router`` finds their route, which Falcon had not matched yet.
    """

    def __init__(self, registry: CollectorRegistry, router: CompiledRouter) -> None:
        self.router = router
        self.requests = Counter(
            "callboard_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "callboard_http_request_duration_seconds",
            "Time to handle an HTTP request, by route template and method.",
            ["route", "method"],
            registry=registry,
        )

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        seconds = time.perf_counter() - req.context.metrics_started
        route = self._route(req, resp)
        method = req.method if req.method in falcon.COMBINED_METHODS else "other"
        self.requests.labels(route, method, str(resp.status_code)).inc()
        self.latency.labels(route, method).observe(seconds)

    def _route(self, req: falcon.Request, resp: falcon.Response) -> str:
        if req.uri_template:
            return req.uri_template
        # Answered before routing (401, 413): find the route it was meant for.
        found = self.router.find(req.path)
        if found is not None:
            return found[3]
        # Only a static route answers a path that no route matches without an error.
        return STATIC if resp.status_code < 400 else UNMATCHED


class MetricsResource:
    """``GET /metrics``: the registry in Prometheus's text format (or OpenMetrics, if asked)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        encoder, content_type = choose_encoder(req.get_header("Accept") or "")
        resp.content_type = content_type
        resp.data = encoder(self.registry)


class ServiceCollector(Collector):
    """Reads the ledger and Redis at each scrape; see the module docstring."""

    def __init__(self, broker: LedgerRedisBroker) -> None:
        self.broker = broker

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "callboard_metrics_source_up",
            "Whether this scrape could read the source (ledger: PostgreSQL; redis: queues, "
            "heartbeats and worker metrics).",
            labels=["source"],
        )
        for source, read in (("ledger", self._ledger), ("redis", self._redis)):
            try:
                metrics = list(read())
            except (*UNAVAILABLE_ERRORS, redis.RedisError) as exc:
                if isinstance(exc, UNAVAILABLE_ERRORS):
                    drop_broken_connection()
                logger.warning("Metrics: could not read the %s: %s", source, exc)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from metrics
        yield up

    def _ledger(self) -> Iterator[Metric]:
        counts = reads.task_counts()
        tasks = GaugeMetricFamily(
            "callboard_tasks", "Tasks in the ledger, by type and status.", labels=["type", "status"]
        )
        for task_type in sorted({*REGISTRY, *counts}):
            for status in sorted({*STATUSES, *counts.get(task_type, {})}):
                tasks.add_metric([task_type, status], counts.get(task_type, {}).get(status, 0))
        yield tasks
        runs = reads.recent_rebalance_runs(1)
        if runs:
            yield GaugeMetricFamily(
                "callboard_rebalance_last_run_timestamp_seconds",
                "When the latest recorded rebalance run started (Unix time).",
                value=runs[0].started_at.timestamp(),
            )
            yield GaugeMetricFamily(
                "callboard_rebalance_last_run_duration_seconds",
                "How long the latest recorded rebalance run took.",
                value=runs[0].duration_ms / 1000,
            )

    def _redis(self) -> Iterator[Metric]:
        client = self.broker.client
        queues = GaugeMetricFamily(
            "callboard_queue_messages",
            "Messages in each queue: waiting, delayed, in flight (fetched by a worker, not "
            "acknowledged yet) and dead-lettered.",
            labels=["queue", "state"],
        )
        for queue, stats in self.broker.queue_stats([*REGISTRY, REBALANCE_QUEUE]).items():
            for state in QUEUE_STATES:
                queues.add_metric([queue, state], stats[state])
        yield queues
        workers = live_workers(client)
        yield GaugeMetricFamily(
            "callboard_workers", "Live worker processes (unexpired heartbeats).", value=len(workers)
        )
        yield GaugeMetricFamily(
            "callboard_worker_threads",
            "Worker threads of the live worker processes: tasks they can run at once.",
            value=sum(w.get("threads", 0) for w in workers),
        )
        yield from _worker_metrics(
            worker_metrics.totals(client), worker_metrics.worker_snapshots(client)
        )


def _worker_metrics(totals: worker_metrics.Totals, snapshots: list[dict]) -> Iterator[Metric]:
    kinds = sorted({*REGISTRY, REBALANCE_QUEUE})
    messages = CounterMetricFamily(
        "callboard_worker_messages",
        "Messages processed by all worker processes, by type and outcome (done; error: the "
        "actor raised; skipped: dropped by a middleware). Survives worker restarts.",
        labels=["type", "outcome"],
    )
    found = totals.messages
    for kind in sorted({*kinds, *(k for k, _ in found)}):
        for outcome in sorted({*worker_metrics.OUTCOMES, *(o for k, o in found if k == kind)}):
            messages.add_metric([kind, outcome], found.get((kind, outcome), 0))
    yield messages

    durations = HistogramMetricFamily(
        "callboard_worker_message_duration_seconds",
        "Time a worker took to process a message, by type, over all worker processes.",
        labels=["type"],
    )
    for kind in sorted({*kinds, *totals.durations}):
        histogram = totals.durations.get(kind, worker_metrics.DurationTotals())
        buckets = [
            (_bound(bound), histogram.buckets.get(bound, 0))
            for bound in worker_metrics.DURATION_BUCKETS
        ]
        durations.add_metric([kind], buckets, sum_value=histogram.sum)
    yield durations

    in_flight = GaugeMetricFamily(
        "callboard_worker_messages_in_flight",
        "Messages being processed now by the live worker processes, by type.",
        labels=["type"],
    )
    per_process = CounterMetricFamily(
        "callboard_worker_process_messages",
        "Messages processed by each live worker process since it started, by type and outcome.",
        labels=["worker", "type", "outcome"],
    )
    per_process_in_flight = GaugeMetricFamily(
        "callboard_worker_process_messages_in_flight",
        "Messages being processed now by each live worker process, by type.",
        labels=["worker", "type"],
    )
    summed: dict[str, int] = dict.fromkeys(kinds, 0)
    for snapshot in snapshots:
        worker = snapshot["worker_id"]
        for entry in snapshot["messages"]:
            per_process.add_metric([worker, entry["type"], entry["outcome"]], entry["count"])
        for kind in sorted({*kinds, *snapshot["in_flight"]}):
            count = snapshot["in_flight"].get(kind, 0)
            per_process_in_flight.add_metric([worker, kind], count)
            summed[kind] = summed.get(kind, 0) + count
    for kind, count in sorted(summed.items()):
        in_flight.add_metric([kind], count)
    yield in_flight
    yield per_process
    yield per_process_in_flight


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
