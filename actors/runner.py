"""The body shared by every task actor: claim the row, run the handler, record the outcome once.

Delivery is at least once; the ledger makes the recorded outcome exactly once. A message whose
task is not ``queued`` (a duplicate, a late message, a cancelled task) is acknowledged and
ignored. Every write after the claim is conditional on still holding it.
"""

from __future__ import annotations

import logging
import uuid

import dramatiq
from dramatiq.middleware.time_limit import TimeLimitExceeded

from actors import worker_state
from actors.broker import broker
from actors.db_retry import with_db_retry
from actors.task_types import Cancelled, HandBack, LostClaim, TaskContext, TaskType
from models import transitions
from models.db import database

logger = logging.getLogger("callboard.worker")


def declare_actor(task_type: TaskType) -> dramatiq.Actor:
    """Declare the Dramatiq actor that runs tasks of ``task_type`` from its own queue."""

    def run(task_id: str) -> None:
        run_task(task_type, task_id)

    run.__name__ = task_type.actor_name
    return dramatiq.actor(
        run,
        actor_name=task_type.actor_name,
        queue_name=task_type.name,
        broker=broker,
        time_limit=task_type.time_limit_ms,
    )


def run_task(task_type: TaskType, task_id: str, state: worker_state.WorkerState | None = None):
    """Run one delivery of the message for ``task_id``."""
    state = state or worker_state.current
    if state.stopping.is_set():
        state.resend_after_stop(task_id, task_type.name)
        return
    held = with_db_retry(
        lambda: transitions.claim(database, uuid.UUID(task_id), state.worker_id),
        what=f"claim task {task_id}",
        give_up=state.stopping,
    )
    if held is None:
        logger.info("Ignoring a message for task %r: it is not queued any more.", task_id)
        return
    state.hold(held)
    try:
        _run_claimed(task_type, held, state)
    finally:
        state.release(held)


def _run_claimed(task_type: TaskType, held: transitions.Claim, state) -> None:
    task_id = str(held.task_id)
    context = TaskContext(
        held,
        report_progress=lambda percent: with_db_retry(
            lambda: transitions.report_progress(database, held, percent),
            what=f"record progress of task {task_id}",
            give_up=state.stopping,
        ),
        stopping=state.stopping,
        seconds_left=state.seconds_left,
    )
    # DEBUG: at thousands of tasks a second, two INFO lines per task cost a fifth of the CPU.
    logger.debug("Task %r (type %r) started, attempt %r.", task_id, task_type.name, held.attempt)
    try:
        payload = task_type.payload_model.model_validate(held.payload)
        result = task_type.handler(payload, context)
    except HandBack:
        _record(held, state, "hand back", lambda: transitions.hand_back(database, held, "shutdown"))
        state.resend_after_stop(task_id, task_type.name)
        logger.info("Task %r handed back: it cannot finish before this worker stops.", task_id)
        return
    except LostClaim:
        logger.warning("Task %r was taken from this worker; dropping this attempt.", task_id)
        return
    except Cancelled:
        outcome, result, error = "cancelled", None, "cancelled on request"
    except TimeLimitExceeded:
        limit_s = task_type.time_limit_ms / 1000
        outcome, result, error = "failed", None, f"time limit of {limit_s:g} s exceeded"
    except Exception as exc:  # noqa: BLE001 - any handler error fails the task, with its reason
        logger.exception("Task %r failed.", task_id)
        outcome, result, error = "failed", None, f"{type(exc).__name__}: {exc}"
    else:
        outcome, error = "succeeded", None
    recorded = _record(
        held,
        state,
        f"record the outcome of task {task_id}",
        lambda: transitions.finish(database, held, outcome, result=result, error=error),
    )
    if recorded:
        logger.info("Task %r %s.", task_id, outcome)
    else:
        logger.warning("Task %r finished here but was not held any more; outcome dropped.", task_id)


def _record(held, state, what, write) -> bool:
    return with_db_retry(write, what=what, give_up=state.stopping)
