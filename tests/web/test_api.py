"""The task API through Falcon's TestClient: submit, read, list, follow, cancel, retry, and errors.

Real PostgreSQL and Redis (the session's own database and db number); no worker runs, so a task
stays where the test puts it. Operator endpoints and outages are in ``test_api_operations.py``.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest
from conftest import AUTH_HEADERS
from falcon import testing

from models import transitions
from models.transitions import NewTask
from web.app import create_app

A_PAYLOAD = {"text": "hello", "rounds": 3}
B_PAYLOAD = {"duration_ms": 1000, "steps": 4}
TASK_FIELDS = {
    "id",
    "type",
    "status",
    "payload",
    "result",
    "error",
    "progress",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
}


# -- helpers ---------------------------------------------------------------------------------


def assert_problem(resp, status: int, *, detail: bool = True) -> dict:
    """Assert ``resp`` is an RFC 9457 problem with ``status``; return its document."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in resp.text
    problem = json.loads(resp.text)
    assert problem["status"] == status
    assert problem["title"]
    if detail:
        assert problem["detail"]
    return problem


def error_fields(problem: dict) -> list[str]:
    return [error["field"] for error in problem["errors"]]


def submit(client, task_type: str = "a", payload: dict | None = None):
    payload = payload if payload is not None else (A_PAYLOAD if task_type == "a" else B_PAYLOAD)
    return client.simulate_post("/tasks", json={"type": task_type, "payload": payload})


def ledger_contents(db) -> list[tuple]:
    """Every task row, to compare before and after a request that must change nothing."""
    return db.execute_sql(
        "SELECT id, status, payload::text, attempts, (SELECT count(*) FROM task_events)"
        " FROM tasks ORDER BY id"
    ).fetchall()


def event_kinds(db, task_id) -> list[str]:
    rows = db.execute_sql(
        "SELECT kind FROM task_events WHERE task_id = %s ORDER BY id", (str(task_id),)
    )
    return [kind for (kind,) in rows]


def drop_message(redis_client, broker, task_type: str, task_id) -> None:
    """Remove a task's message from Redis, as if a worker had consumed and acked it."""
    redis_client.hdel(f"{broker.namespace}:{task_type}.msgs", str(task_id))
    redis_client.lrem(f"{broker.namespace}:{task_type}", 0, str(task_id))


def create(db, task_type: str = "a", payload: dict | None = None):
    payload = payload if payload is not None else (A_PAYLOAD if task_type == "a" else B_PAYLOAD)
    (task,) = transitions.create_tasks(db, [NewTask(task_type, payload)])
    return task


@pytest.fixture
def unchanged(db):
    """Given one existing task, assert after the test that the ledger did not change."""
    create(db)
    before = ledger_contents(db)
    yield
    assert ledger_contents(db) == before


# -- POST /tasks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_type", "payload"), [("a", A_PAYLOAD), ("b", B_PAYLOAD)], ids=["a", "b"]
)
def test_a_submitted_task_is_recorded_queued_and_sent(client, db, broker, task_type, payload):
    # When
    resp = client.simulate_post("/tasks", json={"type": task_type, "payload": payload})

    # Then the answer describes a queued task and points at it
    assert resp.status_code == 202
    body = resp.json
    assert set(body) >= TASK_FIELDS
    assert resp.headers["location"] == f"/tasks/{body['id']}"
    assert body["type"] == task_type
    assert body["status"] == "queued"
    assert body["payload"] == payload
    assert body["result"] is None and body["error"] is None
    assert body["progress"] == 0 and body["attempts"] == 0
    assert body["created_at"] is not None
    assert body["started_at"] is None and body["finished_at"] is None
    # and the row, its created event and its message exist
    (status, stored) = db.execute_sql(
        "SELECT status, payload FROM tasks WHERE id = %s", (body["id"],)
    ).fetchone()
    assert (status, stored) == ("queued", payload)
    assert event_kinds(db, body["id"]) == ["created"]
    assert broker.messages_present(task_type, [body["id"]]) == {body["id"]: True}


@pytest.mark.parametrize(
    ("task_type", "payload"),
    [
        ("a", {"text": "", "rounds": 1}),
        ("a", {"text": "x" * (64 * 1024), "rounds": 100_000}),
        ("a", {"text": "é ünïcödé ✓", "rounds": 2}),
        ("b", {"duration_ms": 0, "steps": 1}),
        ("b", {"duration_ms": 600_000, "steps": 1000}),
    ],
    ids=["empty-text", "64-KiB-text-and-max-rounds", "unicode-text", "b-minimum", "b-maximum"],
)
def test_payloads_at_the_edges_of_their_ranges_are_accepted(client, db, task_type, payload):
    # When
    resp = submit(client, task_type, payload)

    # Then
    assert resp.status_code == 202, resp.text
    assert resp.json["payload"] == payload


def test_malformed_json_is_a_400_problem_and_stores_nothing(client, unchanged):
    # When
    resp = client.simulate_post(
        "/tasks", body='{"type": "a", "payload": {', headers={"Content-Type": "application/json"}
    )

    # Then
    assert_problem(resp, 400)


def test_an_empty_body_is_a_422_problem_asking_for_the_type(client, unchanged):
    # When
    resp = client.simulate_post("/tasks", body="", headers={"Content-Type": "application/json"})

    # Then
    problem = assert_problem(resp, 422)
    assert error_fields(problem) == ["type"]
    assert "is required" in problem["errors"][0]["message"]


@pytest.mark.parametrize("body", ["[]", '"a"', "3", "null", "true"])
def test_a_body_that_is_not_an_object_is_a_422_problem(client, unchanged, body):
    # When
    resp = client.simulate_post("/tasks", body=body, headers={"Content-Type": "application/json"})

    # Then
    problem = assert_problem(resp, 422)
    assert error_fields(problem) == ["(body)"]


def test_an_unknown_type_is_a_422_problem_listing_the_valid_types(client, unchanged):
    # When
    resp = submit(client, "c", A_PAYLOAD)

    # Then
    problem = assert_problem(resp, 422)
    assert error_fields(problem) == ["type"]
    assert "a, b" in problem["errors"][0]["message"]
    assert "type" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": A_PAYLOAD}, "type"),
        ({"type": "a"}, "payload"),
        ({"type": "a", "payload": [1, 2]}, "payload"),
        ({"type": "a", "payload": "text"}, "payload"),
        ({"type": "a", "payload": A_PAYLOAD, "priority": 1}, "priority"),
    ],
    ids=["missing-type", "missing-payload", "list-payload", "string-payload", "unknown-field"],
)
def test_a_malformed_submission_is_a_422_problem_naming_the_field(client, unchanged, body, field):
    # When
    resp = client.simulate_post("/tasks", json=body)

    # Then
    problem = assert_problem(resp, 422)
    assert error_fields(problem) == [field]
    assert field in problem["detail"]


@pytest.mark.parametrize("bad_type", [["a"], {"name": "a"}], ids=["list", "object"])
def test_a_type_that_is_not_a_string_is_a_422_problem(client, unchanged, bad_type):
    # When
    resp = client.simulate_post("/tasks", json={"type": bad_type, "payload": A_PAYLOAD})

    # Then
    problem = assert_problem(resp, 422)
    assert error_fields(problem) == ["type"]


@pytest.mark.parametrize(
    ("task_type", "payload", "field"),
    [
        ("a", {"text": "x", "rounds": 0}, "payload.rounds"),
        ("a", {"text": "x", "rounds": 100_001}, "payload.rounds"),
        ("a", {"text": "x", "rounds": "3"}, "payload.rounds"),
        ("a", {"text": "x", "rounds": 3.5}, "payload.rounds"),
        ("a", {"text": "x", "rounds": True}, "payload.rounds"),
        ("a", {"text": 42, "rounds": 1}, "payload.text"),
        ("a", {"text": "x" * (64 * 1024 + 1), "rounds": 1}, "payload.text"),
        ("a", {"rounds": 1}, "payload.text"),
        ("a", {"text": "x", "rounds": 1, "salt": "y"}, "payload.salt"),
        ("b", {"duration_ms": -1, "steps": 1}, "payload.duration_ms"),
        ("b", {"duration_ms": 600_001, "steps": 1}, "payload.duration_ms"),
        ("b", {"duration_ms": None, "steps": 1}, "payload.duration_ms"),
        ("b", {"duration_ms": 10, "steps": 0}, "payload.steps"),
        ("b", {"duration_ms": 10, "steps": 1001}, "payload.steps"),
        ("b", {"duration_ms": 10, "steps": 2.5}, "payload.steps"),
        ("b", {"duration_ms": 10, "steps": False}, "payload.steps"),
        ("b", {"duration_ms": 10, "steps": 1, "text": "x"}, "payload.text"),
    ],
    ids=[
        "rounds-zero",
        "rounds-too-many",
        "rounds-string",
        "rounds-float",
        "rounds-bool",
        "text-number",
        "text-over-64-KiB",
        "text-missing",
        "a-unknown-field",
        "duration-negative",
        "duration-too-long",
        "duration-null",
        "steps-zero",
        "steps-too-many",
        "steps-float",
        "steps-bool",
        "b-unknown-field",
    ],
)
def test_an_invalid_payload_is_a_422_problem_naming_the_field(
    client, unchanged, task_type, payload, field
):
    # When
    resp = submit(client, task_type, payload)

    # Then
    problem = assert_problem(resp, 422)
    assert error_fields(problem) == [field]
    assert field in problem["detail"]
    assert all(error["message"] for error in problem["errors"])


def test_every_invalid_payload_field_is_reported_at_once(client, unchanged):
    # When
    resp = submit(client, "b", {"duration_ms": -1, "steps": 0, "extra": 1})

    # Then
    problem = assert_problem(resp, 422)
    assert sorted(error_fields(problem)) == [
        "payload.duration_ms",
        "payload.extra",
        "payload.steps",
    ]


def test_a_text_with_a_nul_character_is_a_422_problem(client, unchanged):
    # When
    resp = submit(client, "a", {"text": "before\u0000after", "rounds": 1})

    # Then
    problem = assert_problem(resp, 422)
    assert error_fields(problem) == ["payload.text"]


def test_a_body_over_the_limit_by_content_length_is_a_413_problem(client, unchanged, settings):
    # When a client announces a body larger than CALLBOARD_MAX_BODY_BYTES
    resp = client.simulate_post(
        "/tasks",
        body=json.dumps({"type": "a", "payload": A_PAYLOAD}),
        headers={
            "Content-Type": "application/json",
            "Content-Length": str(settings.max_body_bytes + 1),
        },
    )

    # Then it is refused before the body is read
    problem = assert_problem(resp, 413)
    assert str(settings.max_body_bytes) in problem["detail"]


def test_a_valid_task_in_a_body_over_a_small_limit_is_refused(settings, db, broker):
    # Given an app whose body limit is 1 KiB
    small = testing.TestClient(
        create_app(dataclasses.replace(settings, max_body_bytes=1024), broker),
        headers=AUTH_HEADERS,
    )
    before = ledger_contents(db)

    # When a valid submission of 2 KiB arrives, and then a small one
    too_big = submit(small, "a", {"text": "x" * 2048, "rounds": 1})
    fits = submit(small, "a", {"text": "x" * 512, "rounds": 1})

    # Then only the small one is recorded
    assert_problem(too_big, 413)
    assert fits.status_code == 202
    assert len(ledger_contents(db)) == len(before) + 1


# -- GET /tasks/{id} and /tasks/{id}/events -------------------------------------------------


def test_a_task_can_be_read_back_by_its_id(client):
    # Given
    created = submit(client, "b").json

    # When
    resp = client.simulate_get(f"/tasks/{created['id']}")

    # Then
    assert resp.status_code == 200
    assert resp.json == created


def test_an_unknown_task_id_is_a_404_problem(client, unchanged):
    # Given
    unknown = uuid.uuid4()

    # When / Then
    for path in (f"/tasks/{unknown}", f"/tasks/{unknown}/events"):
        problem = assert_problem(client.simulate_get(path), 404)
        assert str(unknown) in problem["detail"]
    for path in (f"/tasks/{unknown}/cancel", f"/tasks/{unknown}/retry"):
        assert_problem(client.simulate_post(path), 404)


@pytest.mark.parametrize(
    "raw_id",
    ["not-a-uuid", "1'%20OR%20'1'%3D'1", "%00", "12345", "..", "%2E%2E"],
    ids=["word", "sql", "nul", "number", "dot-dot", "encoded-dot-dot"],
)
@pytest.mark.parametrize("suffix", ["", "/events"])
def test_a_task_id_that_is_not_a_uuid_is_a_404_problem(client, unchanged, raw_id, suffix):
    # When
    resp = client.simulate_get(f"/tasks/{raw_id}{suffix}")

    # Then
    assert_problem(resp, 404)


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_acting_on_a_task_id_that_is_not_a_uuid_is_a_404_problem(client, unchanged, action):
    # When
    resp = client.simulate_post(f"/tasks/1'%20OR%20'1'%3D'1/{action}")

    # Then
    assert_problem(resp, 404)


@pytest.mark.parametrize("path", ["/tasks/../etc/passwd", "/tasks/..%2Fetc%2Fpasswd"])
def test_a_path_traversal_under_tasks_is_a_404_problem(client, unchanged, path):
    # When
    resp = client.simulate_get(path)

    # Then
    assert_problem(resp, 404, detail=False)
    assert "root:" not in resp.text


def test_the_history_of_a_task_lists_its_events_oldest_first(client, db):
    # Given a task that was submitted, started by a worker and cancelled while running
    task_id = submit(client, "b").json["id"]
    transitions.claim(db, task_id, "host:1:worker")
    client.simulate_post(f"/tasks/{task_id}/cancel")

    # When
    resp = client.simulate_get(f"/tasks/{task_id}/events")

    # Then
    assert resp.status_code == 200
    assert resp.json["task_id"] == task_id
    events = resp.json["events"]
    assert [e["kind"] for e in events] == ["created", "started", "cancel_requested"]
    assert all(set(e) == {"kind", "at", "worker", "detail"} for e in events)
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert events[0]["worker"] is None and events[0]["detail"] == {}
    assert events[1]["worker"] == "host:1:worker"
    assert events[1]["detail"] == {"attempt": 1}


# -- GET /tasks ------------------------------------------------------------------------------


def test_the_task_list_is_newest_first(client, db):
    # Given
    ids = [submit(client, kind).json["id"] for kind in ("a", "b", "a")]

    # When
    resp = client.simulate_get("/tasks")

    # Then
    assert resp.status_code == 200
    assert [t["id"] for t in resp.json["items"]] == ids[::-1]
    assert resp.json["next"] is None


def test_the_task_list_filters_by_status_and_type(client, db):
    # Given queued a and b tasks, and one cancelled a task
    queued_a = submit(client, "a").json["id"]
    queued_b = submit(client, "b").json["id"]
    cancelled_a = submit(client, "a").json["id"]
    client.simulate_post(f"/tasks/{cancelled_a}/cancel")

    # When
    def listed(query: str) -> list[str]:
        resp = client.simulate_get("/tasks", query_string=query)
        assert resp.status_code == 200
        return [t["id"] for t in resp.json["items"]]

    # Then
    assert listed("status=queued") == [queued_b, queued_a]
    assert listed("status=cancelled") == [cancelled_a]
    assert listed("type=a") == [cancelled_a, queued_a]
    assert listed("type=b&status=queued") == [queued_b]
    assert listed("type=b&status=failed") == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("type=c", "type"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=2.5", "limit"),
        ("cursor=bogus", "cursor"),
        ("cursor=" + "A" * 40, "cursor"),
    ],
)
def test_an_invalid_list_parameter_is_a_422_problem_naming_it(client, db, query, field):
    # When
    resp = client.simulate_get("/tasks", query_string=query)

    # Then
    problem = assert_problem(resp, 422)
    assert error_fields(problem) == [field]


def test_invalid_list_filters_are_all_reported_at_once(client, db):
    # When
    resp = client.simulate_get("/tasks", query_string="status=done&type=c&limit=0")

    # Then
    problem = assert_problem(resp, 422)
    assert sorted(error_fields(problem)) == ["limit", "status", "type"]
    by_field = {e["field"]: e["message"] for e in problem["errors"]}
    assert "'a' or 'b'" in by_field["type"]


@pytest.mark.parametrize("limit", ["²", "①"])
def test_a_limit_in_non_ascii_digits_is_a_422_problem(client, db, limit):
    # When
    resp = client.simulate_get("/tasks", params={"limit": limit})

    # Then
    problem = assert_problem(resp, 422)
    assert error_fields(problem) == ["limit"]


@pytest.mark.parametrize("limit", [1, 200])
def test_a_limit_at_either_end_of_its_range_is_honoured(client, db, limit):
    # Given
    for _ in range(2):
        submit(client)

    # When
    resp = client.simulate_get("/tasks", params={"limit": limit})

    # Then
    assert resp.status_code == 200
    assert len(resp.json["items"]) == min(limit, 2)
    assert (resp.json["next"] is None) == (limit >= 2)


def test_following_next_links_walks_every_task_exactly_once_in_order(client, db):
    # Given seven tasks
    ids = [submit(client, "a" if n % 2 else "b").json["id"] for n in range(7)]

    # When following the next links three at a time
    seen, pages, link = [], [], "/tasks?limit=3"
    while link is not None:
        resp = client.simulate_get(link)
        assert resp.status_code == 200
        pages.append(len(resp.json["items"]))
        seen.extend(t["id"] for t in resp.json["items"])
        link = resp.json["next"]

    # Then
    assert pages == [3, 3, 1]
    assert seen == ids[::-1]


def test_next_links_keep_the_filters(client, db):
    # Given five a tasks among b tasks
    a_ids = []
    for n in range(8):
        if n % 3 == 1:
            submit(client, "b")
        else:
            a_ids.append(submit(client, "a").json["id"])

    # When following the next links of type=a two at a time
    seen, link = [], "/tasks?type=a&limit=2"
    while link is not None:
        resp = client.simulate_get(link)
        assert resp.status_code == 200
        seen.extend(t["id"] for t in resp.json["items"])
        assert all(t["type"] == "a" for t in resp.json["items"])
        link = resp.json["next"]

    # Then
    assert seen == a_ids[::-1]


# -- POST /tasks/{id}/cancel -------------------------------------------------------------------


def test_cancelling_a_queued_task_cancels_it_at_once(client, db):
    # Given
    task_id = submit(client, "b").json["id"]

    # When
    resp = client.simulate_post(f"/tasks/{task_id}/cancel")

    # Then
    assert resp.status_code == 200
    assert resp.json["status"] == "cancelled"
    assert resp.json["finished_at"] is not None
    assert client.simulate_get(f"/tasks/{task_id}").json["status"] == "cancelled"
    assert event_kinds(db, task_id) == ["created", "cancelled"]


def test_cancelling_a_running_task_asks_it_to_stop(client, db):
    # Given a task a worker has claimed
    task_id = submit(client, "b").json["id"]
    transitions.claim(db, task_id, "host:1:worker")

    # When
    resp = client.simulate_post(f"/tasks/{task_id}/cancel")

    # Then it keeps running until the worker notices
    assert resp.status_code == 202
    assert resp.json["status"] == "running"
    assert resp.json["cancel_requested"] is True
    assert event_kinds(db, task_id) == ["created", "started", "cancel_requested"]


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "cancelled"])
def test_cancelling_a_finished_task_is_a_409_problem(client, db, outcome):
    # Given a finished task
    task_id = submit(client, "a").json["id"]
    held = transitions.claim(db, task_id, "host:1:worker")
    transitions.finish(db, held, outcome, error=None if outcome == "succeeded" else "x")
    before = ledger_contents(db)

    # When
    resp = client.simulate_post(f"/tasks/{task_id}/cancel")

    # Then
    problem = assert_problem(resp, 409)
    assert problem["status_now"] == outcome
    assert ledger_contents(db) == before


# -- POST /tasks/{id}/retry --------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
def test_retrying_a_failed_or_cancelled_task_queues_it_again_and_sends_it(
    client, db, broker, redis_client, outcome
):
    # Given a task that ran and ended failed or cancelled, whose message was consumed
    task_id = submit(client, "b").json["id"]
    held = transitions.claim(db, task_id, "host:1:worker")
    transitions.finish(db, held, outcome, error="boom")
    drop_message(redis_client, broker, "b", task_id)
    assert broker.messages_present("b", [task_id]) == {task_id: False}

    # When
    resp = client.simulate_post(f"/tasks/{task_id}/retry")

    # Then
    assert resp.status_code == 202
    assert resp.headers["location"] == f"/tasks/{task_id}"
    body = resp.json
    assert body["status"] == "queued"
    assert body["error"] is None and body["result"] is None
    assert body["started_at"] is None and body["finished_at"] is None
    assert body["attempts"] == 1
    assert event_kinds(db, task_id)[-1] == "retried"
    assert broker.messages_present("b", [task_id]) == {task_id: True}


@pytest.mark.parametrize("status", ["queued", "running", "succeeded"])
def test_retrying_a_task_that_is_not_failed_or_cancelled_is_a_409_problem(client, db, status):
    # Given
    task_id = submit(client, "a").json["id"]
    if status != "queued":
        held = transitions.claim(db, task_id, "host:1:worker")
        if status == "succeeded":
            transitions.finish(db, held, "succeeded", result={"ok": True})
    before = ledger_contents(db)

    # When
    resp = client.simulate_post(f"/tasks/{task_id}/retry")

    # Then
    problem = assert_problem(resp, 409)
    assert problem["status_now"] == status
    assert ledger_contents(db) == before


# -- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/tasks/x/y/z", "/task"])
def test_an_unknown_route_is_a_404_problem(client, unchanged, path):
    # When
    resp = client.simulate_get(path)

    # Then
    assert_problem(resp, 404, detail=False)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/tasks"),
        ("PUT", "/tasks"),
        ("POST", "/tasks/{id}"),
        ("DELETE", "/tasks/{id}"),
        ("GET", "/tasks/{id}/cancel"),
        ("GET", "/tasks/{id}/retry"),
        ("POST", "/tasks/{id}/events"),
        ("POST", "/healthz"),
    ],
)
def test_a_wrong_method_is_a_405_problem_with_allow(client, db, method, path):
    # Given
    task_id = create(db).id
    before = ledger_contents(db)

    # When
    resp = client.simulate_request(method, path.format(id=task_id))

    # Then
    assert_problem(resp, 405, detail=False)
    assert resp.headers["allow"]
    assert method not in resp.headers["allow"].split(", ")
    assert ledger_contents(db) == before


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("DELETE", "/tasks")])
def test_unknown_routes_and_methods_are_explained_in_detail(client, db, method, path):
    # When
    resp = client.simulate_request(method, path)

    # Then
    assert_problem(resp, 404 if method == "GET" else 405)
