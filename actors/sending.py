"""Send task messages: the id only, after the row is committed, one Redis round trip per batch.

A message also carries, as its ``request_id`` option, the id of the HTTP request that sent it, so
the worker's log lines for the task name that request (``actors.log_context``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from dramatiq.message import Message

from actors.ledger_broker import LedgerRedisBroker
from actors.log_context import REQUEST_ID_OPTION
from actors.task_types import actor_name_of
from logging_setup import current_request_id


def task_message(
    broker: LedgerRedisBroker,
    task_type: str,
    task_id: uuid.UUID | str,
    *,
    request_id: str | None = None,
) -> Message:
    """The message that runs task ``task_id``; its message id is the task id.

    Built from the wire format (the queue is the type's name, the actor name follows from it),
    not from an actor declared in this process: the rebalance recovers and re-sends tasks of
    every type in the ledger, including types that only some workers know (a worker started
    with an extra module, a rolling deploy that adds a type). Looking the type up here failed
    such a run after the recovery was committed, leaving the task queued with no message.
    """
    options = {REQUEST_ID_OPTION: request_id} if request_id else {}
    return Message(
        queue_name=task_type,
        actor_name=actor_name_of(task_type),
        args=(str(task_id),),
        kwargs={},
        options=options,
        message_id=str(task_id),
    )


def send_tasks(
    broker: LedgerRedisBroker,
    tasks: Iterable[tuple[uuid.UUID | str, str, datetime | None]],
    *,
    request_id: str | None = None,
) -> int:
    """Send one message per ``(task_id, type, run_at)``; a future ``run_at`` delays it.

    Each message carries ``request_id``: by default, that of the HTTP request being handled in
    this thread (none in the rebalance or a stopping worker).

    Raises:
        redis.RedisError: Redis is unreachable; the rows stay queued and the rebalance sends them.
    """
    now = datetime.now(UTC)
    request_id = request_id or current_request_id()
    batch = [
        (task_message(broker, task_type, task_id, request_id=request_id), _delay_ms(run_at, now))
        for task_id, task_type, run_at in tasks
    ]
    if batch:
        broker.enqueue_many(batch)
    return len(batch)


def _delay_ms(run_at: datetime | None, now: datetime) -> int | None:
    if run_at is None or run_at <= now:
        return None
    return int((run_at - now).total_seconds() * 1000)
