"""Fixtures for fault tests: a ``Stack`` with a quick repair loop, and servers a test may break.

Tests that stop Redis or PostgreSQL get a server of their own (``redis_server``,
``postgres_cluster``) and point the stack at it; the session's shared servers keep running.
"""

from __future__ import annotations

import pytest

from .servers import PostgresCluster, RedisServer
from .workers import FAST_FAULT_ENV


@pytest.fixture
def stack_env() -> dict:
    """Fault tests run the stack with short heartbeat, rebalance and grace periods."""
    return FAST_FAULT_ENV


@pytest.fixture
def redis_server(tmp_path):
    """A running ``redis-server`` of the test's own, which it may kill and restart empty."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def postgres_cluster():
    """A running PostgreSQL cluster of the test's own, with an empty database whose URL is
    ``database_url`` (Callboard's processes migrate it at boot)."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        cluster.create_database()
        yield cluster
    finally:
        cluster.destroy()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach a throwaway PostgreSQL's log to a failed test's report (tests/conftest.py attaches
    the processes' logs)."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or report.when not in ("setup", "call"):
        return
    cluster = getattr(item, "funcargs", {}).get("postgres_cluster")
    if cluster is not None:
        report.sections.append(("Throwaway PostgreSQL log", cluster.log()[-20000:]))
