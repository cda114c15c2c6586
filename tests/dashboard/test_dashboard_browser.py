"""The dashboard in headless Chromium against the real web, worker and scheduler processes."""

from __future__ import annotations

import time

import pytest
from conftest import API_TOKEN

from tests.e2e.stack import FAST_REBALANCE_ENV

from .conftest import save_screenshot

#: One worker process starts faster on a small machine, and is all this test needs.
STACK_ENV = {**FAST_REBALANCE_ENV, "CALLBOARD_WORKER_PROCESSES": "1"}


def severe(entries: list[dict], since_ms: float = 0) -> list[dict]:
    """The console entries at level SEVERE (errors), logged at or after ``since_ms``."""
    return [e for e in entries if e["level"] == "SEVERE" and e["timestamp"] >= since_ms]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_b_task_submitted_from_the_dashboard_runs_to_100_percent_and_another_is_cancelled(
    stack, browser
):
    from .page import Dashboard

    # Given the Procfile's processes running, and the dashboard opened in a fresh browser
    stack.start(extra_env=STACK_ENV)
    stack.wait_http_ready()
    browser.get(stack.url("/"))
    page = Dashboard(browser)

    # Then, with no token yet, it asks for one, having logged no error
    page.wait(lambda _: page.text("token-message"), message="the token dialog")
    assert severe(browser.get_log("browser")) == []

    # When a wrong token is entered, the page says the API refused it (401)
    page.enter_token("not-the-right-token")
    page.wait(lambda _: "401" in page.text("token-message"), message="the 401 message")
    save_screenshot(browser, "dashboard-token-refused")
    # ...and once the right one is entered, it shows the live workers
    connected_at_ms = time.time() * 1000  # the refused calls before this logged errors: expected
    page.enter_token(API_TOKEN)
    page.wait(lambda _: page.live_workers() >= 1, 30, "a live worker on the page")

    # When a B task of 3 s in 10 steps is submitted from the form
    task_id = page.submit("b", duration_ms=3000, steps=10)

    # Then its progress bar advances to 100 % and its status reaches `succeeded`
    progress = page.watch(task_id, "succeeded", timeout=30)
    assert progress[-1] == 100, progress
    assert any(0 < value < 100 for value in progress), f"no step in between: {progress}"
    # ...and its detail shows the result and a timeline from `created` to `succeeded`
    page.wait(lambda _: "succeeded" in page.text("detail-timeline").lower(), message="the timeline")
    assert page.text("detail-id") == task_id
    assert '"steps": 10' in page.text("detail-body")

    # When a long B task is submitted, and cancelled from its row once it runs
    long_id = page.submit("b", duration_ms=120_000, steps=120)
    page.watch(long_id, "running", timeout=20)
    page.cancel(long_id)

    # Then it ends `cancelled`, as the API agrees
    page.watch(long_id, "cancelled", timeout=15)
    assert stack.get(f"/tasks/{long_id}").json()["status"] == "cancelled"
    print(f"screenshot: {save_screenshot(browser, 'dashboard')}")

    # And the page logged no error to the console once connected
    assert severe(browser.get_log("browser"), since_ms=connected_at_ms) == []
