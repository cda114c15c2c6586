"""X-Request-ID: accepted or assigned, answered, and followed into the task's worker log lines."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from dramatiq.message import Message

from actors.log_context import LogContext
from logging_setup import make_formatter, request_id_var, task_id_var
from tests.e2e.api import wait_all_final
from tests.e2e.stack import FAST_REBALANCE_ENV

GENERATED = re.compile(r"[0-9a-f]{32}")
TASK_A = {"type": "a", "payload": {"text": "hello", "rounds": 3}}


@pytest.fixture
def log_lines():
    """Lines logged under ``callboard`` during the test, in Callboard's plain format."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter("plain", "test"))
    root = logging.getLogger("callboard")
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: stream.getvalue().splitlines()
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def stored_message(broker, queue: str, task_id: str) -> Message:
    return Message.decode(broker.client.hget(f"{broker.namespace}:{queue}.msgs", task_id))


# -- the web side ------------------------------------------------------------------------------


def test_a_valid_request_id_is_echoed(client):
    response = client.simulate_get("/healthz", headers={"X-Request-ID": "abc-123_X.y"})

    assert response.headers["X-Request-ID"] == "abc-123_X.y"


@pytest.mark.parametrize(
    "given", ["", "a" * 129, "abc 123", "abc\u00e9", "a;b", "../etc", "x\ty"], ids=repr
)
def test_an_invalid_request_id_is_replaced_by_a_fresh_one(client, given):
    response = client.simulate_get("/healthz", headers={"X-Request-ID": given})

    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


def test_a_request_without_an_id_gets_a_fresh_one_each_time(client):
    ids = [client.simulate_get("/healthz").headers["X-Request-ID"] for _ in range(3)]

    assert all(GENERATED.fullmatch(i) for i in ids)
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("GET", "/tasks/00000000-0000-0000-0000-000000000000", {}, None, 404),
        ("GET", "/tasks", {"Authorization": ""}, None, 401),
        ("POST", "/tasks", {}, {"type": "a", "payload": {"text": "x", "rounds": 0}}, 422),
        ("GET", "/no/such/route", {}, None, 404),
    ],
)
def test_an_error_answer_carries_the_request_id_too(
    client, db, method, path, headers, body, status
):
    response = client.simulate_request(
        method, path, headers={"X-Request-ID": "err-1", **headers}, json=body
    )

    assert response.status_code == status
    assert response.headers["X-Request-ID"] == "err-1"


def test_the_request_id_travels_in_the_tasks_message(client, broker):
    # When one task and a batch are submitted, one with a request id and one without
    one = client.simulate_post("/tasks", json=TASK_A, headers={"X-Request-ID": "req-one"})
    batch = client.simulate_post("/tasks/batch", json={"tasks": [TASK_A, TASK_A]})

    # Then each message carries the id its request was answered with
    assert one.status_code == 202 and batch.status_code == 202
    assert stored_message(broker, "a", one.json["id"]).options["request_id"] == "req-one"
    generated = batch.headers["X-Request-ID"]
    for task_id in batch.json["ids"]:
        assert stored_message(broker, "a", task_id).options["request_id"] == generated
    # ... and nothing outside a request inherits one
    assert request_id_var.get() is None


def test_the_access_line_and_every_line_logged_for_a_request_name_it(client, db, log_lines):
    client.simulate_get("/tasks", headers={"X-Request-ID": "seen-in-logs"})

    (access,) = [line for line in log_lines() if "callboard.access" in line]
    assert re.search(r"GET '/tasks' answered 200 in \d+\.\d ms\. request_id=seen-in-logs$", access)


# -- the worker side ---------------------------------------------------------------------------


def test_a_worker_names_the_messages_request_and_task_while_processing_it(log_lines, settings):
    context = LogContext(settings)
    message = Message(
        queue_name="a",
        actor_name="run_task_a",
        args=("t-1",),
        kwargs={},
        options={"request_id": "req-w"},
        message_id="t-1",
    )

    context.before_process_message(None, message)
    logging.getLogger("callboard.worker").info("Task %r started.", "t-1")
    context.after_process_message(None, message)
    logging.getLogger("callboard.worker").info("Between messages.")

    started, between = log_lines()
    assert started.endswith("Task 't-1' started. request_id=req-w task_id=t-1")
    assert between.endswith("Between messages.")
    assert (request_id_var.get(), task_id_var.get()) == (None, None)


def test_a_worker_ignores_a_malformed_request_id_and_names_no_task_for_a_rebalance(settings):
    context = LogContext(settings)
    message = Message(
        queue_name="rebalance",
        actor_name="rebalance",
        args=(),
        kwargs={},
        options={"request_id": "bad id\nforged line"},
    )

    context.before_process_message(None, message)
    seen = (request_id_var.get(), task_id_var.get())
    context.after_skip_message(None, message)

    assert seen == (None, None)


# -- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_request_id_is_followed_from_the_response_into_the_worker_log_line_of_its_task(stack):
    # Given the web and worker processes
    stack.start(["web", "worker"])
    stack.wait_http_ready()

    # When a task is submitted with a request id
    response = stack.post("/tasks", json=TASK_A, headers={"X-Request-ID": "abc123"})

    # Then the answer carries it, and the worker's line for that task names it and the task
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-ID"] == "abc123"
    task_id = response.json()["id"]
    wait_all_final(stack, [task_id], timeout=30)

    def worker_line() -> str | None:
        for line in stack.log_text("worker").splitlines():
            if "succeeded" in line and "request_id=abc123" in line and f"task_id={task_id}" in line:
                return line
        return None

    line = stack.wait_until(worker_line, timeout=10, message="the worker's line for the task")
    assert re.match(r"^\S+Z INFO worker\[\d+\] callboard.worker: Task '", line), line
    # ... and so does the web's access line for the request
    assert any(
        "POST '/tasks' answered 202" in line and line.endswith("request_id=abc123")
        for line in stack.log_text("web").splitlines()
    )


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_log_format_json_makes_the_web_worker_and_scheduler_lines_json_objects(stack):
    # Given the whole stack logging JSON
    stack.start(extra_env={"LOG_FORMAT": "json", **FAST_REBALANCE_ENV})
    stack.wait_http_ready()

    # When a task runs and a rebalance happens
    response = stack.post("/tasks", json=TASK_A, headers={"X-Request-ID": "json-1"})
    task_id = response.json()["id"]
    wait_all_final(stack, [task_id], timeout=30)
    stack.wait_until(
        lambda: stack.get("/rebalance").json()["runs"], timeout=15, message="a rebalance run"
    )
    assert set(stack.stop().values()) == {0}

    # Then every line of the web and scheduler is a JSON object
    web, scheduler = _json_lines(stack, "web"), _json_lines(stack, "scheduler")
    assert any(d["message"] == "Web server stopped." for d in web)
    assert any(d.get("request_id") == "json-1" for d in web)
    assert scheduler and {d["process"] for d in scheduler} == {"scheduler"}
    # ... and so is every line of a worker process (Dramatiq's main process, which runs none of
    # our code, keeps its own format for its few lines)
    worker = _json_lines(stack, "worker", skip=lambda line: "[dramatiq.MainProcess]" in line)
    (done,) = [d for d in worker if d.get("task_id") == task_id and "succeeded" in d["message"]]
    assert done["request_id"] == "json-1"
    assert done["process"] == "worker" and done["logger"] == "callboard.worker"
    assert {d["process"] for d in web} == {"web"}


def _json_lines(stack, name: str, skip=lambda line: False) -> list[dict]:
    lines = [line for line in stack.log_text(name).splitlines() if line and not skip(line)]
    documents = []
    for line in lines:
        try:
            documents.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{name} logged a line that is not JSON: {line!r}") from None
    assert documents, f"{name} logged nothing"
    return documents
