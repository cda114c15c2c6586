"""The ledger's transitions and reads against real PostgreSQL: each a single conditional UPDATE."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from models import reads, transitions
from models.db import close_connection
from models.errors import InvalidTransition, TaskNotFound
from models.tables import Task
from models.transitions import NewTask

WORKER = "host-1:101:aaaaaaaa"
OTHER_WORKER = "host-2:202:bbbbbbbb"


def new_task(db, task_type: str = "b", payload: dict | None = None) -> uuid.UUID:
    payload = payload or (
        {"duration_ms": 10, "steps": 1} if task_type == "b" else {"text": "x", "rounds": 1}
    )
    (task,) = transitions.create_tasks(db, [NewTask(task_type, payload)])
    return task.id


def row(task_id) -> Task:
    return Task.get_by_id(task_id)


def events(db, task_id) -> list[tuple[str, str | None, dict]]:
    cursor = db.execute_sql(
        "SELECT kind, worker, detail FROM task_events WHERE task_id = %s ORDER BY id",
        (str(task_id),),
    )
    return [tuple(r) for r in cursor.fetchall()]


def kinds(db, task_id) -> list[str]:
    return [kind for kind, _, _ in events(db, task_id)]


# -- create ------------------------------------------------------------------------------------


def test_tasks_created_together_are_queued_each_with_a_created_event(db):
    # When
    created = transitions.create_tasks(
        db, [NewTask("a", {"text": "x", "rounds": 1}), NewTask("b", {"duration_ms": 1, "steps": 1})]
    )

    # Then
    assert [t.type for t in created] == ["a", "b"]
    for task in created:
        stored = row(task.id)
        assert (stored.status, stored.attempts, stored.recoveries, stored.progress) == (
            "queued",
            0,
            0,
            0,
        )
        assert events(db, task.id) == [("created", None, {})]


# -- claim -------------------------------------------------------------------------------------


def test_a_claim_moves_a_queued_task_to_running_for_that_worker(db):
    # Given
    task_id = new_task(db)

    # When
    held = transitions.claim(db, task_id, WORKER)

    # Then
    assert (held.task_id, held.type, held.attempt, held.worker) == (task_id, "b", 1, WORKER)
    assert held.payload == {"duration_ms": 10, "steps": 1}
    stored = row(task_id)
    assert (stored.status, stored.worker, stored.attempts) == ("running", WORKER, 1)
    assert stored.started_at is not None and stored.finished_at is None
    assert events(db, task_id)[-1] == ("started", WORKER, {"attempt": 1})


def test_a_second_claim_of_the_same_task_fails(db):
    # Given
    task_id = new_task(db)
    transitions.claim(db, task_id, WORKER)

    # When
    second = transitions.claim(db, task_id, OTHER_WORKER)

    # Then
    assert second is None
    stored = row(task_id)
    assert (stored.worker, stored.attempts) == (WORKER, 1)
    assert kinds(db, task_id) == ["created", "started"]


def test_a_claim_of_an_unknown_task_fails(db):
    assert transitions.claim(db, uuid.uuid4(), WORKER) is None


def test_concurrent_claims_of_one_task_have_exactly_one_winner(db):
    # Given a task and eight workers released at once
    task_id = new_task(db)
    start = threading.Barrier(8)
    results: list = []

    def contend(n: int) -> None:
        try:
            start.wait(timeout=5)
            results.append(transitions.claim(db, task_id, f"host:{n}:worker"))
        finally:
            close_connection()

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(8)]

    # When
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    # Then
    winners = [r for r in results if r is not None]
    assert len(results) == 8 and len(winners) == 1
    assert row(task_id).worker == winners[0].worker
    assert kinds(db, task_id) == ["created", "started"]


# -- finish ------------------------------------------------------------------------------------


def test_a_finish_records_the_outcome_once(db):
    # Given
    task_id = new_task(db)
    held = transitions.claim(db, task_id, WORKER)

    # When
    first = transitions.finish(db, held, "succeeded", result={"n": 1})
    second = transitions.finish(db, held, "failed", error="late duplicate")

    # Then
    assert (first, second) == (True, False)
    stored = row(task_id)
    assert (stored.status, stored.result, stored.error, stored.progress) == (
        "succeeded",
        {"n": 1},
        None,
        100,
    )
    assert stored.finished_at is not None
    assert kinds(db, task_id) == ["created", "started", "succeeded"]
    assert events(db, task_id)[-1] == ("succeeded", WORKER, {"attempt": 1})


def test_a_finish_with_a_stale_claim_changes_nothing(db):
    # Given a task handed back and claimed again: the first claim is stale
    task_id = new_task(db)
    stale = transitions.claim(db, task_id, WORKER)
    transitions.hand_back(db, stale, "shutdown")
    current = transitions.claim(db, task_id, OTHER_WORKER)
    history = events(db, task_id)

    # When
    recorded = transitions.finish(db, stale, "succeeded", result={"stale": True})

    # Then
    assert recorded is False
    stored = row(task_id)
    assert (stored.status, stored.worker, stored.attempts, stored.result) == (
        "running",
        OTHER_WORKER,
        current.attempt,
        None,
    )
    assert events(db, task_id) == history


def test_a_failure_records_its_error_and_keeps_the_progress_reached(db):
    # Given
    task_id = new_task(db)
    held = transitions.claim(db, task_id, WORKER)
    transitions.report_progress(db, held, 40)

    # When
    transitions.finish(db, held, "failed", error="ValueError: nope")

    # Then
    stored = row(task_id)
    assert (stored.status, stored.error, stored.progress) == ("failed", "ValueError: nope", 40)
    assert events(db, task_id)[-1] == (
        "failed",
        WORKER,
        {"attempt": 1, "error": "ValueError: nope"},
    )


def test_a_finish_with_a_status_that_is_not_final_is_refused(db):
    # Given
    held = transitions.claim(db, new_task(db), WORKER)

    # When / Then
    with pytest.raises(ValueError, match="queued"):
        transitions.finish(db, held, "queued")
    assert row(held.task_id).status == "running"


# -- report_progress ---------------------------------------------------------------------------


def test_progress_is_stored_clamped_to_0_100_and_says_no_cancel_was_requested(db):
    # Given
    held = transitions.claim(db, new_task(db), WORKER)

    # When / Then
    assert transitions.report_progress(db, held, 30) is False
    assert row(held.task_id).progress == 30
    assert transitions.report_progress(db, held, 250) is False
    assert row(held.task_id).progress == 100
    assert transitions.report_progress(db, held, -5) is False
    assert row(held.task_id).progress == 0


def test_progress_for_a_lost_claim_returns_none_and_changes_nothing(db):
    # Given a claim whose task was recovered from its worker and claimed by another
    task_id = new_task(db)
    held = transitions.claim(db, task_id, WORKER)
    transitions.recover_tasks_of(db, [WORKER], max_recoveries=3)
    transitions.claim(db, task_id, OTHER_WORKER)

    # When
    answer = transitions.report_progress(db, held, 50)

    # Then
    assert answer is None
    assert row(task_id).progress == 0


def test_progress_after_a_cancel_request_returns_true(db):
    # Given
    held = transitions.claim(db, new_task(db), WORKER)
    transitions.cancel(db, held.task_id)

    # When
    answer = transitions.report_progress(db, held, 10)

    # Then
    assert answer is True


# -- hand_back ---------------------------------------------------------------------------------


def test_a_handed_back_task_is_queued_again_with_an_event(db):
    # Given
    task_id = new_task(db)
    held = transitions.claim(db, task_id, WORKER)
    transitions.report_progress(db, held, 60)

    # When
    handed = transitions.hand_back(db, held, "shutdown")

    # Then
    assert handed is True
    stored = row(task_id)
    assert (stored.status, stored.worker, stored.progress, stored.recoveries) == (
        "queued",
        None,
        0,
        0,
    )
    assert events(db, task_id)[-1] == ("handed_back", WORKER, {"reason": "shutdown"})
    assert transitions.claim(db, task_id, OTHER_WORKER).attempt == 2


def test_handing_back_a_lost_claim_changes_nothing(db):
    # Given
    task_id = new_task(db)
    held = transitions.claim(db, task_id, WORKER)
    transitions.finish(db, held, "succeeded", result={})

    # When
    handed = transitions.hand_back(db, held, "shutdown")

    # Then
    assert handed is False
    assert row(task_id).status == "succeeded"
    assert kinds(db, task_id) == ["created", "started", "succeeded"]


# -- recover_tasks_of --------------------------------------------------------------------------


def test_tasks_of_a_dead_worker_are_queued_again_with_a_recovered_event(db):
    # Given one task held by the dead worker, one by a live one, and one queued
    dead_task = new_task(db)
    live_task = new_task(db)
    queued_task = new_task(db)
    transitions.claim(db, dead_task, WORKER)
    transitions.claim(db, live_task, OTHER_WORKER)

    # When
    requeued = transitions.recover_tasks_of(db, [WORKER], max_recoveries=3)

    # Then only the dead worker's task moved
    assert [(r.task_id, r.status, r.worker) for r in requeued] == [(dead_task, "queued", WORKER)]
    stored = row(dead_task)
    assert (stored.status, stored.worker, stored.recoveries) == ("queued", None, 1)
    assert events(db, dead_task)[-1] == (
        "recovered",
        WORKER,
        {"dead_worker": WORKER, "recoveries": 1},
    )
    assert row(live_task).status == "running"
    assert row(queued_task).status == "queued"
    assert transitions.recover_tasks_of(db, [], max_recoveries=3) == []


def test_a_task_that_killed_its_worker_max_recoveries_times_fails_as_poison(db):
    # Given a task that killed two workers already
    task_id = new_task(db)
    for n in range(2):
        transitions.claim(db, task_id, f"host:{n}:dead")
        transitions.recover_tasks_of(db, [f"host:{n}:dead"], max_recoveries=3)
    assert (row(task_id).status, row(task_id).recoveries) == ("queued", 2)
    transitions.claim(db, task_id, WORKER)

    # When its third worker dies
    requeued = transitions.recover_tasks_of(db, [WORKER], max_recoveries=3)

    # Then
    assert [r.status for r in requeued] == ["failed"]
    stored = row(task_id)
    assert (stored.status, stored.recoveries, stored.worker) == ("failed", 3, None)
    assert "poison" in stored.error and WORKER in stored.error
    assert stored.finished_at is not None
    kind, worker, detail = events(db, task_id)[-1]
    assert (kind, worker, detail["recoveries"]) == ("failed", WORKER, 3)
    assert "poison" in detail["error"]
    assert kinds(db, task_id).count("recovered") == 2


def test_recovery_with_max_recoveries_one_fails_at_the_first_crash(db):
    # Given
    task_id = new_task(db)
    transitions.claim(db, task_id, WORKER)

    # When
    transitions.recover_tasks_of(db, [WORKER], max_recoveries=1)

    # Then
    assert row(task_id).status == "failed"
    assert "CALLBOARD_MAX_RECOVERIES=1" in row(task_id).error


# -- cancel ------------------------------------------------------------------------------------


def test_cancelling_a_queued_task_cancels_it_now(db):
    # Given
    task_id = new_task(db)

    # When
    task = transitions.cancel(db, task_id)

    # Then
    assert (task.status, task.cancel_requested) == ("cancelled", False)
    assert task.finished_at is not None
    assert kinds(db, task_id) == ["created", "cancelled"]
    assert transitions.claim(db, task_id, WORKER) is None


def test_cancelling_a_running_task_requests_a_stop_and_the_worker_records_it(db):
    # Given
    task_id = new_task(db)
    held = transitions.claim(db, task_id, WORKER)

    # When
    task = transitions.cancel(db, task_id)
    transitions.finish(db, held, "cancelled", error="cancelled on request")

    # Then
    assert (task.status, task.cancel_requested) == ("running", True)
    stored = row(task_id)
    assert (stored.status, stored.cancel_requested) == ("cancelled", False)
    assert kinds(db, task_id) == ["created", "started", "cancel_requested", "cancelled"]


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "cancelled"])
def test_cancelling_a_finished_task_is_an_invalid_transition(db, outcome):
    # Given
    task_id = new_task(db)
    transitions.finish(db, transitions.claim(db, task_id, WORKER), outcome)
    history = events(db, task_id)

    # When / Then
    with pytest.raises(InvalidTransition) as raised:
        transitions.cancel(db, task_id)
    assert raised.value.status == outcome
    assert row(task_id).status == outcome
    assert events(db, task_id) == history


def test_cancelling_an_unknown_task_is_not_found(db):
    with pytest.raises(TaskNotFound):
        transitions.cancel(db, uuid.uuid4())


# -- retry -------------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
def test_retrying_a_failed_or_cancelled_task_queues_a_fresh_attempt(db, outcome):
    # Given a task that crashed a worker once, then ended failed or cancelled
    task_id = new_task(db)
    transitions.claim(db, task_id, "host:0:dead")
    transitions.recover_tasks_of(db, ["host:0:dead"], max_recoveries=3)
    held = transitions.claim(db, task_id, WORKER)
    transitions.report_progress(db, held, 50)
    transitions.finish(db, held, outcome, error="boom")

    # When
    task = transitions.retry(db, task_id)

    # Then
    assert (task.status, task.error, task.result, task.progress) == ("queued", None, None, 0)
    assert (task.recoveries, task.worker, task.cancel_requested) == (0, None, False)
    assert task.started_at is None and task.finished_at is None
    assert kinds(db, task_id)[-1] == "retried"
    assert transitions.claim(db, task_id, WORKER).attempt == 3


@pytest.mark.parametrize("status", ["queued", "running", "succeeded"])
def test_retrying_a_task_that_did_not_fail_is_an_invalid_transition(db, status):
    # Given
    task_id = new_task(db)
    if status != "queued":
        held = transitions.claim(db, task_id, WORKER)
        if status == "succeeded":
            transitions.finish(db, held, "succeeded", result={})

    # When / Then
    with pytest.raises(InvalidTransition) as raised:
        transitions.retry(db, task_id)
    assert raised.value.status == status
    assert row(task_id).status == status


def test_retrying_an_unknown_task_is_not_found(db):
    with pytest.raises(TaskNotFound):
        transitions.retry(db, uuid.uuid4())


# -- queued_since_before -----------------------------------------------------------------------


def test_only_tasks_queued_longer_than_the_grace_are_listed_for_resending(db):
    # Given an old queued task, a fresh one, and an old running one
    old, _fresh, running = new_task(db), new_task(db), new_task(db)
    transitions.claim(db, running, WORKER)
    db.execute_sql(
        "UPDATE tasks SET queued_at = now() - interval '1 minute' WHERE id IN (%s, %s)",
        (str(old), str(running)),
    )

    # When
    listed = transitions.queued_since_before(db, 30, after=None, limit=10)

    # Then
    assert [task_id for task_id, _, _ in listed] == [old]


# -- reads -------------------------------------------------------------------------------------


def insert_at(db, created_at: datetime, count: int, status: str = "queued") -> list[uuid.UUID]:
    """Insert ``count`` tasks with the very same ``created_at``."""
    ids = [uuid.uuid4() for _ in range(count)]
    Task.insert_many(
        [
            {
                "id": task_id,
                "type": "a",
                "status": status,
                "payload": {"text": "x", "rounds": 1},
                "created_at": created_at,
                "queued_at": created_at,
            }
            for task_id in ids
        ]
    ).execute()
    return ids


def walk(page_size: int, **filters) -> list[list[uuid.UUID]]:
    pages, cursor = [], None
    while True:
        page = reads.list_tasks(limit=page_size, cursor=cursor, **filters)
        pages.append([t.id for t in page.tasks])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_paging_is_stable_and_complete_when_tasks_share_a_creation_time(db):
    # Given eleven tasks at one instant, between an older and a newer one
    instant = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    (older,) = insert_at(db, instant - timedelta(microseconds=1), 1)
    same = insert_at(db, instant, 11)
    (newer,) = insert_at(db, instant + timedelta(microseconds=1), 1)

    # When paging three at a time
    pages = walk(3)

    # Then every task appears once, newest first, ties broken by id descending
    assert [len(p) for p in pages] == [3, 3, 3, 3, 1]
    assert [t for p in pages for t in p] == [newer, *sorted(same, reverse=True), older]


@pytest.mark.parametrize("page_size", [1, 2, 5, 13, 200])
def test_every_page_size_walks_the_same_order(db, page_size):
    # Given
    instant = datetime(2030, 6, 1, tzinfo=UTC)
    ids = insert_at(db, instant, 6) + insert_at(db, instant - timedelta(seconds=1), 6)
    expected = [t.id for t in reads.list_tasks(limit=200).tasks]

    # When
    pages = walk(page_size)

    # Then
    assert [t for p in pages for t in p] == expected
    assert sorted(expected) == sorted(ids)


def test_paging_with_a_status_filter_skips_other_statuses(db):
    # Given
    instant = datetime(2030, 1, 1, tzinfo=UTC)
    queued = insert_at(db, instant, 5)
    insert_at(db, instant, 5, status="failed")

    # When
    pages = walk(2, status="queued")

    # Then
    assert [t for p in pages for t in p] == sorted(queued, reverse=True)


@pytest.mark.parametrize("cursor", ["bogus", "x|y", "!!!!", "MjAzMC0wMS0wMXxub3QtYS11dWlk"])
def test_a_cursor_this_service_did_not_issue_is_refused(db, cursor):
    with pytest.raises(reads.InvalidCursor):
        reads.list_tasks(cursor=cursor)


def test_the_history_of_an_unknown_task_is_not_found(db):
    with pytest.raises(TaskNotFound):
        reads.task_events(uuid.uuid4())
