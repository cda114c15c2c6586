"""The task runner, called directly as a worker thread would: claim, run, record once.

A worker's identity and stop flag are a fresh ``WorkerState`` per test. Long tasks run in a
thread of their own so that the test can cancel, recover or stop them midway.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from dramatiq.middleware.time_limit import TimeLimitExceeded

from actors.runner import run_task
from actors.task_a import TASK_A
from actors.task_b import TASK_B
from actors.worker_state import WorkerState
from models import transitions
from models.db import close_connection, init_database
from models.tables import Task
from models.transitions import NewTask

#: The longest any one wait in these tests may take before it counts as a hang.
DEADLINE_S = 10


def create(db, task_type: str, payload: dict) -> str:
    (task,) = transitions.create_tasks(db, [NewTask(task_type, payload)])
    return str(task.id)


def row(task_id) -> Task:
    return Task.get_by_id(task_id)


def kinds(db, task_id) -> list[str]:
    rows = db.execute_sql(
        "SELECT kind FROM task_events WHERE task_id = %s ORDER BY id", (str(task_id),)
    )
    return [kind for (kind,) in rows]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.005)


class Worker(threading.Thread):
    """Runs one delivery in a thread, as Dramatiq's worker thread would, keeping any error."""

    def __init__(self, task_type, task_id: str, state: WorkerState) -> None:
        super().__init__(daemon=True)
        self.args_ = (task_type, task_id, state)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            run_task(*self.args_)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test by finish()
            self.error = exc
        finally:
            close_connection()

    def finish(self) -> None:
        self.join(timeout=DEADLINE_S)
        assert not self.is_alive(), "run_task did not return in time"
        if self.error is not None:
            raise self.error


@pytest.fixture
def progress_reports(monkeypatch) -> list[int]:
    """Every progress value the runner writes to the ledger, in order."""
    reports: list[int] = []
    original = transitions.report_progress

    def spy(db, held, progress):
        reports.append(progress)
        return original(db, held, progress)

    monkeypatch.setattr(transitions, "report_progress", spy)
    return reports


def expected_digest(text: str, rounds: int) -> str:
    digest = text.encode("utf-8")
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


# -- outcomes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rounds"), [("hello", 1), ("hello", 1000), ("", 3), ("ünïcödé ✓", 7)]
)
def test_a_task_a_records_the_iterated_sha256_of_its_text(db, text, rounds):
    # Given
    task_id = create(db, "a", {"text": text, "rounds": rounds})

    # When
    run_task(TASK_A, task_id, state=WorkerState())

    # Then
    task = row(task_id)
    assert task.status == "succeeded"
    assert task.result == {"sha256": expected_digest(text, rounds), "rounds": rounds}
    assert (task.progress, task.attempts) == (100, 1)
    assert kinds(db, task_id) == ["created", "started", "succeeded"]


def test_a_single_round_of_a_is_plain_sha256(db):
    # Given
    task_id = create(db, "a", {"text": "abc", "rounds": 1})

    # When
    run_task(TASK_A, task_id, state=WorkerState())

    # Then
    assert row(task_id).result["sha256"] == hashlib.sha256(b"abc").hexdigest()


def test_a_task_b_reports_progress_at_each_step_and_waits_its_duration(db, progress_reports):
    # Given
    task_id = create(db, "b", {"duration_ms": 200, "steps": 4})

    # When
    run_task(TASK_B, task_id, state=WorkerState())

    # Then
    assert progress_reports == [25, 50, 75, 100]
    task = row(task_id)
    assert (task.status, task.progress) == ("succeeded", 100)
    assert task.result["steps"] == 4
    assert task.result["slept_ms"] >= 200


def test_the_worker_that_ran_a_task_is_named_in_its_history(db):
    # Given
    state = WorkerState()
    task_id = create(db, "a", {"text": "x", "rounds": 1})

    # When
    run_task(TASK_A, task_id, state=state)

    # Then
    workers = db.execute_sql(
        "SELECT kind, worker FROM task_events WHERE task_id = %s AND worker IS NOT NULL",
        (task_id,),
    ).fetchall()
    assert workers == [("started", state.worker_id), ("succeeded", state.worker_id)]
    assert state.held_task_ids() == [] and state.processed == 1


# -- at-least-once delivery --------------------------------------------------------------------


def test_a_duplicate_delivery_records_the_outcome_once(db):
    # Given a task already run once
    task_id = create(db, "a", {"text": "x", "rounds": 2})
    run_task(TASK_A, task_id, state=WorkerState())
    finished = row(task_id).finished_at

    # When its message is delivered again, to another worker
    run_task(TASK_A, task_id, state=WorkerState())

    # Then
    assert kinds(db, task_id).count("succeeded") == 1
    assert (row(task_id).attempts, row(task_id).finished_at) == (1, finished)


def test_concurrent_duplicate_deliveries_run_the_task_once(db):
    # Given one task delivered to four workers at once
    task_id = create(db, "b", {"duration_ms": 50, "steps": 2})
    workers = [Worker(TASK_B, task_id, WorkerState()) for _ in range(4)]

    # When
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.finish()

    # Then
    assert kinds(db, task_id) == ["created", "started", "succeeded"]
    assert row(task_id).attempts == 1


def test_a_message_for_a_cancelled_task_changes_nothing(db):
    # Given
    task_id = create(db, "a", {"text": "x", "rounds": 1})
    transitions.cancel(db, task_id)
    before = row(task_id)

    # When
    run_task(TASK_A, task_id, state=WorkerState())

    # Then
    after = row(task_id)
    assert (after.status, after.attempts, after.result, after.finished_at) == (
        "cancelled",
        0,
        None,
        before.finished_at,
    )
    assert kinds(db, task_id) == ["created", "cancelled"]


def test_a_message_for_an_unknown_task_is_ignored(db):
    # When / Then: no error, nothing recorded
    run_task(TASK_A, str(uuid.uuid4()), state=WorkerState())
    assert db.execute_sql("SELECT count(*) FROM task_events").fetchone() == (0,)


# -- cancellation, loss, failure ---------------------------------------------------------------


def test_a_task_b_cancelled_while_running_ends_cancelled(db):
    # Given a long task B that has reported progress once
    task_id = create(db, "b", {"duration_ms": 5000, "steps": 50})
    worker = Worker(TASK_B, task_id, WorkerState())
    worker.start()
    wait_until(lambda: row(task_id).progress > 0, "the task reported progress")

    # When a client cancels it
    started = time.monotonic()
    transitions.cancel(db, task_id)
    worker.finish()

    # Then it stopped at its next step
    assert time.monotonic() - started < 2
    task = row(task_id)
    assert (task.status, task.error, task.cancel_requested) == (
        "cancelled",
        "cancelled on request",
        False,
    )
    assert 0 < task.progress < 100
    assert kinds(db, task_id) == ["created", "started", "cancel_requested", "cancelled"]


def test_a_task_taken_from_its_worker_records_nothing_from_that_worker(db):
    # Given a long task B running on a worker
    state = WorkerState()
    task_id = create(db, "b", {"duration_ms": 5000, "steps": 50})
    worker = Worker(TASK_B, task_id, state)
    worker.start()
    wait_until(lambda: row(task_id).progress > 0, "the task reported progress")

    # When the rebalance takes it away (its worker looked dead)
    transitions.recover_tasks_of(db, [state.worker_id], max_recoveries=3)
    worker.finish()

    # Then the worker gave up without recording an outcome, and the task can run again
    assert row(task_id).status == "queued"
    assert kinds(db, task_id) == ["created", "started", "recovered"]
    assert state.held_task_ids() == []
    quick = dataclasses.replace(TASK_B, handler=lambda payload, context: {"quick": True})
    run_task(quick, task_id, state=WorkerState())
    assert (row(task_id).status, row(task_id).attempts) == ("succeeded", 2)


def test_a_handler_exception_fails_the_task_with_its_error(db):
    # Given a type whose handler raises
    def explode(payload, context):
        raise RuntimeError("disk on fire")

    exploding = dataclasses.replace(TASK_A, handler=explode)
    task_id = create(db, "a", {"text": "x", "rounds": 1})

    # When
    run_task(exploding, task_id, state=WorkerState())

    # Then
    task = row(task_id)
    assert (task.status, task.error, task.result) == ("failed", "RuntimeError: disk on fire", None)
    assert kinds(db, task_id) == ["created", "started", "failed"]


def test_a_stored_payload_the_type_rejects_fails_the_task(db):
    # Given a row whose payload does not match its type (written around the API)
    task_id = create(db, "a", {"text": 5, "rounds": 1})

    # When
    run_task(TASK_A, task_id, state=WorkerState())

    # Then
    task = row(task_id)
    assert task.status == "failed"
    assert task.error.startswith("ValidationError")


def test_a_task_past_its_time_limit_fails_naming_the_limit(db):
    # Given a handler interrupted by Dramatiq's time limit
    def overrun(payload, context):
        raise TimeLimitExceeded()

    slow = dataclasses.replace(TASK_A, handler=overrun)
    task_id = create(db, "a", {"text": "x", "rounds": 1})

    # When
    run_task(slow, task_id, state=WorkerState())

    # Then
    assert (row(task_id).status, row(task_id).error) == ("failed", "time limit of 60 s exceeded")


# -- graceful stop -----------------------------------------------------------------------------


def test_a_long_task_running_when_the_worker_stops_is_handed_back_and_resent(db):
    # Given a task B that needs seconds more, running on a worker
    state = WorkerState()
    task_id = create(db, "b", {"duration_ms": 10_000, "steps": 10})
    worker = Worker(TASK_B, task_id, state)
    worker.start()
    wait_until(lambda: row(task_id).status == "running", "the task is running")

    # When the worker starts a stop with 0.2 s to go
    started = time.monotonic()
    state.begin_stop(timeout=0.2)
    worker.finish()

    # Then the task is back in the queue at once, to be re-sent once the worker has stopped
    assert time.monotonic() - started < 2
    task = row(task_id)
    assert (task.status, task.worker, task.progress) == ("queued", None, 0)
    assert kinds(db, task_id) == ["created", "started", "handed_back"]
    assert state.take_resends() == [(task_id, "b")]
    assert state.take_resends() == []


def test_a_task_that_fits_before_the_stop_deadline_finishes(db):
    # Given a short task B running on a worker
    state = WorkerState()
    task_id = create(db, "b", {"duration_ms": 300, "steps": 3})
    worker = Worker(TASK_B, task_id, state)
    worker.start()
    wait_until(lambda: row(task_id).status == "running", "the task is running")

    # When the worker starts a stop with plenty of time
    state.begin_stop(timeout=DEADLINE_S)
    worker.finish()

    # Then
    assert row(task_id).status == "succeeded"
    assert state.take_resends() == []


def test_a_message_delivered_while_the_worker_stops_is_not_started_but_resent(db):
    # Given a stopping worker
    state = WorkerState()
    state.begin_stop(timeout=5)
    task_id = create(db, "a", {"text": "x", "rounds": 1})

    # When
    run_task(TASK_A, task_id, state=state)

    # Then
    assert (row(task_id).status, row(task_id).attempts) == ("queued", 0)
    assert state.take_resends() == [(task_id, "a")]


# -- PostgreSQL briefly away -------------------------------------------------------------------


def test_a_task_delivered_while_postgres_is_away_runs_once_it_is_back(db, settings, caplog):
    # Given a queued task, and PostgreSQL unreachable when its message arrives
    task_id = create(db, "a", {"text": "x", "rounds": 1})
    init_database("postgresql://postgres@127.0.0.1:1/unreachable")
    try:
        worker = Worker(TASK_A, task_id, WorkerState())
        worker.start()
        wait_until(
            lambda: "PostgreSQL is unavailable" in caplog.text or not worker.is_alive(),
            "the worker met the outage",
        )
    finally:
        # When PostgreSQL is back
        init_database(settings.database_url)
    worker.finish()

    # Then the delivery was not lost
    assert row(task_id).status == "succeeded"
