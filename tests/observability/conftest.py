"""Fixtures for the observability tests: a ``Stack`` for the end-to-end ones, its logs attached
to a failure report."""

from __future__ import annotations

import pytest

from tests.e2e.stack import Stack


@pytest.fixture
def stack(tmp_path, db, redis_client):
    """A ``Stack`` on an emptied ledger and Redis db; everything it started is killed after."""
    stack = Stack(tmp_path / "logs")
    try:
        yield stack
    finally:
        stack.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the processes' logs to the report of a test that failed."""
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and stack is not None and report.when in ("setup", "call"):
        report.sections.append(("Callboard process logs", stack.logs()))
