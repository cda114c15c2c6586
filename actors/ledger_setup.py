"""Connect each worker process to the ledger at boot, migrating the schema if needed."""

from __future__ import annotations

import logging

from dramatiq import Middleware

from models.db import UNAVAILABLE_ERRORS, close_connection, init_database
from models.migrate import migrate

logger = logging.getLogger("callboard.worker")


class LedgerSetup(Middleware):
    """Points ``models.db.database`` at ``DATABASE_URL`` when a worker process boots."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def after_process_boot(self, broker) -> None:
        db = init_database(self.database_url)
        try:
            migrate(db)
        except UNAVAILABLE_ERRORS as exc:
            # Not fatal: every ledger write retries until PostgreSQL is back.
            logger.error("PostgreSQL is unavailable at boot; will retry on use: %s", exc)
        finally:
            close_connection(db)

    def before_worker_thread_shutdown(self, broker, thread) -> None:
        close_connection()
