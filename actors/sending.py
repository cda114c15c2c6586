"""Send task messages: the id only, after the row is committed, one Redis round trip per batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from dramatiq.message import Message

from actors.ledger_broker import LedgerRedisBroker
from actors.task_types import REGISTRY


def task_message(broker: LedgerRedisBroker, task_type: str, task_id: uuid.UUID | str) -> Message:
    """The message that runs task ``task_id``; its message id is the task id."""
    actor = broker.get_actor(REGISTRY[task_type].actor_name)
    return actor.message_with_options(args=(str(task_id),)).copy(message_id=str(task_id))


def send_tasks(
    broker: LedgerRedisBroker,
    tasks: Iterable[tuple[uuid.UUID | str, str, datetime | None]],
) -> int:
    """Send one message per ``(task_id, type, run_at)``; a future ``run_at`` delays it.

    Raises:
        redis.RedisError: Redis is unreachable; the rows stay queued and the rebalance sends them.
    """
    now = datetime.now(UTC)
    batch = [
        (task_message(broker, task_type, task_id), _delay_ms(run_at, now))
        for task_id, task_type, run_at in tasks
    ]
    if batch:
        broker.enqueue_many(batch)
    return len(batch)


def _delay_ms(run_at: datetime | None, now: datetime) -> int | None:
    if run_at is None or run_at <= now:
        return None
    return int((run_at - now).total_seconds() * 1000)
