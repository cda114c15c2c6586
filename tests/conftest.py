"""Test session setup: a fresh PostgreSQL database and an empty Redis db number of our own.

The environment is set here, before any Callboard module is imported, because Dramatiq binds the
broker to ``REDIS_URL`` at import time. A missing PostgreSQL or Redis fails the run loudly.
"""

from __future__ import annotations

import os
import uuid

import psycopg2
import pytest
import redis

BASE_DATABASE_URL = os.environ.get(
    "CALLBOARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432"
)
BASE_REDIS_URL = os.environ.get("CALLBOARD_TEST_REDIS", "redis://127.0.0.1:6379")
SESSION_ID = uuid.uuid4().hex[:12]
DATABASE_NAME = f"callboard_test_{SESSION_ID}"
REDIS_CLAIM_KEY = "callboard:test-session"
#: Redis db numbers the tests may claim (an empty one is claimed for the session).
REDIS_DB_CANDIDATES = range(15, 1, -1)


def _claim_redis_db() -> int:
    for number in REDIS_DB_CANDIDATES:
        client = redis.Redis.from_url(f"{BASE_REDIS_URL}/{number}")
        if client.dbsize() == 0 and client.set(REDIS_CLAIM_KEY, SESSION_ID, nx=True, ex=2 * 3600):
            if client.dbsize() == 1:
                return number
            client.delete(REDIS_CLAIM_KEY)
    raise pytest.UsageError("No empty Redis db number left for the tests (2..15 are all in use).")


def _admin_connection():
    conn = psycopg2.connect(f"{BASE_DATABASE_URL}/postgres", connect_timeout=5)
    conn.autocommit = True
    return conn


try:
    redis.Redis.from_url(BASE_REDIS_URL).ping()
    _admin_connection().close()
except (redis.RedisError, psycopg2.OperationalError) as exc:
    raise pytest.UsageError(
        f"The tests need PostgreSQL at {BASE_DATABASE_URL} and Redis at {BASE_REDIS_URL}; "
        f"run scripts/test, which starts them. ({exc})"
    ) from exc

REDIS_DB = _claim_redis_db()
os.environ["DATABASE_URL"] = f"{BASE_DATABASE_URL}/{DATABASE_NAME}"
os.environ["REDIS_URL"] = f"{BASE_REDIS_URL}/{REDIS_DB}"
os.environ.setdefault("CALLBOARD_HEARTBEAT_INTERVAL", "1")
os.environ["CALLBOARD_API_TOKEN"] = API_TOKEN = f"test-token-{SESSION_ID}"
#: The headers every authenticated test request carries.
AUTH_HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}


def pytest_sessionstart(session):
    conn = _admin_connection()
    conn.cursor().execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    conn.close()
    from models.db import init_database
    from models.migrate import migrate
    from settings import get_settings

    migrate(init_database(get_settings().database_url))


def pytest_sessionfinish(session, exitstatus):
    from models.db import close_connection, database

    if not database.deferred:
        close_connection()
    conn = _admin_connection()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (DATABASE_NAME,),
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{DATABASE_NAME}"')
    conn.close()
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()  # ours: claimed empty at start


@pytest.fixture
def settings():
    """The settings every test runs with (our own database and Redis db)."""
    from settings import get_settings

    return get_settings()


@pytest.fixture
def db():
    """The ledger, emptied before the test."""
    from models.db import database

    database.execute_sql("TRUNCATE tasks, task_events, rebalance_runs")
    return database


@pytest.fixture
def redis_client():
    """A client on the session's own Redis db, emptied (but for our claim) before the test."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.flushdb()
    client.set(REDIS_CLAIM_KEY, SESSION_ID, ex=2 * 3600)
    return client


@pytest.fixture
def broker(redis_client):
    """The process's Dramatiq broker, on the session's Redis db."""
    from actors import broker

    return broker


@pytest.fixture
def client(settings, db, broker):
    """Falcon's test client on a fresh app."""
    from falcon import testing

    from web.app import create_app

    return testing.TestClient(create_app(settings, broker), headers=AUTH_HEADERS)


@pytest.fixture
def stack_env() -> dict:
    """Extra environment for the processes of a test's ``stack`` (a test folder may override)."""
    return {}


@pytest.fixture
def stack(tmp_path, db, redis_client, stack_env):
    """A ``Stack`` of real Callboard processes on an emptied ledger and Redis db; everything it
    started is killed after the test."""
    from e2e.stack import Stack

    stack = Stack(tmp_path / "logs", env=stack_env)
    try:
        yield stack
    finally:
        stack.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the processes' logs to the report of a test that failed while using a stack."""
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and stack is not None and report.when in ("setup", "call"):
        report.sections.append(("Callboard process logs", stack.logs()))
