"""Operator endpoints (health, readiness, workers, rebalance runs) and the API during outages.

An unreachable Redis is a broker whose client points at a closed port; an unreachable
PostgreSQL is ``models.db.database`` pointed at a closed port for the length of one test.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import AUTH_HEADERS
from falcon import testing

from actors.broker import redis_client as make_redis_client
from actors.heartbeat import KEY_PREFIX, WorkerHeartbeat
from actors.ledger_broker import LedgerRedisBroker
from actors.rebalance import run_rebalance
from actors.worker_state import WorkerState
from models import transitions
from models.db import init_database
from models.transitions import NewTask
from web.app import create_app

#: A Redis URL on a port where nothing listens: every command fails at once.
CLOSED_REDIS_URL = "redis://127.0.0.1:1/0"
#: A PostgreSQL URL on a port where nothing listens.
CLOSED_POSTGRES_URL = "postgresql://postgres@127.0.0.1:1/unreachable"


def assert_problem(resp, status: int) -> dict:
    """Assert ``resp`` is an RFC 9457 problem with ``status``; return its document."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in resp.text
    problem = json.loads(resp.text)
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    return problem


def task_count(db) -> int:
    return db.execute_sql("SELECT count(*) FROM tasks").fetchone()[0]


@pytest.fixture
def redis_down_client(settings, db, broker):
    """A TestClient whose broker's Redis is unreachable (PostgreSQL is fine)."""
    unreachable = LedgerRedisBroker(client=make_redis_client(CLOSED_REDIS_URL))
    # The app sends through the broker's declared actors; declare ours on it (no I/O).
    for actor in broker.actors.values():
        unreachable.declare_actor(actor)
    return testing.TestClient(create_app(settings, unreachable), headers=AUTH_HEADERS)


@pytest.fixture
def postgres_down(client, settings, db):
    """Point the ledger at a closed port for this test; always point it back afterwards."""
    init_database(CLOSED_POSTGRES_URL)
    try:
        yield client
    finally:
        init_database(settings.database_url)


# -- /healthz and /readyz --------------------------------------------------------------------


def test_the_health_check_answers_ok(client):
    # When
    resp = client.simulate_get("/healthz")

    # Then
    assert resp.status_code == 200
    assert resp.json == {"status": "ok"}


def test_the_readiness_check_answers_ready_with_its_checks(client):
    # When
    resp = client.simulate_get("/readyz")

    # Then
    assert resp.status_code == 200
    assert resp.json == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}


def test_the_readiness_check_is_a_503_problem_naming_redis_when_redis_is_down(redis_down_client):
    # When
    resp = redis_down_client.simulate_get("/readyz")

    # Then
    problem = assert_problem(resp, 503)
    assert "redis" in problem["detail"]
    assert "postgres" not in problem["detail"]
    assert problem["checks"]["postgres"] == "ok"
    assert problem["checks"]["redis"].startswith("unreachable")
    assert resp.headers["retry-after"]


def test_the_health_check_answers_ok_while_redis_is_down(redis_down_client):
    # When
    resp = redis_down_client.simulate_get("/healthz")

    # Then
    assert resp.status_code == 200


# -- Redis down --------------------------------------------------------------------------------


def test_a_task_submitted_while_redis_is_down_is_still_accepted_and_recorded(
    redis_down_client, db, broker
):
    # When
    started = time.monotonic()
    resp = redis_down_client.simulate_post(
        "/tasks", json={"type": "a", "payload": {"text": "x", "rounds": 1}}
    )

    # Then it is durably recorded, promptly, for the rebalance to send later
    assert time.monotonic() - started < 5
    assert resp.status_code == 202
    task_id = resp.json["id"]
    (status,) = db.execute_sql("SELECT status FROM tasks WHERE id = %s", (task_id,)).fetchone()
    assert status == "queued"
    assert broker.messages_present("a", [task_id]) == {task_id: False}


def test_a_task_submitted_while_redis_was_down_is_sent_by_the_rebalance(
    redis_down_client, db, broker, settings
):
    # Given a task recorded while Redis was down, older than the resend grace
    task_id = redis_down_client.simulate_post(
        "/tasks", json={"type": "b", "payload": {"duration_ms": 1, "steps": 1}}
    ).json["id"]
    db.execute_sql(
        "UPDATE tasks SET queued_at = now() - interval '1 hour' WHERE id = %s", (task_id,)
    )

    # When Redis is back and the rebalance runs
    report = run_rebalance(broker, db, settings)

    # Then its message exists
    assert report.resent == 1
    assert broker.messages_present("b", [task_id]) == {task_id: True}


def test_a_retry_while_redis_is_down_is_still_accepted(redis_down_client, db):
    # Given a failed task
    (task,) = transitions.create_tasks(db, [NewTask("a", {"text": "x", "rounds": 1})])
    held = transitions.claim(db, task.id, "host:1:worker")
    transitions.finish(db, held, "failed", error="boom")

    # When
    resp = redis_down_client.simulate_post(f"/tasks/{task.id}/retry")

    # Then
    assert resp.status_code == 202
    assert resp.json["status"] == "queued"


def test_the_worker_list_is_a_503_problem_naming_redis_when_redis_is_down(redis_down_client):
    # When
    resp = redis_down_client.simulate_get("/workers")

    # Then
    problem = assert_problem(resp, 503)
    assert "Redis" in problem["detail"]


# -- PostgreSQL down -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/tasks", {"type": "a", "payload": {"text": "x", "rounds": 1}}),
        ("GET", "/tasks", None),
        ("GET", "/tasks/00000000-0000-4000-8000-000000000000", None),
        ("GET", "/tasks/00000000-0000-4000-8000-000000000000/events", None),
        ("POST", "/tasks/00000000-0000-4000-8000-000000000000/cancel", None),
        ("GET", "/rebalance", None),
    ],
)
def test_requests_while_postgres_is_down_are_503_problems_with_retry_after(
    postgres_down, method, path, body
):
    # When
    resp = postgres_down.simulate_request(method, path, json=body)

    # Then
    problem = assert_problem(resp, 503)
    assert "PostgreSQL" in problem["detail"]
    assert int(resp.headers["retry-after"]) > 0


def test_the_readiness_check_is_a_503_problem_naming_postgres_when_it_is_down(postgres_down):
    # When
    resp = postgres_down.simulate_get("/readyz")

    # Then
    problem = assert_problem(resp, 503)
    assert "postgres" in problem["detail"]
    assert problem["checks"]["postgres"].startswith("unreachable")
    assert problem["checks"]["redis"] == "ok"


def test_a_submission_while_postgres_is_down_is_refused_and_records_nothing(client, settings, db):
    # Given
    before = task_count(db)

    # When PostgreSQL is unreachable during the request
    init_database(CLOSED_POSTGRES_URL)
    try:
        resp = client.simulate_post(
            "/tasks", json={"type": "a", "payload": {"text": "x", "rounds": 1}}
        )
    finally:
        init_database(settings.database_url)

    # Then the client is not told it was recorded, and nothing was
    assert resp.status_code >= 500
    assert resp.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in resp.text
    assert task_count(db) == before


def test_the_api_answers_again_once_postgres_is_back(postgres_down, settings):
    # Given a request failed while PostgreSQL was down
    postgres_down.simulate_get("/tasks")

    # When it is back
    init_database(settings.database_url)

    # Then
    assert postgres_down.simulate_get("/tasks").status_code == 200
    assert postgres_down.simulate_get("/readyz").status_code == 200


# -- /workers ----------------------------------------------------------------------------------


def test_the_worker_list_shows_each_live_heartbeat(client, broker, redis_client):
    # Given a worker that beat once, holding nothing
    state = WorkerState()
    WorkerHeartbeat(state, redis_client, interval=1, ttl=3)._beat()

    # When
    resp = client.simulate_get("/workers")

    # Then
    assert resp.status_code == 200
    (worker,) = resp.json["workers"]
    assert worker["worker_id"] == state.worker_id
    assert worker["held"] == [] and worker["processed"] == 0
    assert worker["interval"] == 1
    assert 0 <= worker["age_s"] < 3


def test_the_worker_list_is_sorted_and_shows_what_each_worker_holds(client, redis_client):
    # Given two heartbeats written the way the heartbeat module writes them
    now = time.time()
    for worker_id, held in (("host-b:2:bbbb", ["t-2"]), ("host-a:1:aaaa", ["t-1", "t-3"])):
        record = {
            "worker_id": worker_id,
            "host": worker_id.split(":")[0],
            "pid": worker_id.split(":")[1],
            "queues": ["a", "b", "rebalance"],
            "threads": 5,
            "held": held,
            "processed": 7,
            "started_at": now - 60,
            "beat_at": now - 1,
            "interval": 30.0,
        }
        redis_client.set(KEY_PREFIX + worker_id, json.dumps(record), px=90_000)

    # When
    resp = client.simulate_get("/workers")

    # Then
    assert resp.status_code == 200
    workers = resp.json["workers"]
    assert [w["worker_id"] for w in workers] == ["host-a:1:aaaa", "host-b:2:bbbb"]
    assert workers[0]["held"] == ["t-1", "t-3"]
    assert all(0.9 <= w["age_s"] < 5 for w in workers)


def test_a_worker_that_shut_down_cleanly_leaves_the_worker_list(client, broker, redis_client):
    # Given a worker that beat
    state = WorkerState()
    heartbeat = WorkerHeartbeat(state, redis_client, interval=1, ttl=3)
    heartbeat._beat()

    # When it shuts down
    heartbeat.after_worker_shutdown(broker, worker=None)

    # Then
    assert client.simulate_get("/workers").json == {"workers": []}


# -- /rebalance --------------------------------------------------------------------------------


def test_the_rebalance_list_shows_recent_runs_newest_first(client, db, broker, settings):
    # Given two runs, the second of which re-sent a task that had lost its message
    run_rebalance(broker, db, settings)
    (task,) = transitions.create_tasks(db, [NewTask("a", {"text": "x", "rounds": 1})])
    db.execute_sql("UPDATE tasks SET queued_at = now() - interval '1 hour'")
    run_rebalance(broker, db, settings)

    # When
    resp = client.simulate_get("/rebalance")

    # Then
    assert resp.status_code == 200
    runs = resp.json["runs"]
    assert [r["resent"] for r in runs] == [1, 0]
    assert runs[0]["started_at"] > runs[1]["started_at"]
    assert set(runs[0]) == {
        "started_at",
        "duration_ms",
        "resent",
        "recovered",
        "poisoned",
        "dead_workers",
        "detail",
    }
    assert runs[0]["detail"] == {"liveness_checked": True}
    assert runs[0]["dead_workers"] == [] and runs[0]["duration_ms"] >= 0


def test_the_rebalance_list_honours_its_limit(client, db, broker, settings):
    # Given
    for _ in range(3):
        run_rebalance(broker, db, settings)

    # When
    resp = client.simulate_get("/rebalance", params={"limit": 2})

    # Then
    assert resp.status_code == 200
    assert len(resp.json["runs"]) == 2


@pytest.mark.parametrize("limit", ["0", "201", "x"])
def test_an_invalid_rebalance_limit_is_a_problem(client, db, limit):
    # When
    resp = client.simulate_get("/rebalance", params={"limit": limit})

    # Then
    assert resp.status_code in (400, 422)
    assert resp.headers["content-type"] == "application/problem+json"
