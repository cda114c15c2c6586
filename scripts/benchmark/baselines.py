"""The baselines Callboard is compared with, each run alone on the machine.

- Stock Dramatiq: ``stock_actors`` (a no-op actor on a plain ``RedisBroker``) with the same
  ``--processes``/``--threads`` on the same Redis db. Each repetition enqueues ``n`` messages
  with stock ``dispatch`` calls pipelined 1,000 at a time (as Callboard's batch submit sends),
  and the drain lasts from the first enqueue until the queue's message hash is empty (every
  message acknowledged), polled every 2 ms.
- Bare HTTP: ``bare_app`` (Falcon on stock ``waitress.serve``, as many threads as Callboard's
  web) answering a small JSON body to ``GET``, loaded like ``POST /tasks`` is.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

from dramatiq.common import current_millis

from scripts.benchmark import bare_app
from scripts.benchmark.client import get_status
from scripts.benchmark.context import Context, free_port
from scripts.benchmark.load import Request
from scripts.benchmark.waiting import say, wait_until

#: Messages enqueued per Redis pipeline.
ENQUEUE_CHUNK = 1000
#: Messages drained once before the measured repetitions.
WARM_UP_MESSAGES = 200
READY_LINE = "Worker process is ready for action."


def bare_get(ctx: Context) -> None:
    """Measure bare Falcon-on-waitress ``GET`` requests/s and latency at each connection count."""
    options, results = ctx.options, ctx.results
    port = free_port()
    ctx.runner.start(
        "bare-waitress",
        [
            sys.executable,
            "-m",
            "scripts.benchmark.bare_app",
            f"--port={port}",
            f"--threads={options.web_threads}",
        ],
        cwd=ctx.root,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: get_status(url + "/healthz")[0] == 200, timeout=30, what="bare waitress")
    request = Request("GET", bare_app.PATH, dict(ctx.auth))
    ctx.loadgen.run(url, request, connections=max(options.connections), seconds=1)  # warm-up
    for rep in range(options.reps):
        for connections in options.connections:
            result = ctx.loadgen.run(
                url, request, connections=connections, seconds=options.duration
            )
            results.add(f"bare_get_rps@{connections}", result.rate(200))
            results.add(f"bare_get_p50@{connections}", result.p50_ms)
            results.add(f"bare_get_p99@{connections}", result.p99_ms)
            say(
                f"bare waitress GET, {connections} connections, rep {rep + 1}: "
                f"{result.rate(200):,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
                f"p99 {result.p99_ms:.1f} ms"
            )
    results.record_rss("bare waitress", ctx.runner.pid("bare-waitress"))
    ctx.runner.stop("bare-waitress")


def stock_drain(ctx: Context) -> None:
    """Measure how fast stock Dramatiq drains ``n`` no-op messages."""
    options, results = ctx.options, ctx.results
    os.environ["CALLBOARD_BENCH_STOCK_REDIS_URL"] = ctx.redis.url
    from scripts.benchmark import stock_actors  # binds its broker to the bench's db

    ctx.runner.start(
        "stock-dramatiq",
        [
            "dramatiq",
            "scripts.benchmark.stock_actors",
            f"--processes={options.processes}",
            f"--threads={options.threads}",
        ],
        env={"CALLBOARD_BENCH_STOCK_REDIS_URL": ctx.redis.url},
        cwd=ctx.root,
    )
    wait_until(
        lambda: ctx.runner.log_text("stock-dramatiq").count(READY_LINE) >= options.processes,
        timeout=60,
        what="stock Dramatiq workers to be ready",
    )
    _drain(stock_actors, WARM_UP_MESSAGES)
    for rep in range(options.reps):
        rate = _drain(stock_actors, options.n)
        results.add("stock_drain_per_s", rate)
        say(f"stock Dramatiq drain of {options.n:,} no-op messages, rep {rep + 1}: {rate:,.0f}/s")
    results.record_rss("stock dramatiq", ctx.runner.pid("stock-dramatiq"))
    ctx.runner.stop("stock-dramatiq")
    stock_actors.broker.client.close()


def _drain(stock_actors, n: int) -> float:
    broker = stock_actors.broker
    msgs_key = f"{broker.namespace}:{stock_actors.QUEUE_NAME}.msgs"
    started = time.time()
    _enqueue(broker, stock_actors.noop, n)
    wait_until(
        lambda: broker.client.hlen(msgs_key) == 0,
        timeout=max(60, n / 20),
        what=f"stock Dramatiq to drain {n} messages",
        interval=0.002,
    )
    return n / (time.time() - started)


def _enqueue(broker, actor, n: int) -> None:
    # Stock RedisBroker.enqueue(), message for message (a fresh redis_message_id, the stock
    # dispatch script and argument layout), only pipelined.
    dispatch = broker.scripts["dispatch"]
    for start in range(0, n, ENQUEUE_CHUNK):
        pipeline = broker.client.pipeline(transaction=False)
        for _ in range(min(ENQUEUE_CHUNK, n - start)):
            message = actor.message().copy(options={"redis_message_id": str(uuid.uuid4())})
            args = [
                "enqueue",
                current_millis(),
                message.queue_name,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                0,
                broker._max_unpack_size(),
                message.options["redis_message_id"],
                message.encode(),
            ]
            dispatch(keys=[broker.namespace], args=args, client=pipeline)
        pipeline.execute()
