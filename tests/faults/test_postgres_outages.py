"""Fault test: PostgreSQL down while tasks run and requests arrive, then back.

The stack uses a PostgreSQL cluster of the test's own (``postgres_cluster``), stopped with
``pg_ctl -m immediate`` (every connection dropped, as in a crash) and started again; Redis is the
session's. The processes migrate the empty database at boot.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from tests.e2e.api import submit, wait_all_final
from tests.e2e.stack import group_pids

from .observe import CpuMeter, LogWindow, assert_each_succeeded_exactly_once, histories
from .workers import REBALANCE_PERIOD

#: Seconds PostgreSQL stays down.
OUTAGE_S = 6.0
PROCESSES = ["web", "worker", "scheduler"]
#: Requests a client may make while the ledger is down: each must be a 503 problem.
LEDGER_REQUESTS = [
    ("POST", "/tasks", {"type": "a", "payload": {"text": "refused", "rounds": 1}}),
    ("POST", "/tasks/batch", {"tasks": [{"type": "a", "payload": {"text": "no", "rounds": 1}}]}),
    ("GET", "/tasks", None),
    ("GET", "/tasks/{id}", None),
    ("GET", "/tasks/{id}/events", None),
    ("POST", "/tasks/{id}/cancel", None),
    ("GET", "/rebalance", None),
    ("GET", "/readyz", None),
]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_while_postgres_is_down_the_api_answers_503_and_everything_resumes_once_it_is_back(
    stack, postgres_cluster
):
    # Given the stack on a PostgreSQL of its own, with B tasks running and A tasks done
    stack.base_env["DATABASE_URL"] = postgres_cluster.database_url
    stack.start()
    stack.wait_http_ready()
    stack.wait_workers(2)
    pids_before = {name: group_pids(stack.pid(name)) for name in PROCESSES}
    done = [submit(stack, "a", {"text": f"before {i}", "rounds": 100}) for i in range(3)]
    wait_all_final(stack, done, timeout=15)
    running = [submit(stack, "b", {"duration_ms": 4000, "steps": 8}) for _ in range(3)]
    stack.wait_until(
        lambda: all(stack.get(f"/tasks/{t}").json()["progress"] > 0 for t in running),
        timeout=10,
        message="the B tasks to make progress",
    )

    # When PostgreSQL goes down (every connection dropped) for a few seconds
    postgres_cluster.stop(mode="immediate")
    down_at = datetime.now(UTC)
    cpu = CpuMeter(stack, PROCESSES)
    logs = LogWindow(stack)

    # Then every request that needs the ledger is a 503 problem with Retry-After, never a 2xx,
    # a 500 or a traceback, for as long as it is down
    answers = []
    while (round_started := time.monotonic()) - cpu.started < OUTAGE_S:
        for method, path, body in LEDGER_REQUESTS:
            response = stack.http.request(
                method, stack.url(path.format(id=running[0])), json=body, timeout=10
            )
            answers.append((method, path, response))
        # A round every half second, checking meanwhile that no process died
        stack.wait_until(lambda: time.monotonic() - round_started >= 0.5, timeout=5)
    for method, path, response in answers:
        assert response.status_code == 503, (method, path, response.status_code, response.text)
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert int(response.headers["Retry-After"]) > 0, response.headers
        assert "Traceback" not in response.text
    assert "postgres" in answers[-1][2].json()["detail"].lower(), answers[-1][2].text
    # ... no process dies or spins, and the workers wait with a backoff, saying why
    assert stack.unexpected_exits() == {}
    shares = cpu.shares()
    assert all(share < 0.25 for share in shares.values()), shares
    worker_lines = [line for line in logs.lines("worker") if "PostgreSQL" in line]
    for task_id in running:
        delays = [
            float(m[1])
            for line in worker_lines
            if task_id in line and (m := re.search(r"retrying in ([\d.]+) s", line))
        ]
        assert len(delays) >= 3 and delays == sorted(delays), (task_id, delays)
        assert delays[-1] >= 4 * delays[0], (task_id, delays)
    # ... and the rebalance says it skips its runs, instead of failing them with a traceback
    assert any("Rebalance skipped: PostgreSQL is unavailable" in line for line in worker_lines)

    # When it comes back
    postgres_cluster.start()
    back_at = datetime.now(UTC)

    # Then the API answers again, without any process having restarted
    stack.wait_http_ready(timeout=15)
    assert {name: group_pids(stack.pid(name)) for name in PROCESSES} == pids_before
    # ... the tasks that were running finish, once each, and new tasks run
    after = [submit(stack, "a", {"text": f"after {i}", "rounds": 100}) for i in range(3)]
    finished = wait_all_final(stack, [*done, *running, *after], timeout=30)
    assert_each_succeeded_exactly_once(stack, finished)
    for history in histories(stack, running).values():
        assert [e["kind"] for e in history].count("started") == 1, history
    # ... nothing refused during the outage was stored
    stored = stack.get("/tasks", params={"limit": 200}).json()["items"]
    assert {t["id"] for t in stored} == {*done, *running, *after}, stored
    # ... and the repair loop runs again
    stack.wait_until(
        lambda: _runs_since(stack, back_at),
        timeout=4 * REBALANCE_PERIOD + 5,
        message="a rebalance run after PostgreSQL came back",
    )
    # ... and no process logged a traceback about it
    for name in PROCESSES:
        assert "Traceback" not in "\n".join(logs.lines(name)), logs.lines(name)
    print(
        f"PostgreSQL down {(back_at - down_at).total_seconds():.1f} s: {len(answers)} requests,"
        f" all 503; CPU share {shares}; {len(worker_lines)} worker lines about it"
    )


def _runs_since(stack, since: datetime) -> list[dict]:
    runs = stack.get("/rebalance").json()["runs"]
    return [r for r in runs if datetime.fromisoformat(r["started_at"]) > since]
