"""The API contract (issue 4) through Falcon's TestClient.

Bad input of every kind, authentication, idempotency keys (under concurrency too), batches,
delayed tasks, listing by creation time, and the OpenAPI document with its docs page. Real
PostgreSQL and Redis (the session's own); no worker runs, so a task stays where a test puts it.
The live-server conformance run is ``test_schemathesis.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import falcon
import pytest
from conftest import API_TOKEN, AUTH_HEADERS
from dramatiq.message import Message
from falcon import inspect, testing

from actors.task_types import REGISTRY
from models import transitions
from models.db import close_connection
from models.transitions import NewTask
from web.app import AuthNotConfigured, create_app
from web.json_media import MAX_DEPTH
from web.schemas import MAX_BATCH_SIZE, MAX_DELAY_MS

ROOT = Path(__file__).resolve().parents[2]
A_PAYLOAD = {"text": "hello", "rounds": 3}
B_PAYLOAD = {"duration_ms": 1000, "steps": 4}
VALID = {"type": "a", "payload": A_PAYLOAD}
PROBLEM = "application/problem+json"
BEARER = f"Bearer {API_TOKEN}"
#: A second token, as during a rotation (CALLBOARD_API_TOKEN="old,new").
ROTATED_TOKEN = f"rotated-token-{uuid.uuid4().hex}"
#: An offset to write times in, so that none of them is given in UTC.
PLUS_0530 = timezone(timedelta(hours=5, minutes=30))
#: Routes of the app that are not API operations, so not in the OpenAPI document.
NOT_IN_DOCUMENT = {
    "/openapi.json": "the document itself",
    "/docs": "Swagger UI's static page",
    "/": "the dashboard's static page",
    "/dashboard": "the dashboard's static page",
    "/metrics": "Prometheus text exposition, for scrapers rather than API clients",
}


# -- helpers ---------------------------------------------------------------------------------


def assert_problem(resp, status: int) -> dict:
    """Assert ``resp`` is an RFC 9457 problem with ``status``; return its document."""
    assert resp.status_code == status, resp.text[:2000]
    assert resp.headers["content-type"] == PROBLEM
    assert "Traceback" not in resp.text
    problem = json.loads(resp.text)
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    return problem


def error_fields(problem: dict) -> list[str]:
    return [error["field"] for error in problem["errors"]]


def ledger_contents(db) -> list[tuple]:
    """Every task row and the number of events, to compare before and after a request."""
    return db.execute_sql(
        "SELECT id, status, payload::text, run_at, attempts, idempotency_key,"
        " (SELECT count(*) FROM task_events) FROM tasks ORDER BY id"
    ).fetchall()


def messages(broker) -> dict:
    """What Redis holds for each task queue."""
    return broker.queue_stats(REGISTRY)


def task_count(db) -> int:
    return db.execute_sql("SELECT count(*) FROM tasks").fetchone()[0]


def bare_client(app: falcon.App) -> testing.TestClient:
    """A client that sends no token unless a request names one."""
    return testing.TestClient(app)


@pytest.fixture
def app(settings, db, broker):
    return create_app(settings, broker)


@pytest.fixture
def unchanged(db, broker):
    """Given one existing task, assert after the test that neither the ledger nor Redis
    changed."""
    (task,) = transitions.create_tasks(db, [NewTask("a", A_PAYLOAD)])
    before = ledger_contents(db), messages(broker)
    yield task
    assert (ledger_contents(db), messages(broker)) == before


# -- the bad-input table ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Bad:
    """One bad request and the answer it must get."""

    id: str
    status: int
    fields: tuple[str, ...] | None = None  # the errors list must name exactly these
    method: str = "POST"
    path: str = "/tasks"
    body: bytes | dict | list | None = None
    content_type: str | None = "application/json"
    query: str | None = None
    headers: dict = dataclasses.field(default_factory=dict)
    auth: str | None = BEARER  # None: no Authorization header at all


def _raw(text: str) -> bytes:
    """A body given as text, where ``\\ud800``-style escapes stay JSON escapes."""
    return text.encode("utf-8")


def _submission(**changes) -> dict:
    return {**VALID, **changes}


def _a(**payload) -> dict:
    return {"type": "a", "payload": {**A_PAYLOAD, **payload}}


_IN_8_DAYS = (datetime.now(UTC) + timedelta(days=8)).isoformat()
_DEEP = '{"type": "a", "payload": ' + "[" * 100_000 + "]" * 100_000 + "}"


def _nested(depth: int) -> dict:
    """A submission nesting ``depth`` levels deep (the body and its payload are two of them),
    with the deepest part in an unknown payload field ``x``."""
    lists = depth - 2
    return {"type": "a", "payload": {**A_PAYLOAD, "x": json.loads("[" * lists + "]" * lists)}}


_TEN_MB = b'{"type": "a", "payload": {"text": "' + b"x" * (10 * 1024 * 1024) + b'", "rounds": 1}}'

BAD_REQUESTS = [
    # Not JSON, or not a JSON the API reads
    Bad("malformed-json", 400, body=_raw('{"type": "a", "payload": {')),
    Bad("trailing-garbage", 400, body=_raw('{"type": "a", "payload": {}} x')),
    Bad("form-encoded-text-as-json", 400, body=_raw("type=a&payload=x")),
    Bad("invalid-utf-8", 400, body=b'{"type": "a", "payload": {"text": "\xff\xfe", "rounds": 1}}'),
    Bad("utf-8-bom", 400, body=_raw('\ufeff{"type": "a", "payload": {}}')),
    Bad(
        "nan-is-not-json", 400, body=_raw('{"type": "a", "payload": {"text": "x", "rounds": NaN}}')
    ),
    Bad("wrong-content-type", 415, body=VALID, content_type="text/plain"),
    Bad("form-content-type", 415, body=VALID, content_type="application/x-www-form-urlencoded"),
    Bad("empty-body", 422, ("type",), body=b""),
    Bad("body-is-an-array", 422, ("(body)",), body=[VALID]),
    Bad("body-is-null", 422, ("(body)",), body=_raw("null")),
    Bad("10-MB-body", 413, body=_TEN_MB),
    # NUL characters, nesting and unicode
    Bad("nul-in-text", 422, ("payload.text",), body=_a(text="before\u0000after")),
    Bad("nul-in-type", 422, ("type",), body=_submission(type="a\u0000")),
    Bad(
        "nul-in-a-key",
        422,
        ("payload.text", "payload.te\u0000xt"),
        body=_raw('{"type": "a", "payload": {"te\\u0000xt": "x", "rounds": 1}}'),
    ),
    Bad("deep-nesting", 422, ("(body)",), body=_raw(_DEEP)),
    Bad("nesting-one-level-too-deep", 422, ("(body)",), body=_nested(MAX_DEPTH + 1)),
    # (at the limit the body is read, and its unknown field refused)
    Bad("nesting-at-the-limit", 422, ("payload.x",), body=_nested(MAX_DEPTH)),
    Bad(
        "lone-surrogate",
        422,
        ("payload.text",),
        body=_raw('{"type": "a", "payload": {"text": "\\ud800", "rounds": 1}}'),
    ),
    Bad(
        "reversed-surrogates",
        422,
        ("payload.text",),
        body=_raw('{"type": "a", "payload": {"text": "\\udfff\\ud800", "rounds": 1}}'),
    ),
    Bad(
        "surrogate-in-a-key",
        422,
        ("(body)",),
        body=_raw('{"type": "a", "payload": {"text": "x", "rounds": 1}, "\\ud800": 1}'),
    ),
    Bad("64-Ki-emoji-plus-one", 422, ("payload.text",), body=_a(text="😀" * (64 * 1024 + 1))),
    Bad("fullwidth-type", 422, ("type",), body=_submission(type="ａ")),
    Bad("type-with-a-combining-accent", 422, ("type",), body=_submission(type="a\u0301")),
    # Numbers
    Bad("huge-integer", 422, ("payload.rounds",), body=_a(rounds=10**30)),
    Bad(
        "5000-digit-integer",
        422,
        ("payload.rounds",),
        body=_raw('{"type": "a", "payload": {"text": "x", "rounds": ' + "9" * 5000 + "}}"),
    ),
    Bad(
        "number-beyond-float",
        422,
        ("payload.rounds",),
        body=_raw('{"type": "a", "payload": {"text": "x", "rounds": 1e400}}'),
    ),
    Bad("negative-rounds", 422, ("payload.rounds",), body=_a(rounds=-1)),
    Bad(
        "negative-duration",
        422,
        ("payload.duration_ms",),
        body={"type": "b", "payload": {**B_PAYLOAD, "duration_ms": -1}},
    ),
    Bad("float-for-int", 422, ("payload.rounds",), body=_a(rounds=2.5)),
    Bad(
        "tiny-float-for-int",
        422,
        ("payload.steps",),
        body={"type": "b", "payload": {**B_PAYLOAD, "steps": 1.000001}},
    ),
    Bad("string-for-int", 422, ("payload.rounds",), body=_a(rounds="3")),
    Bad("bool-for-int", 422, ("payload.rounds",), body=_a(rounds=True)),
    Bad("int-for-string", 422, ("payload.text",), body=_a(text=42)),
    # Shape
    Bad("unknown-field", 422, ("priority",), body=_submission(priority=1)),
    Bad("unknown-payload-field", 422, ("payload.salt",), body=_a(salt="y")),
    Bad("unknown-type", 422, ("type",), body=_submission(type="c")),
    Bad("missing-type", 422, ("type",), body={"payload": A_PAYLOAD}),
    Bad("null-payload", 422, ("payload",), body=_submission(payload=None)),
    Bad(
        "every-field-wrong",
        422,
        ("payload.duration_ms", "payload.steps", "payload.extra"),
        body={"type": "b", "payload": {"duration_ms": -1, "steps": 0, "extra": 1}},
    ),
    # Delays
    Bad("run-at-in-words", 422, ("run_at",), body=_submission(run_at="tomorrow")),
    Bad("run-at-as-unix-time", 422, ("run_at",), body=_submission(run_at=1_900_000_000)),
    Bad("run-at-as-digits", 422, ("run_at",), body=_submission(run_at="1900000000")),
    Bad("run-at-without-offset", 422, ("run_at",), body=_submission(run_at="2030-01-01T00:00:00")),
    Bad("run-at-with-a-space", 422, ("run_at",), body=_submission(run_at="2030-01-01 00:00:00Z")),
    Bad("run-at-8-days-away", 422, ("run_at",), body=_submission(run_at=_IN_8_DAYS)),
    Bad("delay-of-7-days", 422, ("delay_ms",), body=_submission(delay_ms=MAX_DELAY_MS + 1)),
    Bad("negative-delay", 422, ("delay_ms",), body=_submission(delay_ms=-1)),
    Bad("float-delay", 422, ("delay_ms",), body=_submission(delay_ms=1.5)),
    Bad(
        "delay-and-run-at",
        422,
        ("delay_ms",),
        body=_submission(delay_ms=1000, run_at=datetime.now(UTC).isoformat()),
    ),
    # Idempotency keys
    Bad(
        "key-too-long",
        422,
        ("Idempotency-Key",),
        body=VALID,
        headers={"Idempotency-Key": "k" * 201},
    ),
    Bad(
        "key-with-a-space",
        422,
        ("Idempotency-Key",),
        body=VALID,
        headers={"Idempotency-Key": "a b"},
    ),
    Bad("key-empty", 422, ("Idempotency-Key",), body=VALID, headers={"Idempotency-Key": ""}),
    Bad("key-not-ascii", 422, ("Idempotency-Key",), body=VALID, headers={"Idempotency-Key": "clé"}),
    # Batches
    Bad("batch-empty", 422, ("tasks",), path="/tasks/batch", body={"tasks": []}),
    Bad("batch-not-a-list", 422, ("tasks",), path="/tasks/batch", body={"tasks": VALID}),
    Bad(
        "batch-of-1001",
        422,
        ("tasks",),
        path="/tasks/batch",
        body={"tasks": [VALID] * (MAX_BATCH_SIZE + 1)},
    ),
    Bad(
        "batch-with-bad-items",
        422,
        ("tasks[1].payload.steps", "tasks[2].type"),
        path="/tasks/batch",
        body={
            "tasks": [
                VALID,
                {"type": "b", "payload": {**B_PAYLOAD, "steps": 0}},
                _submission(type="c"),
            ]
        },
    ),
    Bad(
        "batch-unknown-field",
        422,
        ("atomic",),
        path="/tasks/batch",
        body={"tasks": [VALID], "atomic": False},
    ),
    # Ids and queries
    Bad("path-traversal-id", 404, method="GET", path="/tasks/..%2F..%2Fetc%2Fpasswd"),
    Bad("path-traversal-in-assets", 404, method="GET", path="/docs/assets/../../../etc/passwd"),
    Bad("sql-looking-id", 404, method="GET", path="/tasks/1'%20OR%20'1'%3D'1"),
    Bad("sql-looking-id-on-cancel", 404, path="/tasks/x';%20DROP%20TABLE%20tasks;--/cancel"),
    Bad("nul-in-id", 404, method="GET", path="/tasks/%00"),
    Bad(
        "sql-looking-status",
        422,
        ("status",),
        method="GET",
        query="status=queued%27%20OR%20%271%27%3D%271",
    ),
    Bad("limit-too-big", 422, ("limit",), method="GET", query="limit=1000"),
    Bad("status-twice", 422, ("status",), method="GET", query="status=queued&status=failed"),
    Bad("limit-negative", 422, ("limit",), method="GET", query="limit=-5"),
    Bad("limit-float", 422, ("limit",), method="GET", query="limit=2.5"),
    Bad(
        "created-after-in-words",
        422,
        ("created_after",),
        method="GET",
        query="created_after=yesterday",
    ),
    Bad(
        "created-before-without-offset",
        422,
        ("created_before",),
        method="GET",
        query="created_before=2030-01-01T00:00:00",
    ),
    Bad("cursor-traversal", 422, ("cursor",), method="GET", query="cursor=../../etc/passwd"),
    Bad("unknown-query-parameter", 422, ("sort",), method="GET", query="sort=id"),
    Bad("wrong-method", 405, method="PUT", body=VALID),
    # Tokens (on a valid submission: nothing may be stored)
    Bad("missing-token", 401, body=VALID, auth=None),
    Bad("wrong-token", 401, body=VALID, auth=f"Bearer wrong-{API_TOKEN}"),
    Bad("empty-token", 401, body=VALID, auth="Bearer "),
    Bad("empty-header", 401, body=VALID, auth=""),
    Bad("token-prefix", 401, body=VALID, auth=BEARER[:-1]),
    Bad("token-without-scheme", 401, body=VALID, auth=API_TOKEN),
    Bad("basic-scheme", 401, body=VALID, auth=f"Basic {API_TOKEN}"),
    Bad("token-in-query-only", 401, method="GET", query=f"access_token={API_TOKEN}", auth=None),
]


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[bad.id for bad in BAD_REQUESTS])
def test_a_bad_request_gets_its_4xx_problem_and_changes_nothing(app, unchanged, bad):
    # Given a request that is wrong in one way
    headers = dict(bad.headers)
    if bad.auth is not None:
        headers["Authorization"] = bad.auth
    body = bad.body
    if isinstance(body, dict | list):
        body = json.dumps(body)
    if bad.content_type and body is not None:
        headers["Content-Type"] = bad.content_type

    # When
    resp = bare_client(app).simulate_request(
        bad.method, bad.path, body=body, headers=headers, query_string=bad.query
    )

    # Then it gets the right problem, naming each offending field (the fixture checks that
    # neither the ledger nor Redis changed)
    problem = assert_problem(resp, bad.status)
    if bad.fields is not None:
        assert sorted(error_fields(problem)) == sorted(bad.fields)
        assert all(error["message"] for error in problem["errors"])
        for field in bad.fields:
            assert field in problem["detail"]
    if bad.status == 401:
        assert resp.headers["www-authenticate"].startswith("Bearer")


def test_the_bad_input_table_is_at_least_25_cases_of_every_kind():
    assert len(BAD_REQUESTS) >= 25
    assert {bad.status for bad in BAD_REQUESTS} >= {400, 401, 404, 405, 413, 415, 422}


def test_an_oversized_body_is_refused_before_it_is_read(app, unchanged, settings):
    # Given a request whose body would fail the test if anything read it
    class Unreadable:
        def read(self, *args):
            raise AssertionError("the body was read")

        readline = readlines = __iter__ = read

    environ = testing.create_environ(
        "/tasks",
        method="POST",
        headers={**AUTH_HEADERS, "Content-Type": "application/json"},
    )
    environ["CONTENT_LENGTH"] = str(settings.max_body_bytes + 1)
    environ["wsgi.input"] = Unreadable()
    start = testing.StartResponseMock()

    # When
    body = b"".join(app(environ, start))

    # Then
    assert start.status.startswith("413")
    assert start.headers_dict["content-type"] == PROBLEM
    assert str(settings.max_body_bytes) in json.loads(body)["detail"]


def test_an_integral_number_is_an_integer_as_json_schema_says(client, db):
    # JSON Schema, and so the API document, counts 3.0 as the integer 3; the API agrees.
    resp = client.simulate_post(
        "/tasks",
        body='{"type": "a", "payload": {"text": "x", "rounds": 3.0}}',
        headers={"Content-Type": "application/json"},
    )

    assert resp.status_code == 202, resp.text
    assert resp.json["payload"] == {"text": "x", "rounds": 3}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "é ünïcödé ✓",
        "漢字 🎉 \u200b\u202e",
        "\U0010fffd" * 10,
        "\ufeff leading BOM",
        "x" * 65536,
    ],
    ids=["empty", "latin", "cjk-emoji-zero-width-rtl", "last-plane", "bom-in-text", "64-Ki"],
)
def test_unicode_text_at_the_edges_is_stored_exactly(client, db, text):
    # When
    resp = client.simulate_post(
        "/tasks", json={"type": "a", "payload": {"text": text, "rounds": 1}}
    )

    # Then
    assert resp.status_code == 202, resp.text[:500]
    assert client.simulate_get(f"/tasks/{resp.json['id']}").json["payload"]["text"] == text


# -- authentication --------------------------------------------------------------------------


def test_every_documented_operation_but_the_health_checks_needs_a_token(app, db):
    # Given the operations of the document
    client = bare_client(app)
    document = client.simulate_get("/openapi.json", headers=AUTH_HEADERS).json
    operations = [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) >= 12

    for method, path, operation in operations:
        url = path.replace("{task_id}", str(uuid.uuid4()))
        body = json.dumps(VALID) if method == "POST" else None

        # When called without a token
        resp = client.simulate_request(
            method, url, body=body, headers={"Content-Type": "application/json"}
        )

        # Then only the public ones answer
        if path in ("/healthz", "/readyz"):
            assert operation["security"] == []
            assert resp.status_code == 200, (path, resp.text)
        else:
            assert "security" not in operation  # the document's global bearer requirement
            assert_problem(resp, 401)
            assert resp.headers["www-authenticate"].startswith("Bearer")
    assert task_count(db) == 0


@pytest.mark.parametrize(
    "authorization",
    [BEARER, f"bearer {API_TOKEN}", f"BEARER {API_TOKEN}", f"Bearer {ROTATED_TOKEN}"],
    ids=["bearer", "lower-case-scheme", "upper-case-scheme", "rotated-token"],
)
def test_each_configured_token_is_accepted_in_any_case_of_scheme(
    settings, db, broker, authorization
):
    # Given an app with two tokens, as during a rotation
    app = create_app(dataclasses.replace(settings, api_tokens=(API_TOKEN, ROTATED_TOKEN)), broker)

    # When
    resp = bare_client(app).simulate_get("/tasks", headers={"Authorization": authorization})

    # Then
    assert resp.status_code == 200, resp.text


def test_a_token_dropped_from_the_configuration_is_refused(settings, db, broker):
    # Given the rotation finished: only the new token is configured
    app = create_app(dataclasses.replace(settings, api_tokens=(ROTATED_TOKEN,)), broker)

    # When the old token is used
    resp = bare_client(app).simulate_get("/tasks", headers=AUTH_HEADERS)

    # Then
    assert_problem(resp, 401)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/docs", "/docs/assets/swagger-ui.css"])
def test_health_checks_and_the_docs_page_need_no_token(app, path):
    # When
    resp = bare_client(app).simulate_get(path)

    # Then
    assert resp.status_code == 200, resp.text[:500]


def test_the_api_document_needs_a_token(app):
    # When
    resp = bare_client(app).simulate_get("/openapi.json")

    # Then
    assert_problem(resp, 401)
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_the_app_refuses_to_be_built_without_a_token(settings, broker):
    # When / Then
    with pytest.raises(AuthNotConfigured, match="CALLBOARD_API_TOKEN"):
        create_app(dataclasses.replace(settings, api_tokens=(), auth_disabled=False), broker)


def test_the_web_process_refuses_to_start_without_a_token():
    # Given the environment of a real web process, without a token
    unset = ("CALLBOARD_API_TOKEN", "CALLBOARD_AUTH_DISABLED", "PORT")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["PORT"] = "9"  # never bound: the process must stop before it serves

    # When
    result = subprocess.run(
        [sys.executable, "-m", "web"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then it exits with an error that says what to set
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Refusing to start" in output
    assert "CALLBOARD_API_TOKEN" in output
    assert "Traceback" not in output


def test_disabling_auth_explicitly_works_and_says_so_loudly(settings, db, broker, caplog):
    # When
    with caplog.at_level(logging.WARNING, logger="callboard.web"):
        app = create_app(dataclasses.replace(settings, api_tokens=(), auth_disabled=True), broker)

    # Then a warning is logged, and requests need no token
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("AUTHENTICATION IS DISABLED" in r.getMessage() for r in warnings)
    assert bare_client(app).simulate_get("/tasks").status_code == 200


# -- idempotency keys ------------------------------------------------------------------------


def test_a_replay_with_the_same_key_and_body_returns_the_original_task(client, db, broker):
    # Given a task submitted with an idempotency key
    headers = {"Idempotency-Key": "order-42"}
    first = client.simulate_post("/tasks", json=VALID, headers=headers)
    assert first.status_code == 202

    # When the same request is replayed, its members in another order and 3 written 3.0
    replay = client.simulate_post(
        "/tasks",
        body='{"payload": {"rounds": 3.0, "text": "hello"}, "type": "a"}',
        headers={**headers, "Content-Type": "application/json"},
    )

    # Then it answers the original task, which exists once, with one message
    assert replay.status_code == 200, replay.text
    assert replay.json["id"] == first.json["id"]
    assert replay.headers["location"] == f"/tasks/{first.json['id']}"
    assert task_count(db) == 1
    assert messages(broker)["a"]["waiting"] == 1


def test_the_same_key_with_another_body_is_a_409_problem(client, db):
    # Given
    headers = {"Idempotency-Key": "order-43"}
    first = client.simulate_post("/tasks", json=VALID, headers=headers)
    before = ledger_contents(db)

    # When the key is reused for another request
    resp = client.simulate_post("/tasks", json=_a(rounds=4), headers=headers)

    # Then
    problem = assert_problem(resp, 409)
    assert "'order-43'" in problem["detail"] and first.json["id"] in problem["detail"]
    assert ledger_contents(db) == before


def test_a_key_is_remembered_for_at_least_a_day(client, db):
    # Given a task submitted with a key 25 hours ago
    first = client.simulate_post("/tasks", json=VALID, headers={"Idempotency-Key": "old-key"})
    db.execute_sql(
        "UPDATE tasks SET created_at = now() - interval '25 hours' WHERE id = %s",
        (first.json["id"],),
    )

    # When it is replayed now
    replay = client.simulate_post("/tasks", json=VALID, headers={"Idempotency-Key": "old-key"})

    # Then
    assert replay.status_code == 200
    assert replay.json["id"] == first.json["id"]


def test_twenty_concurrent_replays_of_one_key_create_one_task(client, db, broker):
    # Given 20 threads, each with its own database connection, ready to submit at once
    threads_count = 20
    barrier = threading.Barrier(threads_count)
    answers: list = [None] * threads_count
    backends: set[int] = set()

    def submit(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            answers[n] = client.simulate_post(
                "/tasks", json=VALID, headers={"Idempotency-Key": "same-key"}
            )
            backends.add(db.execute_sql("SELECT pg_backend_pid()").fetchone()[0])
        finally:
            close_connection()

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(threads_count)]

    # When
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then exactly one created the task; every other answer is that task
    assert len(backends) == threads_count  # each thread had a connection of its own
    statuses = sorted(resp.status_code for resp in answers)
    assert statuses == [200] * (threads_count - 1) + [202], [r.text for r in answers]
    assert {resp.json["id"] for resp in answers} == {answers[0].json["id"]}
    assert task_count(db) == 1
    events = db.execute_sql("SELECT kind FROM task_events").fetchall()
    assert events == [("created",)]
    assert messages(broker)["a"]["waiting"] == 1


# -- batches ---------------------------------------------------------------------------------


def test_a_batch_answers_the_ids_in_order_and_sends_every_message_in_one_pipeline(
    client, db, broker, monkeypatch
):
    # Given a batch of a and b tasks, and a count of Redis pipelines
    tasks = [
        {"type": "a", "payload": {"text": f"item-{n}", "rounds": 1}}
        if n % 2
        else {"type": "b", "payload": {"duration_ms": n, "steps": 1}}
        for n in range(7)
    ]
    pipelines = []
    real_pipeline = broker.client.pipeline
    monkeypatch.setattr(
        broker.client, "pipeline", lambda *a, **k: pipelines.append(1) or real_pipeline(*a, **k)
    )

    # When
    resp = client.simulate_post("/tasks/batch", json={"tasks": tasks})

    # Then
    assert resp.status_code == 202, resp.text
    ids = resp.json["ids"]
    assert len(ids) == len(set(ids)) == len(tasks)
    for task_id, submitted in zip(ids, tasks, strict=True):
        stored = client.simulate_get(f"/tasks/{task_id}").json
        assert (stored["type"], stored["payload"], stored["status"]) == (
            submitted["type"],
            submitted["payload"],
            "queued",
        )
    assert len(pipelines) == 1
    monkeypatch.undo()
    for task_type in ("a", "b"):
        typed = [i for i, t in zip(ids, tasks, strict=True) if t["type"] == task_type]
        assert broker.messages_present(task_type, typed) == dict.fromkeys(typed, True)


def test_a_batch_of_the_maximum_size_is_accepted(client, db, broker):
    # When
    tasks = [{"type": "a", "payload": {"text": str(n), "rounds": 1}} for n in range(1000)]
    resp = client.simulate_post("/tasks/batch", json={"tasks": tasks})

    # Then
    assert resp.status_code == 202
    assert len(resp.json["ids"]) == 1000
    assert task_count(db) == 1000
    assert messages(broker)["a"]["waiting"] == 1000
    texts = db.execute_sql(
        "SELECT payload->>'text' FROM tasks t JOIN unnest(%s::uuid[]) WITH ORDINALITY u(id, n)"
        " ON t.id = u.id ORDER BY u.n",
        (resp.json["ids"],),
    ).fetchall()
    assert [text for (text,) in texts] == [str(n) for n in range(1000)]


def test_a_batch_names_every_bad_item_and_stores_none(client, unchanged):
    # When items 2 and 4 of 5 are invalid
    tasks = [
        VALID,
        VALID,
        {"type": "b", "payload": {"duration_ms": 1, "steps": 0}},
        VALID,
        {"type": "a", "payload": {"text": "x"}, "delay_ms": -1},
    ]
    resp = client.simulate_post("/tasks/batch", json={"tasks": tasks})

    # Then
    problem = assert_problem(resp, 422)
    assert sorted(error_fields(problem)) == [
        "tasks[2].payload.steps",
        "tasks[4].delay_ms",
        "tasks[4].payload.rounds",
    ]


def test_a_batch_that_fails_while_being_stored_stores_none_of_it(client, db, broker):
    # Given a ledger that refuses the third task of a batch, after two were inserted
    db.execute_sql(
        """
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.payload->>'text' = 'poison' THEN RAISE EXCEPTION 'poison task'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_poison BEFORE INSERT ON tasks
            FOR EACH ROW EXECUTE FUNCTION refuse_poison();
        """
    )
    try:
        tasks = [_a(text="fine"), _a(text="fine too"), _a(text="poison"), _a(text="never")]

        # When
        resp = client.simulate_post("/tasks/batch", json={"tasks": tasks})
    finally:
        db.execute_sql("DROP TRIGGER refuse_poison ON tasks; DROP FUNCTION refuse_poison();")

    # Then nothing was stored and nothing was sent
    assert_problem(resp, 500)
    assert task_count(db) == 0
    assert db.execute_sql("SELECT count(*) FROM task_events").fetchone() == (0,)
    assert messages(broker)["a"] == {"waiting": 0, "delayed": 0, "in_flight": 0, "dead_lettered": 0}


# -- delayed tasks ---------------------------------------------------------------------------


def delayed_message(redis_client, broker, task_type: str, task_id: str) -> Message:
    data = redis_client.hget(f"{broker.namespace}:{task_type}.DQ.msgs", task_id)
    assert data is not None, f"no delayed message for {task_id}"
    return Message.decode(data)


def test_a_task_with_delay_ms_is_queued_with_its_due_time_in_the_delay_queue(
    client, db, broker, redis_client
):
    # When
    before = datetime.now(UTC)
    resp = client.simulate_post("/tasks", json=_submission(delay_ms=60_000))
    after = datetime.now(UTC)

    # Then the task is queued and shows when it is due
    assert resp.status_code == 202, resp.text
    run_at = datetime.fromisoformat(resp.json["run_at"])
    assert before + timedelta(seconds=60) <= run_at <= after + timedelta(seconds=60)
    assert resp.json["status"] == "queued"
    assert client.simulate_get(f"/tasks/{resp.json['id']}").json["run_at"] == resp.json["run_at"]
    # and its message waits in Dramatiq's delay queue until then
    assert messages(broker)["a"] == {"waiting": 0, "delayed": 1, "in_flight": 0, "dead_lettered": 0}
    eta_ms = delayed_message(redis_client, broker, "a", resp.json["id"]).options["eta"]
    assert abs(eta_ms - run_at.timestamp() * 1000) < 1000


def test_a_task_with_run_at_keeps_that_time(client, db, broker, redis_client):
    # Given a time in an hour, written with an offset
    due = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    written = due.astimezone(PLUS_0530).isoformat()

    # When
    resp = client.simulate_post("/tasks", json=_submission(run_at=written))

    # Then
    assert resp.status_code == 202, resp.text
    assert datetime.fromisoformat(resp.json["run_at"]) == due
    assert messages(broker)["a"]["delayed"] == 1
    eta_ms = delayed_message(redis_client, broker, "a", resp.json["id"]).options["eta"]
    assert abs(eta_ms - due.timestamp() * 1000) < 1000


def test_a_run_at_just_under_seven_days_is_accepted(client, db, broker):
    # When
    due = datetime.now(UTC) + timedelta(days=7) - timedelta(minutes=1)
    resp = client.simulate_post("/tasks", json=_submission(run_at=due.isoformat()))

    # Then
    assert resp.status_code == 202, resp.text
    assert messages(broker)["a"]["delayed"] == 1


def test_a_run_at_in_the_past_runs_now(client, db, broker):
    # When
    resp = client.simulate_post("/tasks", json=_submission(run_at="2001-09-09T01:46:40Z"))

    # Then it is queued for now, not delayed
    assert resp.status_code == 202, resp.text
    assert resp.json["run_at"] == "2001-09-09T01:46:40+00:00"
    assert messages(broker)["a"] == {"waiting": 1, "delayed": 0, "in_flight": 0, "dead_lettered": 0}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"delay_ms": MAX_DELAY_MS + 1}, "delay_ms", "less than or equal"),
        ({"run_at": _IN_8_DAYS}, "run_at", "7 days"),
        ({"delay_ms": 10, "run_at": "2030-01-01T00:00:00Z"}, "delay_ms", "not both"),
        ({"delay_ms": 10, "run_at": None}, "delay_ms", "not both"),
    ],
    ids=["delay-7-days", "run-at-8-days", "both", "both-with-null-run-at"],
)
def test_an_impossible_delay_is_a_clear_422(client, unchanged, changes, field, message):
    # When
    resp = client.simulate_post("/tasks", json=_submission(**changes))

    # Then
    problem = assert_problem(resp, 422)
    assert error_fields(problem) == [field]
    assert message in problem["errors"][0]["message"]


@pytest.mark.parametrize(
    ("run_at", "stored"),
    [
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999+00:00"),
        ("0001-01-01T00:00:00+23:59", "0001-01-01T00:00:00+00:00"),
        ("0001-01-01T00:00:00-23:59", "0001-01-01T23:59:00+00:00"),
        ("2001-09-09t01:46:40.123456789z", "2001-09-09T01:46:40.123456+00:00"),
    ],
    ids=["leap-second", "before-year-1-in-utc", "largest-offset", "lower-case-nanoseconds"],
)
def test_every_rfc_3339_run_at_is_accepted_and_stored_in_utc(client, db, run_at, stored):
    # RFC 3339 allows all of these; Python and PostgreSQL do not all take them as they are.
    resp = client.simulate_post("/tasks", json=_submission(run_at=run_at))

    assert resp.status_code == 202, resp.text
    assert resp.json["run_at"] == stored


@pytest.mark.parametrize(
    "bound",
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2030-01-01T00:00:00+23:59"],
    ids=["after-year-9999-in-utc", "before-year-1-in-utc", "offset-postgresql-refuses"],
)
@pytest.mark.parametrize("name", ["created_after", "created_before"])
def test_every_rfc_3339_creation_bound_is_accepted(client, db, name, bound):
    client.simulate_post("/tasks", json=VALID)

    resp = client.simulate_get("/tasks", params={name: bound})

    assert resp.status_code == 200, resp.text


def test_a_delayed_item_of_a_batch_names_its_index(client, unchanged):
    # When
    resp = client.simulate_post(
        "/tasks/batch", json={"tasks": [VALID, _submission(run_at=_IN_8_DAYS)]}
    )

    # Then
    problem = assert_problem(resp, 422)
    assert error_fields(problem) == ["tasks[1].run_at"]


# -- listing by creation time ----------------------------------------------------------------


def test_the_list_filters_by_a_creation_range_and_its_next_links_keep_it(client, db):
    # Given five tasks created an hour apart
    start = datetime(2030, 1, 1, tzinfo=UTC)
    ids = []
    for hour in range(5):
        task_id = client.simulate_post("/tasks", json=VALID).json["id"]
        db.execute_sql(
            "UPDATE tasks SET created_at = %s WHERE id = %s",
            (start + timedelta(hours=hour), task_id),
        )
        ids.append(task_id)

    def listed(**params) -> list[str]:
        seen, link = [], None
        resp = client.simulate_get("/tasks", params=params)
        while True:
            assert resp.status_code == 200, resp.text
            seen.extend(t["id"] for t in resp.json["items"])
            link = resp.json["next"]
            if link is None:
                return seen
            resp = client.simulate_get(link)

    # When / Then the bounds are exclusive, in any offset, and pages keep the range
    at = (start + timedelta(hours=1)).isoformat()
    until = (start + timedelta(hours=4)).astimezone(PLUS_0530).isoformat()
    assert listed(created_after=at) == ids[:1:-1]
    assert listed(created_before=until) == ids[3::-1]
    assert listed(created_after=at, created_before=until) == [ids[3], ids[2]]
    assert listed(created_after=at, created_before=until, limit=1) == [ids[3], ids[2]]
    assert listed(created_after=at, type="a", status="queued", limit=2) == ids[:1:-1]
    assert listed(created_after=until, created_before=at) == []


def test_a_cursor_of_the_documented_shape_is_a_valid_position(client, db):
    # Given three tasks
    ids = [client.simulate_post("/tasks", json=VALID).json["id"] for _ in range(3)]
    first = client.simulate_get("/tasks", params={"limit": 1}).json
    cursor = first["next"].split("cursor=")[1]
    assert re.fullmatch(r"[0-9]{1,16}_[0-9a-f]{32}", cursor)

    # When a cursor is made up: after the newest possible task, and before the oldest
    resp_all = client.simulate_get("/tasks", params={"cursor": "9" * 16 + "_" + "f" * 32})
    resp_none = client.simulate_get("/tasks", params={"cursor": "0_" + "0" * 32})

    # Then each answers the tasks after that position
    assert [t["id"] for t in resp_all.json["items"]] == ids[::-1]
    assert resp_none.json == {"items": [], "next": None}


# -- the OpenAPI document and /docs ----------------------------------------------------------


def test_the_document_is_openapi_3_1_and_lists_every_route(client, app):
    # When
    resp = client.simulate_get("/openapi.json")

    # Then
    assert resp.status_code == 200
    document = resp.json
    assert document["openapi"] == "3.1.0"
    documented = {
        (path, method.upper()) for path, methods in document["paths"].items() for method in methods
    }
    served = {
        (route.path, responder.method)
        for route in inspect.inspect_routes(app)
        if route.path not in NOT_IN_DOCUMENT
        for responder in route.methods
        if not responder.internal
    }
    assert documented == served
    assert {
        ("/tasks", "GET"),
        ("/tasks", "POST"),
        ("/tasks/batch", "POST"),
        ("/tasks/{task_id}", "GET"),
        ("/tasks/{task_id}/events", "GET"),
        ("/tasks/{task_id}/cancel", "POST"),
        ("/tasks/{task_id}/retry", "POST"),
        ("/healthz", "GET"),
        ("/readyz", "GET"),
    } <= documented


def test_every_error_answer_is_documented_as_problem_json(client):
    document = client.simulate_get("/openapi.json").json
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                where = f"{method.upper()} {path} {status}"
                if status.startswith("2"):
                    assert list(response["content"]) == ["application/json"], where
                else:
                    assert list(response["content"]) == [PROBLEM], where
                    schema = response["content"][PROBLEM]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}, where
                if status == "401":
                    assert response["headers"]["WWW-Authenticate"]["required"], where
                if status == "503":
                    assert response["headers"]["Retry-After"]["required"], where
    for path, status in [("/tasks", "202"), ("/tasks", "200"), ("/tasks/{task_id}/retry", "202")]:
        headers = document["paths"][path]["post"]["responses"][status]["headers"]
        assert headers["Location"]["required"], (path, status)
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert "errors" in problem["properties"]


def test_the_document_declares_bearer_auth_and_its_public_exceptions(client):
    document = client.simulate_get("/openapi.json").json
    assert document["components"]["securitySchemes"] == {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "One of CALLBOARD_API_TOKEN's tokens.",
        }
    }
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert document["paths"]["/readyz"]["get"]["security"] == []
    for path in ("/tasks", "/tasks/batch"):
        assert "401" in document["paths"][path]["post"]["responses"]


def test_the_submission_schema_comes_from_the_task_type_registry(client):
    document = client.simulate_get("/openapi.json").json
    schemas = document["components"]["schemas"]
    submission = schemas["Submission"]
    assert set(submission["discriminator"]["mapping"]) == set(REGISTRY)
    for name, task_type in REGISTRY.items():
        variant = schemas[f"Submit{name.upper()}"]
        assert variant["additionalProperties"] is False
        assert variant["properties"]["type"]["const"] == name
        payload = variant["properties"]["payload"]["$ref"].rsplit("/", 1)[1]
        assert schemas[payload]["properties"].keys() == task_type.payload_model.model_fields.keys()
    body = document["paths"]["/tasks"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Submission"}
    batch = schemas["Batch"]["properties"]["tasks"]
    assert batch["maxItems"] == MAX_BATCH_SIZE
    assert batch["items"] == {"$ref": "#/components/schemas/Submission"}


TASK_Z_MODULE = '''
"""A task type that exists only in this test."""

from pydantic import BaseModel, ConfigDict, Field

from actors.task_types import TaskType, register


class PayloadZ(BaseModel):
    """Payload of type Z."""

    model_config = ConfigDict(extra="forbid", strict=True)
    colour: str = Field(max_length=10, description="What colour to paint.")


def paint(payload, context):
    return {"painted": payload.colour}


TASK_Z = register(
    TaskType(
        name="z", payload_model=PayloadZ, handler=paint, time_limit_ms=1000, summary="Paints."
    )
)
'''

PRINT_DOCUMENT = """
import json, os, sys
import task_z  # registers "z", the way a new module in actors/ would
from falcon import testing
from settings import get_settings
from web.app import create_app

client = testing.TestClient(
    create_app(get_settings()),
    headers={"Authorization": "Bearer " + os.environ["CALLBOARD_API_TOKEN"]},
)
bad = client.simulate_post("/tasks", json={"type": "z", "payload": {"colour": "x" * 11}})
unknown = client.simulate_post("/tasks", json={"type": "q", "payload": {}})
json.dump(
    {
        "document": client.simulate_get("/openapi.json").json,
        "bad": [bad.status_code, bad.json],
        "unknown": unknown.json,
    },
    sys.stdout,
)
"""


def test_a_new_task_type_module_appears_in_the_document_and_validation_unedited(tmp_path):
    # Given a module that registers a type "z", imported before the app is built (in a process
    # of its own: the models are built from the registry at import time, and this test process
    # must keep only the real types)
    (tmp_path / "task_z.py").write_text(textwrap.dedent(TASK_Z_MODULE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}

    # When
    result = subprocess.run(
        [sys.executable, "-c", PRINT_DOCUMENT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then the document and the validation know "z", with its payload model
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    schemas = out["document"]["components"]["schemas"]
    assert set(schemas["Submission"]["discriminator"]["mapping"]) == {"a", "b", "z"}
    assert schemas["SubmitZ"]["properties"]["type"]["const"] == "z"
    assert schemas["PayloadZ"]["properties"]["colour"]["maxLength"] == 10
    assert schemas["SubmitZ"]["description"] == "Paints."
    status, problem = out["bad"]
    assert status == 422
    assert error_fields(problem) == ["payload.colour"]
    assert "a, b, z" in out["unknown"]["errors"][0]["message"]
    # and this process never saw it
    assert "z" not in REGISTRY


def test_the_docs_page_loads_swagger_ui_from_this_server_only(app):
    client = bare_client(app)

    # When
    page = client.simulate_get("/docs")

    # Then it is HTML that names only local assets, each of them served
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/docs/assets/swagger-ui-bundle.js">' in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert "validatorUrl: null" in page.text  # Swagger UI would otherwise call out
    assert 'url: "/openapi.json"' in page.text
    references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert references
    for reference in references:
        assert reference.startswith("/docs/assets/"), reference
        asset = client.simulate_get(reference)
        assert asset.status_code == 200, reference
        assert len(asset.content) > 1000, reference
    bundle = client.simulate_get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in bundle.headers["content-type"]
    assert b"SwaggerUIBundle" in bundle.content
