"""Smoke test of the benchmark (``scripts/bench --quick``): a well-formed RESULT line last, and
nothing it started, created or claimed is left behind."""

from __future__ import annotations

import math
import os
import subprocess
import uuid
from pathlib import Path

import psycopg2
import pytest
import redis

from scripts.benchmark.runner import MARKER, marked_pids

ROOT = Path(__file__).resolve().parents[2]
RESULT_KEYS = {
    "e2e_batch_vs_dramatiq",
    "e2e_single_vs_get",
    "batch_submit_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "idle_latency_p50_ms",
    "idle_latency_p99_ms",
    "max_rss_mb",
}
#: Redis db numbers the smoke run may use; the test session's own is skipped.
REDIS_DB_CANDIDATES = range(2, 14)
RUN_TIMEOUT = 150

pytestmark = pytest.mark.slow


def test_a_quick_benchmark_ends_with_a_result_line_and_leaves_nothing_behind():
    # Given: an empty Redis db and a database name of its own, and a clean environment.
    run_id = f"smoke-{uuid.uuid4().hex[:12]}"
    database = f"callboard_bench_smoke_{uuid.uuid4().hex[:8]}"
    redis_db = _empty_redis_db()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOARD_")}
    env[MARKER] = run_id

    # When
    done = subprocess.run(
        [
            str(ROOT / "scripts" / "bench"),
            "--quick",
            f"--redis-db={redis_db}",
            f"--database={database}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )

    # Then: it succeeded and its last line holds the eight figures, each a positive number.
    assert done.returncode == 0, done.stderr[-4000:]
    last = done.stdout.rstrip("\n").splitlines()[-1]
    assert last.startswith("RESULT "), done.stdout[-2000:]
    figures = dict(part.split("=", 1) for part in last.split()[1:])
    assert set(figures) == RESULT_KEYS
    for key, text in figures.items():
        value = float(text)
        assert math.isfinite(value) and value > 0, f"{key}={text}"
    # And nothing it started runs any more, its database is gone and its Redis db is empty.
    assert marked_pids(run_id) == []
    assert not _database_exists(database)
    assert _redis(redis_db).dbsize() == 0


def _empty_redis_db() -> int:
    own = int(os.environ["REDIS_URL"].rsplit("/", 1)[1])
    for number in REDIS_DB_CANDIDATES:
        if number != own and _redis(number).dbsize() == 0:
            return number
    pytest.fail("No empty Redis db number for the benchmark smoke run.")


def _redis(number: int) -> redis.Redis:
    base = os.environ["REDIS_URL"].rsplit("/", 1)[0]
    return redis.Redis.from_url(f"{base}/{number}")


def _database_exists(name: str) -> bool:
    conn = psycopg2.connect(os.environ["DATABASE_URL"], dbname="postgres", connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()
