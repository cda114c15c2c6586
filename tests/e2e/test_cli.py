"""End-to-end: the ``callboard`` console script against a running stack."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .stack import FAST_REBALANCE_ENV

CALLBOARD = str(Path(sys.executable).with_name("callboard"))


def run_cli(stack, *args: str, token: str | None = None, timeout: float = 60):
    env = {
        **os.environ,
        "CALLBOARD_URL": stack.base_url,
        "CALLBOARD_API_TOKEN": token if token is not None else os.environ["CALLBOARD_API_TOKEN"],
    }
    return subprocess.run(
        [CALLBOARD, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def running(stack):
    stack.start(["web", "worker"], extra_env=FAST_REBALANCE_ENV)
    stack.wait_http_ready()
    stack.wait_workers(2)  # the Procfile's default worker processes
    return stack


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_cli_submits_shows_lists_and_watches_tasks(running):
    # When an A task is submitted and watched to its end
    submitted = run_cli(running, "submit", "a", "--text", "hello", "--rounds", "3", "--watch")

    # Then the watch ends with the right result and exit code 0
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.splitlines()[0]
    digest = b"hello"
    for _ in range(3):
        digest = hashlib.sha256(digest).digest()
    assert digest.hex() in submitted.stdout
    assert "100%  succeeded" in submitted.stdout

    # And show, ls and stats describe it
    shown = run_cli(running, "show", task_id, "--events")
    assert shown.returncode == 0, shown.stderr
    assert "succeeded" in shown.stdout and "started" in shown.stdout
    listed = run_cli(running, "ls", "--type", "a", "--status", "succeeded")
    assert listed.returncode == 0 and task_id in listed.stdout
    stats = run_cli(running, "stats")
    assert stats.returncode == 0, stats.stderr
    assert "QUEUE" in stats.stdout and "WORKER" in stats.stdout


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_watch_follows_a_b_task_step_by_step_until_it_succeeds(running):
    # Given a B task of 2 s in 4 steps
    submitted = run_cli(running, "submit", "b", "--duration-ms", "2000", "--steps", "4")
    task_id = submitted.stdout.strip()

    # When it is watched (not a terminal: one line per change)
    watched = run_cli(running, "watch", task_id, "--interval", "0.1")

    # Then the progress lines go up to 100 % and the result is printed
    assert watched.returncode == 0, watched.stderr
    percents = [
        int(line.split("]")[1].split("%")[0])
        for line in watched.stdout.splitlines()
        if line.startswith("[")
    ]
    assert percents == sorted(percents) and percents[-1] == 100 and len(percents) >= 3
    assert '"steps": 4' in watched.stdout


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_cancel_and_retry_from_the_cli(running):
    # Given a long B task that is running
    task_id = run_cli(
        running, "submit", "b", "--duration-ms", "60000", "--steps", "60"
    ).stdout.strip()
    running.wait_until(
        lambda: running.get(f"/tasks/{task_id}").json()["status"] == "running", timeout=20
    )

    # When it is cancelled, then retried
    cancelled = run_cli(running, "cancel", task_id)
    running.wait_until(
        lambda: running.get(f"/tasks/{task_id}").json()["status"] == "cancelled", timeout=20
    )
    retried = run_cli(running, "retry", task_id)

    # Then
    assert cancelled.returncode == 0 and "stops at its next step" in cancelled.stdout
    assert retried.returncode == 0 and f"{task_id} queued" in retried.stdout
    watched = run_cli(running, "cancel", task_id)
    assert watched.returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_cli_errors_are_clear_and_exit_non_zero(running):
    # An unknown task, a wrong token, invalid input, an unreachable API
    unknown = run_cli(running, "show", "00000000-0000-4000-8000-000000000000")
    wrong_token = run_cli(running, "ls", token="not-the-right-token-at-all")
    invalid = run_cli(running, "submit", "a", "--rounds", "0")
    assert (unknown.returncode, wrong_token.returncode, invalid.returncode) == (1, 1, 1)
    assert "404 Task not found" in unknown.stderr
    assert "401 Unauthorized" in wrong_token.stderr
    assert "payload.rounds" in invalid.stderr
    assert "Traceback" not in unknown.stderr + wrong_token.stderr + invalid.stderr

    env = {**os.environ, "CALLBOARD_URL": "http://127.0.0.1:1"}
    unreachable = subprocess.run(
        [CALLBOARD, "stats"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert unreachable.returncode == 1
    assert "cannot reach the API at http://127.0.0.1:1" in unreachable.stderr
