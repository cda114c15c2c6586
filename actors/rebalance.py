"""The repair loop: every 10 s, make Redis agree with the ledger again.

periodiq's scheduler sends ``rebalance`` on the wall-clock tens and a worker runs it. Each run,
under a PostgreSQL advisory lock so that overlapping runs (two schedulers, a slow run) skip
instead of racing:
1. runs Dramatiq's own Redis maintenance on every queue, so messages fetched by a dead worker
   process go back to their queue now rather than by chance;
2. recovers the tasks held by workers whose heartbeat expired: back to ``queued`` and sent again,
   or ``failed`` as poison once they crashed their worker ``CALLBOARD_MAX_RECOVERIES`` times;
3. re-sends ``queued`` tasks that have no message in Redis (Redis restarted or was flushed, or the
   send after commit failed), once they have been queued longer than a short grace period;
4. records what it did in ``rebalance_runs``, which ``GET /rebalance`` shows.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import dramatiq
import redis
from peewee import PostgresqlDatabase

from actors import heartbeat
from actors.broker import broker
from actors.every_seconds import EverySeconds
from actors.ledger_broker import LedgerRedisBroker
from actors.rebalance_lane import RebalanceLane
from actors.sending import send_tasks
from actors.task_types import REGISTRY
from models import reads, transitions
from models.db import UNAVAILABLE_ERRORS, database, drop_broken_connection
from models.tables import RebalanceRun
from settings import Settings, get_settings

#: Key of the advisory lock held during a run.
REBALANCE_LOCK_KEY = 0x0CA11B0B
#: Queued tasks checked against Redis per round trip.
RESEND_PAGE_SIZE = 2000
QUEUE_NAME = "rebalance"

logger = logging.getLogger("callboard.rebalance")


@dataclasses.dataclass
class RebalanceReport:
    """What one run did."""

    started_at: datetime
    duration_ms: float = 0.0
    resent: int = 0
    recovered: int = 0
    poisoned: int = 0
    dead_workers: list[str] = dataclasses.field(default_factory=list)
    liveness_checked: bool = True
    skipped: bool = False


@dramatiq.actor(
    actor_name="rebalance",
    broker=broker,
    queue_name=QUEUE_NAME,
    time_limit=60_000,
    periodic=EverySeconds(get_settings().rebalance_period),
)
def rebalance() -> None:
    """The periodic actor: run one repair pass with the process's broker and database."""
    try:
        report = run_rebalance(broker, database, get_settings())
    except (*UNAVAILABLE_ERRORS, redis.RedisError) as exc:
        # Each step commits on its own, so there is nothing to undo: the next run, one period
        # later, starts over. The connection must be dropped, though: a PostgreSQL restart leaves
        # it closed, and this thread (the rebalance has one of its own) would otherwise fail
        # every later run with "connection already closed".
        drop_broken_connection(database)
        logger.warning(
            "Rebalance skipped: %s is unavailable (%s).", _service(exc), _first_line(exc)
        )
        return
    if report.skipped:
        logger.info("Rebalance skipped: another run holds the lock.")
    else:
        logger.info(
            "Rebalance done in %.1f ms: %d resent, %d recovered, %d poisoned, dead workers %r.",
            report.duration_ms,
            report.resent,
            report.recovered,
            report.poisoned,
            report.dead_workers,
        )


# Every worker process runs the rebalance on a thread of its own, never behind busy task threads.
broker.add_middleware(RebalanceLane(QUEUE_NAME))


def run_rebalance(
    broker: LedgerRedisBroker, db: PostgresqlDatabase, settings: Settings
) -> RebalanceReport:
    """Run one repair pass; see the module docstring for its steps."""
    report = RebalanceReport(started_at=datetime.now(UTC))
    started = time.monotonic()
    (locked,) = db.execute_sql("SELECT pg_try_advisory_lock(%s)", (REBALANCE_LOCK_KEY,)).fetchone()
    if not locked:
        report.skipped = True
        return report
    try:
        broker.run_maintenance([*REGISTRY, QUEUE_NAME])
        _recover_dead_workers(broker, db, settings, report)
        _resend_missing(broker, db, settings, report)
        report.duration_ms = (time.monotonic() - started) * 1000
        _record(report)
    finally:
        db.execute_sql("SELECT pg_advisory_unlock(%s)", (REBALANCE_LOCK_KEY,))
    return report


def _recover_dead_workers(broker, db, settings: Settings, report: RebalanceReport) -> None:
    holders = reads.running_holders()
    # Checked on every run, so that the marker's age counts from Redis's first run with data.
    trustworthy = heartbeat.liveness_is_trustworthy(broker.client, settings.heartbeat_ttl)
    dead = heartbeat.dead_among(broker.client, holders)
    if dead and not trustworthy:
        logger.warning(
            "Redis lost its data recently; not judging workers %r dead until they had time to "
            "beat again.",
            dead,
        )
        report.liveness_checked = False
        return
    requeued = transitions.recover_tasks_of(db, dead, settings.max_recoveries)
    report.dead_workers = dead
    report.recovered = sum(1 for r in requeued if r.status == "queued")
    report.poisoned = sum(1 for r in requeued if r.status == "failed")
    for r in requeued:
        logger.warning(
            "Task %r was held by dead worker %r: now %s.", str(r.task_id), r.worker, r.status
        )
    send_tasks(broker, [(r.task_id, r.type, r.run_at) for r in requeued if r.status == "queued"])


def _resend_missing(broker, db, settings: Settings, report: RebalanceReport) -> None:
    after: uuid.UUID | None = None
    while page := transitions.queued_since_before(
        db, settings.resend_grace, after=after, limit=RESEND_PAGE_SIZE
    ):
        after = page[-1][0]
        by_type: dict[str, list] = defaultdict(list)
        for task_id, task_type, run_at in page:
            if task_type in REGISTRY:
                by_type[task_type].append((task_id, task_type, run_at))
        missing = []
        for task_type, tasks in by_type.items():
            present = broker.messages_present(task_type, [str(t[0]) for t in tasks])
            missing.extend(t for t in tasks if not present[str(t[0])])
        if missing:
            send_tasks(broker, missing)
            transitions.record_resent(db, [t[0] for t in missing])
            report.resent += len(missing)


def _service(exc: Exception) -> str:
    return "Redis" if isinstance(exc, redis.RedisError) else "PostgreSQL"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _record(report: RebalanceReport) -> None:
    RebalanceRun.create(
        started_at=report.started_at,
        duration_ms=report.duration_ms,
        resent=report.resent,
        recovered=report.recovered,
        poisoned=report.poisoned,
        dead_workers=report.dead_workers,
        detail={"liveness_checked": report.liveness_checked},
    )
