"""Read-only queries of the ledger: one task, a page of tasks, a task's history, recent repairs."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import UTC, datetime, timedelta

from models.errors import TaskNotFound
from models.tables import RebalanceRun, Task, TaskEvent

#: Page size of ``list_tasks`` when the caller names none, and the largest allowed.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: What every cursor looks like: microseconds since the epoch of the last task's creation, and
#: its id. Every string of this shape is a valid position, so the API documents it exactly.
CURSOR_PATTERN = r"^[0-9]{1,16}_[0-9a-f]{32}$"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class InvalidCursor(ValueError):
    """A pagination cursor that this service did not issue."""


@dataclasses.dataclass(frozen=True)
class Page:
    """Tasks newest first, and the cursor of the next page (``None`` on the last one)."""

    tasks: list[Task]
    next_cursor: str | None


def get_task(task_id: uuid.UUID) -> Task:
    """Return the task with ``task_id``.

    Raises:
        TaskNotFound: no such task.
    """
    task = Task.get_or_none(Task.id == task_id)
    if task is None:
        raise TaskNotFound(str(task_id))
    return task


def list_tasks(
    *,
    status: str | None = None,
    type: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> Page:
    """Return one page of tasks, newest first, in a stable order (``created_at``, then ``id``).

    Raises:
        InvalidCursor: ``cursor`` was not issued by this service.
    """
    query = Task.select()
    if status:
        query = query.where(Task.status == status)
    if type:
        query = query.where(Task.type == type)
    if created_after:
        query = query.where(Task.created_at > created_after)
    if created_before:
        query = query.where(Task.created_at < created_before)
    if cursor:
        created_at, last_id = decode_cursor(cursor)
        query = query.where(
            (Task.created_at < created_at) | ((Task.created_at == created_at) & (Task.id < last_id))
        )
    rows = list(query.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit + 1))
    tasks, more = rows[:limit], len(rows) > limit
    return Page(tasks, encode_cursor(tasks[-1]) if more else None)


def task_events(task_id: uuid.UUID) -> list[TaskEvent]:
    """Return a task's history, oldest first.

    Raises:
        TaskNotFound: no such task.
    """
    get_task(task_id)
    return list(TaskEvent.select().where(TaskEvent.task_id == task_id).order_by(TaskEvent.id))


def task_counts() -> dict[str, dict[str, int]]:
    """How many tasks there are of each type, by status."""
    counts: dict[str, dict[str, int]] = {}
    cursor = Task._meta.database.execute_sql(
        "SELECT type, status, count(*) FROM tasks GROUP BY type, status"
    )
    for task_type, status, count in cursor:
        counts.setdefault(task_type, {})[status] = count
    return counts


def running_holders() -> list[str]:
    """The workers the ledger says hold running tasks."""
    cursor = Task._meta.database.execute_sql(
        "SELECT DISTINCT worker FROM tasks WHERE status = 'running' AND worker IS NOT NULL"
    )
    return sorted(row[0] for row in cursor)


def recent_rebalance_runs(limit: int = 20) -> list[RebalanceRun]:
    """Return the latest runs of the repair loop, newest first."""
    return list(RebalanceRun.select().order_by(RebalanceRun.started_at.desc()).limit(limit))


def encode_cursor(task: Task) -> str:
    """A cursor pointing just after ``task`` in newest-first order (opaque to clients)."""
    return f"{(task.created_at - _EPOCH) // _MICROSECOND}_{uuid.UUID(str(task.id)).hex}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Parse a cursor made by ``encode_cursor``.

    Raises:
        InvalidCursor: the cursor does not match ``CURSOR_PATTERN``.
    """
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise InvalidCursor(f"{cursor!r} is not a cursor issued by this service")
    micros, task_id = cursor.split("_")
    return _EPOCH + int(micros) * _MICROSECOND, uuid.UUID(hex=task_id)
