"""Callboard's throughput figures: submit (single and batch) and end to end (single and batch).

- Submit: wrk ``POST /tasks`` for ``duration`` seconds at each connection count, workers
  stopped (the API's ingestion alone): 202s per second, p50/p99. Batch submit: ``POST
  /tasks/batch`` of ``batch_size`` tasks over ``batch_connections`` connections: tasks/s.
- End to end, workers running: ``n`` tasks of type A with ``rounds: 1``, from the first submit
  (the moment the load starts) to the latest ``finished_at`` in the ledger once all ``n`` have
  succeeded. Single: wrk sends exactly ``n`` POSTs over the first connection count. Batch:
  ``n / batch_size`` batch POSTs over ``batch_connections`` connections.
- Connections: per 1,000 tasks of each run, the PostgreSQL sessions opened to the bench database
  (``pg_stat_database.sessions``), the connections the Redis server accepted (server-wide, so
  other clients of a shared Redis inflate it), and the new connections open on the bench's Redis
  db at the end of the run.
"""

from __future__ import annotations

import dataclasses
import json
import time

from scripts.benchmark import cpu, stack
from scripts.benchmark.client import HttpPool
from scripts.benchmark.context import Context
from scripts.benchmark.cpu import CpuMeter
from scripts.benchmark.load import Request
from scripts.benchmark.profiling import Profiler
from scripts.benchmark.resources import BenchError
from scripts.benchmark.waiting import say, wait_until

#: The task every figure submits: type A, one SHA-256 round.
TASK = {"type": "a", "payload": {"text": "callboard-bench", "rounds": 1}}
#: Tasks per second below which an end-to-end run is declared stuck.
MIN_RATE = 10


@dataclasses.dataclass(frozen=True)
class Connections:
    """Connection counters at one moment."""

    pg_sessions: int
    redis_received: int
    redis_db_ids: frozenset[int]


def submit(ctx: Context, profiler: Profiler | None = None) -> None:
    """``POST /tasks`` requests/s and latency at each connection count (workers stopped)."""
    options, results = ctx.options, ctx.results
    request = _request(ctx, "/tasks", TASK)
    ctx.loadgen.run(ctx.web_url, request, connections=max(options.connections), seconds=1)
    _reset(ctx)
    for rep in range(options.reps):
        for connections in options.connections:
            profile = profiler is not None and rep == 0 and connections == options.e2e_connections
            if profile:
                profiler.start("submit")
            before = connections_now(ctx)
            meter = CpuMeter(ctx).start()
            result = ctx.loadgen.run(
                ctx.web_url, request, connections=connections, seconds=options.duration
            )
            cpu.record(ctx, f"submit, {connections} conns", meter.stop())
            if profile:
                profiler.stop()
            accepted = result.count(202)
            results.add(f"submit_rps@{connections}", result.rate(202))
            results.add(f"submit_p50@{connections}", result.p50_ms)
            results.add(f"submit_p99@{connections}", result.p99_ms)
            _note_failures(ctx, f"POST /tasks at {connections} connections", result, 202)
            record_connections(ctx, "submit", before, accepted)
            say(
                f"POST /tasks, {connections} connections, rep {rep + 1}: "
                f"{result.rate(202):,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
                f"p99 {result.p99_ms:.1f} ms"
            )
            _reset(ctx)


def batch_submit(ctx: Context, profiler: Profiler | None = None) -> None:
    """``POST /tasks/batch`` tasks/s (workers stopped)."""
    options, results = ctx.options, ctx.results
    request = _request(ctx, "/tasks/batch", {"tasks": [TASK] * options.batch_size})
    for rep in range(options.reps):
        if profiler and rep == 0:
            profiler.start("batch-submit")
        before = connections_now(ctx)
        meter = CpuMeter(ctx).start()
        result = ctx.loadgen.run(
            ctx.web_url, request, connections=options.batch_connections, seconds=options.duration
        )
        cpu.record(ctx, "batch submit", meter.stop())
        if profiler and rep == 0:
            profiler.stop()
        tasks = result.count(202) * options.batch_size
        rate = tasks / result.seconds
        results.add("batch_submit_per_s", rate)
        results.add("batch_p50", result.p50_ms)
        results.add("batch_p99", result.p99_ms)
        _note_failures(ctx, "POST /tasks/batch", result, 202)
        record_connections(ctx, "batch submit", before, tasks)
        say(
            f"POST /tasks/batch of {options.batch_size}, {options.batch_connections} connections, "
            f"rep {rep + 1}: {rate:,.0f} tasks/s, p50 {result.p50_ms:.1f} ms per batch"
        )
        _reset(ctx)


def e2e_single(ctx: Context, profiler: Profiler | None) -> None:
    """End to end with single ``POST /tasks`` (exactly ``n``, by wrk)."""
    options = ctx.options
    request = _request(ctx, "/tasks", TASK)
    for rep in range(options.reps):
        ctx.db.truncate()
        before = connections_now(ctx)
        if profiler and rep == 0:
            profiler.start("e2e-single")
        meter = CpuMeter(ctx).start()
        started = time.time()
        name = ctx.loadgen.start(
            ctx.web_url, request, connections=options.e2e_connections, quota=options.n
        )
        wait_until(
            lambda name=name: ctx.db.counts()[0] >= options.n or not ctx.runner.is_running(name),
            timeout=options.n / MIN_RATE + 30,
            what=f"{options.n} tasks to be submitted",
        )
        result = ctx.loadgen.finish(name, interrupt=True)
        _note_failures(ctx, "POST /tasks (end to end)", result, 202, filler=200)
        _finish_e2e(ctx, "e2e_single_per_s", "end to end, single POSTs", rep, started, before)
        cpu.record(ctx, "e2e single POSTs", meter.stop())
        if profiler and rep == 0:
            profiler.stop()


def e2e_batch(ctx: Context, profiler: Profiler | None) -> None:
    """End to end with ``POST /tasks/batch``."""
    options = ctx.options
    sizes = [
        min(options.batch_size, options.n - start)
        for start in range(0, options.n, options.batch_size)
    ]
    pool = HttpPool("127.0.0.1", ctx.web_port, ctx.auth, options.batch_connections)
    try:
        for rep in range(options.reps):
            ctx.db.truncate()
            before = connections_now(ctx)
            if profiler and rep == 0:
                profiler.start("e2e-batch")
            meter = CpuMeter(ctx).start()
            started = time.time()
            pool.post_concurrently("/tasks/batch", [{"tasks": [TASK] * size} for size in sizes])
            _finish_e2e(ctx, "e2e_batch_per_s", "end to end, batches", rep, started, before)
            cpu.record(ctx, "e2e batches", meter.stop())
            if profiler and rep == 0:
                profiler.stop()
    finally:
        pool.close()


def connections_now(ctx: Context) -> Connections:
    """Read the connection counters."""
    return Connections(
        pg_sessions=ctx.db.sessions(),
        redis_received=ctx.redis.connections_received(),
        redis_db_ids=frozenset(ctx.redis.client_ids()),
    )


def record_connections(ctx: Context, phase: str, before: Connections, tasks: int) -> None:
    """Record the connections opened since ``before``, per 1,000 tasks, for ``phase``."""
    if tasks <= 0:
        return
    after = connections_now(ctx)
    per_1000 = 1000 / tasks
    ctx.results.add(f"conn_pg@{phase}", (after.pg_sessions - before.pg_sessions) * per_1000)
    ctx.results.add(
        f"conn_redis@{phase}", (after.redis_received - before.redis_received) * per_1000
    )
    new_on_db = len(after.redis_db_ids - before.redis_db_ids)
    ctx.results.add(f"conn_redis_db@{phase}", new_on_db * per_1000)


def _finish_e2e(
    ctx: Context, figure: str, label: str, rep: int, started: float, before: Connections
) -> None:
    n = ctx.db.counts()[0]
    if n != ctx.options.n:
        note = f"{label}, rep {rep + 1}: {n} tasks recorded, not {ctx.options.n}."
        ctx.results.notes.append(note)
    if n == 0:
        raise BenchError(f"{label}: no task was recorded")

    def all_done() -> bool:
        _, succeeded, failed = ctx.db.counts()
        if failed:
            raise BenchError(f"{label}: {failed} task(s) failed or were cancelled")
        return succeeded >= n

    wait_until(all_done, timeout=n / MIN_RATE + 30, what=f"{n} tasks to succeed")
    rate = n / (ctx.db.last_finished() - started)
    ctx.results.add(figure, rate)
    record_connections(ctx, label.replace("end to end, ", "e2e "), before, n)
    say(f"{label}, {n:,} tasks, rep {rep + 1}: {rate:,.0f} tasks/s")


def _reset(ctx: Context) -> None:
    # Only while no worker runs: it would find its queues gone.
    if ctx.runner.is_running(stack.WORKER):
        raise BenchError("refusing to clear the queues while workers run")
    ctx.db.truncate()
    ctx.redis.clear_queues()


def _request(ctx: Context, path: str, body: dict) -> Request:
    headers = {**ctx.auth, "Content-Type": "application/json"}
    return Request("POST", path, headers, json.dumps(body).encode())


def _note_failures(ctx: Context, what: str, result, expected: int, filler: int = 0) -> None:
    unexpected = {s: c for s, c in result.status.items() if s not in (expected, filler)}
    if unexpected or result.errors:
        ctx.results.notes.append(
            f"{what}: unexpected answers {unexpected or '{}'}, {result.errors} socket errors."
        )
