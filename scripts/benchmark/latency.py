"""Submit → start latency with idle workers, and the CPU the stack burns while idle.

A burst is ``burst_size`` single ``POST /tasks`` sent at once over as many keep-alive
connections; each task's latency is its ``started_at`` in the ledger (the worker's claim, by
PostgreSQL's clock) minus the moment the benchmark sent its POST (same machine clock).

- Warm bursts: ``bursts`` per repetition, each ``burst_gap`` seconds after the previous burst's
  tasks all started: the workers are idle, but their poll back-off is still short.
- After idle: ``idle_rounds`` times per repetition, the workers get no message for
  ``idle_seconds`` (long enough for Dramatiq's poll back-off to reach its cap), then one burst.
  A burst's tasks are mostly fetched together, so the rounds are what make the percentiles
  mean something. The CPU time each process used during an idle window, over its length, is
  the idle CPU figure.
"""

from __future__ import annotations

import time

from scripts.benchmark import cpu
from scripts.benchmark.client import HttpPool
from scripts.benchmark.context import Context
from scripts.benchmark.cpu import CpuMeter
from scripts.benchmark.measures import TASK
from scripts.benchmark.waiting import say, wait_until


def warm_and_idle(ctx: Context) -> None:
    """Measure warm-burst latency, then latency and CPU after idle, ``reps`` times each."""
    options, results = ctx.options, ctx.results
    pool = HttpPool("127.0.0.1", ctx.web_port, ctx.auth, options.burst_size)
    try:
        _burst(ctx, pool)  # warm-up: every connection and worker thread has been used once
        for rep in range(options.reps):
            samples: list[float] = []
            for _ in range(options.bursts):
                time.sleep(options.burst_gap)
                samples += _burst(ctx, pool)
            p50, p99 = percentile(samples, 50), percentile(samples, 99)
            results.add("latency_p50", p50)
            results.add("latency_p99", p99)
            say(f"warm bursts, rep {rep + 1}: submit→start p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        for rep in range(options.reps):
            samples = []
            for _ in range(options.idle_rounds):
                meter = CpuMeter(ctx).start()
                accepted = ctx.redis.connections_received()
                time.sleep(options.idle_seconds)
                used = meter.stop()
                # What other clients of a shared Redis add to the server-wide connection count.
                background = ctx.redis.connections_received() - accepted
                results.add("redis_background_per_s", background / options.idle_seconds)
                cpu.record(ctx, "idle", used)
                samples += _burst(ctx, pool)
            p50, p99 = percentile(samples, 50), percentile(samples, 99)
            results.add("idle_latency_p50", p50)
            results.add("idle_latency_p99", p99)
            say(
                f"{options.idle_rounds} bursts after {options.idle_seconds:g} s idle each, "
                f"rep {rep + 1}: submit→start p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
                f"idle CPU {used[cpu.TOTAL]:.1f} %"
            )
    finally:
        pool.close()


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile of ``values``, interpolated linearly between ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _burst(ctx: Context, pool: HttpPool) -> list[float]:
    answers = pool.post_concurrently("/tasks", [TASK] * ctx.options.burst_size)
    sent = {body["id"]: sent_at for sent_at, body in answers}
    ids = list(sent)

    def all_started() -> dict[str, float] | None:
        found = ctx.db.started_at(ids)
        return found if len(found) == len(ids) else None

    started = wait_until(
        all_started,
        timeout=60,
        what=f"{len(ids)} burst tasks to start",
        interval=0.005,
    )
    return [(started[task_id] - sent[task_id]) * 1000 for task_id in ids]
