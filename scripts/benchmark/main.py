"""One benchmark run, phase by phase; whatever happens, everything started is stopped at the end.

1. Claim the bench's Redis db, create and migrate its database.
2. Baselines, each alone: bare waitress GET, then stock Dramatiq drains.
3. Callboard's web and scheduler (Procfile lines, bench environment): submit and batch submit.
4. Callboard's workers too: latency bursts (warm, then after idle, with idle CPU), end to end
   with single POSTs and with batches.
5. Stop everything, drop the database, flush the Redis db; print the table and the RESULT line.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

from scripts.benchmark import baselines, latency, measures, report, stack
from scripts.benchmark.context import Context, free_port
from scripts.benchmark.load import LoadGenerator
from scripts.benchmark.options import Options, parse_args
from scripts.benchmark.profiling import Profiler
from scripts.benchmark.resources import BenchDatabase, BenchError, BenchRedis, bench_urls
from scripts.benchmark.runner import MARKER, Runner
from scripts.benchmark.waiting import say

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/callboard"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Variables of the caller's environment that the bench sets itself for Callboard's processes.
OWNED_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "PORT",
    "CALLBOARD_API_TOKEN",
    "CALLBOARD_AUTH_DISABLED",
    "CALLBOARD_WORKER_PROCESSES",
    "CALLBOARD_WORKER_THREADS",
    "CALLBOARD_WEB_THREADS",
)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when it completed (whether or not the targets are met)."""
    options = parse_args(argv)
    # Ctrl+C and SIGTERM unwind through the cleanup below, even if SIGINT came in ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    run_id = os.environ.get(MARKER) or uuid.uuid4().hex[:12]
    work_dir = Path(tempfile.mkdtemp(prefix=f"callboard-bench-{run_id}-"))
    database_url, redis_url = bench_urls(
        os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        options.database,
        options.redis_db,
    )
    runner = Runner(work_dir, run_id, _base_env())
    redis_db = BenchRedis(redis_url, run_id)
    database = BenchDatabase(database_url)
    text, failure_code = None, 1
    started = time.monotonic()
    try:
        redis_db.claim()
        say(f"claimed Redis db {redis_db.db}; creating database {database.name}")
        say(f"logs in {work_dir}")
        database.create(ROOT)
        ctx = _context(options, runner, work_dir, redis_db, database)
        _run_phases(ctx)
        header = _header(ctx, time.monotonic() - started)
        text = report.render(ctx.results, options, header)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        failure_code = 130
    finally:
        say("stopping everything this run started")
        runner.cleanup()
        if redis_db.claimed:  # the database is ours only while we hold the Redis db
            database.drop()
        redis_db.release()
        if text is None or options.keep_logs:
            print(f"bench: logs kept in {work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    if text is None:
        return failure_code
    # Printed once everything is stopped, so the RESULT line is the very last one.
    print(text, flush=True)
    return 0


def _run_phases(ctx: Context) -> None:
    options = ctx.options
    profiler = Profiler(ctx, Path(options.profile_dir)) if options.profile_dir else None
    say(f"load generator: {ctx.loadgen.description}")
    baselines.bare_get(ctx)
    baselines.stock_drain(ctx)
    stack.start(ctx, stack.WEB)
    stack.start(ctx, stack.SCHEDULER)
    measures.submit(ctx, profiler)
    measures.batch_submit(ctx, profiler)
    ctx.db.truncate()
    ctx.redis.clear_queues()
    stack.start(ctx, stack.WORKER)
    latency.warm_and_idle(ctx)
    measures.e2e_single(ctx, profiler)
    measures.e2e_batch(ctx, profiler)
    for name in (stack.WORKER, stack.SCHEDULER, stack.WEB):
        stack.stop(ctx, name)


def _context(
    options: Options, runner: Runner, work_dir: Path, redis_db: BenchRedis, db: BenchDatabase
) -> Context:
    token = f"callboard-bench-{uuid.uuid4().hex}"
    port = free_port()
    env = {
        "DATABASE_URL": db.url,
        "REDIS_URL": redis_db.url,
        "PORT": str(port),
        "CALLBOARD_API_TOKEN": token,
        "CALLBOARD_WORKER_PROCESSES": str(options.processes),
        "CALLBOARD_WORKER_THREADS": str(options.threads),
        "CALLBOARD_WEB_THREADS": str(options.web_threads),
    }
    return Context(
        options=options,
        root=ROOT,
        work_dir=work_dir,
        runner=runner,
        loadgen=LoadGenerator.choose(options.loadgen, runner, work_dir),
        redis=redis_db,
        db=db,
        token=token,
        env=env,
        web_port=port,
    )


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OWNED_VARIABLES}
    # The venv's tools (dramatiq, py-spy) first, as scripts/lib.sh's activation does.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _header(ctx: Context, seconds: float) -> list[str]:
    o = ctx.options
    # Settings the caller passes on to the processes (e.g. dramatiq_worker_timeout=20).
    tuned = sorted(
        k
        for k in os.environ
        if k.startswith(("CALLBOARD_", "dramatiq_"))
        and k not in OWNED_VARIABLES
        and not k.startswith("CALLBOARD_BENCH_")
    )
    lines = [
        f"Callboard benchmark: {o.reps} repetitions, N={o.n:,}, workers {o.processes} processes × "
        f"{o.threads} threads, web {o.web_threads} threads, load generator: "
        f"{ctx.loadgen.description}",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; whole run "
        f"{seconds:.0f} s; PostgreSQL database {ctx.db.name}, Redis db {ctx.redis.db}.",
        "Each figure: median [min–max] of the repetitions; a ratio pairs repetition i with the "
        "baseline's repetition i.",
    ]
    if tuned:
        settings = ", ".join(f"{k}={os.environ[k]}" for k in tuned)
        lines.append(f"Caller's settings in effect: {settings}")
    if o.profile_dir:
        lines.append(
            "PROFILED RUN: py-spy sampled web and worker in the first repetition of submit, "
            "batch submit and both end-to-end runs; their figures are lower."
        )
    return lines


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)
