"""The database connection, built from ``DATABASE_URL``.

peewee's plain ``PostgresqlDatabase`` keeps one connection per thread and reuses it for every
request or message that thread handles. We chose it over ``PooledPostgresqlDatabase`` because that
pool runs a ``SELECT 1`` under a process-wide lock at each checkout (measured: ~40 % of the web
process's time). A connection broken by a PostgreSQL restart is dropped by
``drop_broken_connection`` so that the thread's next query reconnects.
"""

from __future__ import annotations

import contextlib
import os
import socket

import peewee
import psycopg2
from peewee import PostgresqlDatabase
from playhouse.db_url import parse

#: Seconds to wait for a TCP connection: a down database must fail fast, not hang a request.
DEFAULT_CONNECT_TIMEOUT = 5

#: The errors that mean "the database is unreachable or the connection is gone" (peewee re-raises
#: psycopg2's as its own classes of the same names).
UNAVAILABLE_ERRORS = (
    peewee.OperationalError,
    peewee.InterfaceError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
)

database = PostgresqlDatabase(None)


def connection_parameters(url: str, *, application_name: str = "callboard") -> dict:
    """Return psycopg2 connection keywords for a ``postgres://`` or ``postgresql://`` URL."""
    params = parse(url)
    params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    params.setdefault("application_name", application_name)
    # Detect a dead server on an idle connection in tens of seconds, not hours.
    params.setdefault("keepalives", 1)
    params.setdefault("keepalives_idle", 30)
    return params


def init_database(url: str, *, application_name: str | None = None) -> PostgresqlDatabase:
    """Point the shared ``database`` at ``url`` (idempotent) and return it."""
    name = application_name or f"callboard:{socket.gethostname()}:{os.getpid()}"
    params = connection_parameters(url, application_name=name)
    database_name = params.pop("database")
    database.init(database_name, **params)
    return database


def drop_broken_connection(db: PostgresqlDatabase = database) -> None:
    """Forget this thread's connection after an error so the next query opens a fresh one."""
    if db.is_closed():
        return
    with contextlib.suppress(Exception):
        db.connection().close()
    db.dispose()


def close_connection(db: PostgresqlDatabase = database) -> None:
    """Close this thread's connection cleanly, ignoring one that is already broken."""
    try:
        db.close()
    except Exception:  # noqa: BLE001 - a broken connection is closed either way
        db.dispose()
