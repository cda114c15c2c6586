"""Retry a database call while PostgreSQL is briefly away, instead of failing the task."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from models.db import UNAVAILABLE_ERRORS, database, drop_broken_connection

#: Backoff between attempts: doubles from the first to the cap, in seconds.
DEFAULT_FIRST_DELAY = 0.1
DEFAULT_MAX_DELAY = 5.0

T = TypeVar("T")
logger = logging.getLogger("callboard.worker")


def with_db_retry(
    call: Callable[[], T],
    *,
    what: str,
    give_up: threading.Event | None = None,
    first_delay: float = DEFAULT_FIRST_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
) -> T:
    """Run ``call()``, retrying with exponential backoff while the database is unreachable.

    ``what`` names the operation in log lines. Once ``give_up`` is set (the worker is stopping),
    the next failure is raised instead of retried: the ledger's repair loop takes over from there.
    """
    delay = first_delay
    while True:
        try:
            return call()
        except UNAVAILABLE_ERRORS as exc:
            drop_broken_connection(database)
            if give_up is not None and give_up.is_set():
                raise
            logger.warning(
                "PostgreSQL is unavailable while trying to %s (%s); retrying in %.1f s.",
                what,
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                delay,
            )
            if give_up is not None:
                give_up.wait(delay)
            else:
                threading.Event().wait(delay)
            delay = min(delay * 2, max_delay)
