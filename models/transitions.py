"""Every change of a task's status, each one SQL statement that also writes its event row.

Status moves only forward: ``queued → running → succeeded | failed | cancelled``, plus
``failed/cancelled → queued`` by an explicit retry and ``running → queued`` when a worker hands a
task back or dies. Each transition is a single ``UPDATE ... WHERE <expected state>`` so that two
racing callers cannot both win: the loser sees ``None``/``False`` and must change nothing else.
A worker's writes are conditional on its *claim* (the task id and the attempt number it set when
it claimed the row), so a duplicate or late message can never record a second outcome.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from peewee import PostgresqlDatabase
from psycopg2.extras import Json

from models.errors import IdempotencyConflict, InvalidTransition, TaskNotFound
from models.tables import Task


@dataclasses.dataclass(frozen=True)
class NewTask:
    """A validated request for work, not stored yet."""

    type: str
    payload: dict
    run_at: datetime | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclasses.dataclass(frozen=True)
class Claim:
    """Proof that one worker holds one attempt of a running task."""

    task_id: uuid.UUID
    type: str
    payload: dict
    attempt: int
    worker: str


@dataclasses.dataclass(frozen=True)
class Requeued:
    """A task put back in the queue (or failed as poison) by the repair loop."""

    task_id: uuid.UUID
    type: str
    status: str
    worker: str | None
    run_at: datetime | None


def create_tasks(db: PostgresqlDatabase, new_tasks: Sequence[NewTask]) -> list[Task]:
    """Insert queued tasks and their ``created`` events; return the rows in the given order.

    One statement (so one round trip and one commit, atomic for the whole batch): acceptance
    must be durable, and this is the write every submission waits for.
    """
    ids = [str(uuid.uuid4()) for _ in new_tasks]
    cursor = db.execute_sql(
        f"""
        WITH created AS (
            INSERT INTO tasks (id, type, status, payload, run_at, idempotency_key, request_hash)
            SELECT id, type, 'queued', payload, run_at, key, hash
              FROM unnest(%s::uuid[], %s::text[], %s::jsonb[], %s::timestamptz[], %s::text[],
                          %s::text[]) AS new (id, type, payload, run_at, key, hash)
            RETURNING {_TASK_COLUMNS}
        ), event AS (
            INSERT INTO task_events (task_id, kind) SELECT id, 'created' FROM created
        )
        SELECT {_TASK_COLUMNS} FROM created
        """,
        (
            ids,
            [new.type for new in new_tasks],
            [Json(new.payload) for new in new_tasks],
            [new.run_at for new in new_tasks],
            [new.idempotency_key for new in new_tasks],
            [new.request_hash for new in new_tasks],
        ),
    )
    by_id = {str(row[0]): _task_from_row(row) for row in cursor.fetchall()}
    return [by_id[task_id] for task_id in ids]


def create_idempotent_task(db: PostgresqlDatabase, new: NewTask) -> tuple[Task, bool]:
    """Insert a task under its idempotency key, or find the task first stored under it.

    Returns ``(task, created)``. Concurrent calls with one key create one task: the unique index
    on ``idempotency_key`` makes every other insert a no-op, and they read the winner's row.

    Raises:
        IdempotencyConflict: the key was first used with a different request.
    """
    with db.atomic():
        inserted = list(
            Task.insert(
                id=uuid.uuid4(),
                type=new.type,
                status="queued",
                payload=new.payload,
                run_at=new.run_at,
                idempotency_key=new.idempotency_key,
                request_hash=new.request_hash,
            )
            .on_conflict_ignore()
            .returning(Task)
            .execute()
        )
        if inserted:
            db.execute_sql(
                "INSERT INTO task_events (task_id, kind) VALUES (%s, 'created')",
                (str(inserted[0].id),),
            )
            return inserted[0], True
    existing = Task.get(Task.idempotency_key == new.idempotency_key)
    if existing.request_hash != new.request_hash:
        raise IdempotencyConflict(new.idempotency_key, str(existing.id))
    return existing, False


def claim(db: PostgresqlDatabase, task_id: uuid.UUID | str, worker: str) -> Claim | None:
    """Move a queued task to running for ``worker``; ``None`` if it is not queued any more."""
    cursor = db.execute_sql(
        """
        WITH claimed AS (
            UPDATE tasks SET status = 'running', worker = %(worker)s, attempts = attempts + 1,
                   started_at = now(), finished_at = NULL, progress = 0
             WHERE id = %(id)s AND status = 'queued'
               -- A message that arrives early for a delayed task is dropped; the rebalance
               -- sends the task again with the right delay.
               AND (run_at IS NULL OR run_at <= now() + interval '2 seconds')
            RETURNING id, type, payload, attempts
        ), event AS (
            INSERT INTO task_events (task_id, kind, worker, detail)
            SELECT id, 'started', %(worker)s, jsonb_build_object('attempt', attempts) FROM claimed
        )
        SELECT id, type, payload, attempts FROM claimed
        """,
        {"id": str(task_id), "worker": worker},
    )
    row = cursor.fetchone()
    if row is None:
        return None
    return Claim(
        task_id=uuid.UUID(str(row[0])), type=row[1], payload=row[2], attempt=row[3], worker=worker
    )


def report_progress(db: PostgresqlDatabase, held: Claim, progress: int) -> bool | None:
    """Store ``progress`` (0..100); return whether a cancel was requested, ``None`` if not held."""
    cursor = db.execute_sql(
        "UPDATE tasks SET progress = %s WHERE id = %s AND status = 'running' AND attempts = %s"
        " RETURNING cancel_requested",
        (max(0, min(100, int(progress))), str(held.task_id), held.attempt),
    )
    row = cursor.fetchone()
    return None if row is None else row[0]


def finish(
    db: PostgresqlDatabase,
    held: Claim,
    status: str,
    *,
    result: dict | None = None,
    error: str | None = None,
) -> bool:
    """Record the outcome of a held attempt once; ``False`` if the claim was lost meanwhile."""
    if status not in ("succeeded", "failed", "cancelled"):
        raise ValueError(f"{status!r} is not a final status")
    cursor = db.execute_sql(
        """
        WITH done AS (
            UPDATE tasks SET status = %(status)s, result = %(result)s, error = %(error)s,
                   finished_at = now(), cancel_requested = false,
                   progress = CASE WHEN %(status)s = 'succeeded' THEN 100 ELSE progress END
             WHERE id = %(id)s AND status = 'running' AND attempts = %(attempt)s
            RETURNING id
        ), event AS (
            INSERT INTO task_events (task_id, kind, worker, detail)
            SELECT id, %(status)s, %(worker)s, jsonb_strip_nulls(jsonb_build_object(
                'attempt', %(attempt)s, 'error', %(error)s::text)) FROM done
        )
        SELECT count(*) FROM done
        """,
        {
            "id": str(held.task_id),
            "attempt": held.attempt,
            "status": status,
            "result": Json(result) if result is not None else None,
            "error": error,
            "worker": held.worker,
        },
    )
    return cursor.fetchone()[0] == 1


def hand_back(db: PostgresqlDatabase, held: Claim, reason: str) -> bool:
    """Return a held task to the queue (a clean shutdown); ``False`` if not held any more."""
    cursor = db.execute_sql(
        """
        WITH back AS (
            UPDATE tasks SET status = 'queued', worker = NULL, queued_at = now(), progress = 0
             WHERE id = %(id)s AND status = 'running' AND attempts = %(attempt)s
            RETURNING id
        ), event AS (
            INSERT INTO task_events (task_id, kind, worker, detail)
            SELECT id, 'handed_back', %(worker)s, jsonb_build_object('reason', %(reason)s::text)
              FROM back
        )
        SELECT count(*) FROM back
        """,
        {"id": str(held.task_id), "attempt": held.attempt, "worker": held.worker, "reason": reason},
    )
    return cursor.fetchone()[0] == 1


def recover_tasks_of(
    db: PostgresqlDatabase, dead_workers: Iterable[str], max_recoveries: int
) -> list[Requeued]:
    """Requeue every task held by a dead worker, or fail it once it has crashed too often."""
    dead = list(dead_workers)
    if not dead:
        return []
    cursor = db.execute_sql(
        """
        WITH recovered AS (
            UPDATE tasks t SET
                   recoveries = t.recoveries + 1,
                   status = CASE WHEN t.recoveries + 1 >= %(max)s THEN 'failed' ELSE 'queued' END,
                   error = CASE WHEN t.recoveries + 1 >= %(max)s THEN format(
                       'poison: the task was running when its worker died %%s times'
                       ' (CALLBOARD_MAX_RECOVERIES=%%s); last on worker %%s',
                       t.recoveries + 1, %(max)s, t.worker) ELSE t.error END,
                   finished_at = CASE WHEN t.recoveries + 1 >= %(max)s THEN now() END,
                   queued_at = now(), progress = 0, worker = NULL
              FROM (SELECT id, worker FROM tasks
                     WHERE status = 'running' AND worker = ANY(%(dead)s) FOR UPDATE) old
             WHERE t.id = old.id
            RETURNING t.id, t.type, t.status, old.worker, t.run_at, t.recoveries, t.error
        ), event AS (
            INSERT INTO task_events (task_id, kind, worker, detail)
            SELECT id, CASE WHEN status = 'failed' THEN 'failed' ELSE 'recovered' END, worker,
                   jsonb_strip_nulls(jsonb_build_object(
                       'dead_worker', worker, 'recoveries', recoveries,
                       'error', CASE WHEN status = 'failed' THEN error END))
              FROM recovered
        )
        SELECT id, type, status, worker, run_at FROM recovered
        """,
        {"dead": dead, "max": max_recoveries},
    )
    return [Requeued(uuid.UUID(str(r[0])), r[1], r[2], r[3], r[4]) for r in cursor.fetchall()]


def cancel(db: PostgresqlDatabase, task_id: uuid.UUID | str) -> Task:
    """Cancel a queued task at once, or ask a running one to stop at its next step.

    Raises:
        TaskNotFound: no such task.
        InvalidTransition: the task has already finished.
    """
    cursor = db.execute_sql(
        """
        WITH changed AS (
            UPDATE tasks SET
                   status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                   finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
                   cancel_requested = (status = 'running')
             WHERE id = %(id)s AND status IN ('queued', 'running')
            RETURNING id, status
        ), event AS (
            INSERT INTO task_events (task_id, kind)
            SELECT id, CASE WHEN status = 'cancelled' THEN 'cancelled' ELSE 'cancel_requested' END
              FROM changed
        )
        SELECT count(*) FROM changed
        """,
        {"id": str(task_id)},
    )
    if cursor.fetchone()[0] == 0:
        _raise_for_status(task_id, "cancelled")
    return Task.get_by_id(task_id)


def retry(db: PostgresqlDatabase, task_id: uuid.UUID | str) -> Task:
    """Queue a failed or cancelled task again as a new attempt.

    Raises:
        TaskNotFound: no such task.
        InvalidTransition: the task is not failed or cancelled.
    """
    cursor = db.execute_sql(
        """
        WITH again AS (
            UPDATE tasks SET status = 'queued', result = NULL, error = NULL, progress = 0,
                   worker = NULL, cancel_requested = false, recoveries = 0, queued_at = now(),
                   started_at = NULL, finished_at = NULL
             WHERE id = %(id)s AND status IN ('failed', 'cancelled')
            RETURNING id
        ), event AS (
            INSERT INTO task_events (task_id, kind) SELECT id, 'retried' FROM again
        )
        SELECT count(*) FROM again
        """,
        {"id": str(task_id)},
    )
    if cursor.fetchone()[0] == 0:
        _raise_for_status(task_id, "retried")
    return Task.get_by_id(task_id)


def queued_since_before(
    db: PostgresqlDatabase, grace_seconds: float, *, after: uuid.UUID | None, limit: int
) -> list[tuple[uuid.UUID, str, datetime | None]]:
    """Page through queued tasks that were queued more than ``grace_seconds`` ago, by id."""
    cursor = db.execute_sql(
        "SELECT id, type, run_at FROM tasks WHERE status = 'queued'"
        " AND queued_at < now() - make_interval(secs => %s) AND id > %s ORDER BY id LIMIT %s",
        (grace_seconds, str(after or uuid.UUID(int=0)), limit),
    )
    return [(uuid.UUID(str(r[0])), r[1], r[2]) for r in cursor.fetchall()]


def record_resent(db: PostgresqlDatabase, task_ids: Sequence[uuid.UUID]) -> None:
    """Write a ``resent`` event for tasks whose message the repair loop sent again."""
    if task_ids:
        db.execute_sql(
            "INSERT INTO task_events (task_id, kind) SELECT unnest(%s::uuid[]), 'resent'",
            ([str(t) for t in task_ids],),
        )


def _raise_for_status(task_id: uuid.UUID | str, action: str) -> None:
    task = Task.get_or_none(Task.id == task_id)
    if task is None:
        raise TaskNotFound(str(task_id))
    raise InvalidTransition(str(task_id), task.status, action)


#: The columns of ``tasks``, in the order of ``Task``'s fields.
_TASK_COLUMNS = ", ".join(field.column_name for field in Task._meta.sorted_fields)


def _task_from_row(row: tuple) -> Task:
    # A Task built from a raw row, without a second query.
    return Task(**dict(zip(Task._meta.sorted_field_names, row, strict=True)))
