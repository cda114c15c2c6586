"""Schema migrations: an ordered list of SQL steps, applied once each under an advisory lock.

Every process calls ``migrate()`` at boot, and ``python -m models.migrate`` (``scripts/migrate``)
runs it explicitly. A PostgreSQL advisory lock serializes concurrent boots, so the web process,
the workers and the scheduler may all start at once. Steps are append-only: never edit one that
has shipped; add a new one.
"""

from __future__ import annotations

import logging
import sys

from peewee import PostgresqlDatabase

#: Key of the advisory lock that serializes migrations (any constant unique to Callboard).
MIGRATION_LOCK_KEY = 0x0CA11B0A

MIGRATIONS: list[str] = [
    # 1: the ledger.
    """
    CREATE TABLE tasks (
        id uuid PRIMARY KEY,
        type text NOT NULL,
        status text NOT NULL
            CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
        payload jsonb NOT NULL,
        result jsonb,
        error text,
        progress smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
        attempts integer NOT NULL DEFAULT 0,
        recoveries integer NOT NULL DEFAULT 0,
        worker text,
        cancel_requested boolean NOT NULL DEFAULT false,
        idempotency_key text UNIQUE,
        run_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        queued_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        finished_at timestamptz
    );
    CREATE INDEX tasks_newest_first ON tasks (created_at DESC, id DESC);
    CREATE INDEX tasks_by_status ON tasks (status, created_at DESC, id DESC);
    CREATE INDEX tasks_by_type ON tasks (type, created_at DESC, id DESC);
    CREATE INDEX tasks_queued ON tasks (queued_at) WHERE status = 'queued';
    CREATE INDEX tasks_running ON tasks (worker) WHERE status = 'running';

    CREATE TABLE task_events (
        id bigserial PRIMARY KEY,
        task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        kind text NOT NULL,
        worker text,
        detail jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX task_events_by_task ON task_events (task_id, id);

    CREATE TABLE rebalance_runs (
        id bigserial PRIMARY KEY,
        started_at timestamptz NOT NULL,
        duration_ms double precision NOT NULL,
        resent integer NOT NULL DEFAULT 0,
        recovered integer NOT NULL DEFAULT 0,
        poisoned integer NOT NULL DEFAULT 0,
        dead_workers jsonb NOT NULL DEFAULT '[]',
        detail jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX rebalance_runs_newest_first ON rebalance_runs (started_at DESC);
    """,
    # 2: idempotency keys remember the request they were first used with.
    """
    ALTER TABLE tasks ADD COLUMN request_hash text;
    """,
    # 3: fewer index entries per status change. Every transition writes a new row version into
    # every index of tasks; most tasks have no idempotency key, so index only those that do, and
    # listing by type scans the newest-first index instead of keeping one of its own.
    """
    ALTER TABLE tasks DROP CONSTRAINT tasks_idempotency_key_key;
    CREATE UNIQUE INDEX tasks_idempotency_key ON tasks (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    DROP INDEX tasks_by_type;
    """,
]

logger = logging.getLogger("callboard.migrate")


def migrate(db: PostgresqlDatabase) -> int:
    """Apply every step not applied yet; return how many were applied. Safe to run concurrently."""
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        db.execute_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        (current,) = db.execute_sql(
            "SELECT coalesce(max(version), 0) FROM schema_migrations"
        ).fetchone()
        for version, sql in enumerate(MIGRATIONS[current:], start=current + 1):
            logger.info("Applying schema migration %r.", version)
            db.execute_sql(sql)
            db.execute_sql("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
    return len(MIGRATIONS) - current


def main() -> int:
    """Migrate the database named by ``DATABASE_URL``; the entry point of ``scripts/migrate``."""
    from models.db import init_database
    from settings import get_settings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    db = init_database(get_settings().database_url, application_name="callboard:migrate")
    applied = migrate(db)
    logger.info("Schema is up to date (%d migration(s) applied now).", applied)
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
