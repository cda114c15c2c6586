"""``python -m web``: migrate the schema, then serve the API with waitress on ``$PORT``."""

from __future__ import annotations

import logging
import sys
import time

from logging_setup import configure_logging
from models.db import UNAVAILABLE_ERRORS, close_connection, database, init_database
from models.migrate import migrate
from settings import get_settings
from web.app import AuthNotConfigured, create_app
from web.server import serve

#: How long the web process waits for PostgreSQL at boot before giving up.
BOOT_DATABASE_DEADLINE = 60.0

logger = logging.getLogger("callboard.web")


def main() -> int:
    """Run the web process until SIGTERM or SIGINT; exit 0 after a graceful drain."""
    settings = get_settings()
    configure_logging(settings, "web")
    try:
        app = create_app(settings)
    except AuthNotConfigured as exc:
        logger.critical("Refusing to start: %s", exc)
        return 2
    init_database(settings.database_url)
    _migrate_when_reachable()
    return serve(
        app,
        host="0.0.0.0",
        port=settings.port,
        threads=settings.web_threads,
        shutdown_timeout=settings.web_shutdown_timeout,
        on_shutdown=close_connection,
        # Chunked bodies have no Content-Length for BodyLimit to check: waitress caps them too.
        max_request_body_size=settings.max_body_bytes,
    )


def _migrate_when_reachable() -> None:
    deadline = time.monotonic() + BOOT_DATABASE_DEADLINE
    while True:
        try:
            migrate(database)
            close_connection()
            return
        except UNAVAILABLE_ERRORS as exc:
            close_connection()
            if time.monotonic() > deadline:
                raise
            logger.warning("PostgreSQL is unavailable at boot (%s); retrying in 2 s.", exc)
            time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
