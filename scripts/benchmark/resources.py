"""The benchmark's own PostgreSQL database and Redis db number, and the counters read from them.

The Redis db is claimed with a marker key before anything else: a db holding keys that this
benchmark did not create is refused, never flushed. It is flushed only at the start (when a
previous run of the benchmark died and left it) and at the end. The database is created fresh
and migrated at the start and dropped at the end; the marker is what keeps two runs apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import psycopg2
import redis
from psycopg2 import sql

MARKER_KEY = "callboard:bench-run"


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


def bench_urls(database_url: str, redis_url: str, database: str, redis_db: int) -> tuple[str, str]:
    """``DATABASE_URL`` and ``REDIS_URL`` on the same servers, naming the bench's own database
    and Redis db number."""
    pg = urllib.parse.urlsplit(database_url)
    rd = urllib.parse.urlsplit(redis_url)
    return (
        urllib.parse.urlunsplit((pg.scheme, pg.netloc, f"/{database}", pg.query, "")),
        urllib.parse.urlunsplit((rd.scheme, rd.netloc, f"/{redis_db}", rd.query, "")),
    )


class BenchRedis:
    """The bench's Redis db: claimed with a marker, flushed only at the start and the end."""

    def __init__(self, url: str, run_id: str) -> None:
        self.url = url
        self.db = int(urllib.parse.urlsplit(url).path.lstrip("/") or 0)
        self.client = redis.Redis.from_url(url, socket_timeout=30)
        self.marker = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "run": run_id})
        self.claimed = False

    def claim(self) -> None:
        """Take the db for this run.

        Raises:
            BenchError: it holds keys this benchmark did not create, or another live run's.
        """
        if self.client.set(MARKER_KEY, self.marker, nx=True):
            if self.client.dbsize() == 1:
                self.claimed = True
                return
            self.client.delete(MARKER_KEY)
            raise BenchError(
                f"Redis db {self.db} holds {self.client.dbsize()} keys this benchmark did not "
                "create; pick an empty db with --redis-db."
            )
        owner = json.loads(self.client.get(MARKER_KEY) or "{}")
        if owner.get("host") == socket.gethostname() and not _alive(owner.get("pid")):
            print(
                f"bench: Redis db {self.db} was left by a benchmark run that died "
                f"(pid {owner.get('pid')}); flushing it.",
                file=sys.stderr,
            )
            self.client.flushdb()
            self.client.set(MARKER_KEY, self.marker)
            self.claimed = True
            return
        raise BenchError(
            f"Redis db {self.db} is in use by another benchmark run ({owner}); wait for it or "
            "pick another db with --redis-db."
        )

    def release(self) -> None:
        """Flush the db (ours: claimed at the start) and close the client."""
        if self.claimed and self.client.get(MARKER_KEY) == self.marker.encode():
            self.client.flushdb()
        self.claimed = False
        self.client.close()

    def clear_queues(self, namespace: str = "dramatiq") -> int:
        """Delete every Dramatiq key of ``namespace`` (queues, delay queues, acks): only while no
        worker runs. Returns how many keys went."""
        keys = list(self.client.scan_iter(match=f"{namespace}:*", count=1000))
        for start in range(0, len(keys), 500):
            self.client.unlink(*keys[start : start + 500])
        return len(keys)

    def connections_received(self) -> int:
        """Connections the Redis server accepted since it started (server-wide)."""
        return int(self.client.info("stats")["total_connections_received"])

    def server_pid(self) -> int:
        """The Redis server's process id (``INFO server``)."""
        return int(self.client.info("server")["process_id"])

    def client_ids(self) -> set[int]:
        """Ids of the connections open now on this db (not counting this client's own)."""
        own = self.client.client_id()
        return {
            int(c["id"])
            for c in self.client.client_list()
            if int(c.get("db", -1)) == self.db and int(c["id"]) != own
        }


class BenchDatabase:
    """The bench's PostgreSQL database: created and migrated, read, then dropped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.lstrip("/"))
        self.conn = None

    def create(self, root: Path) -> None:
        """Create the database afresh (dropping a leftover of a dead run) and migrate it with
        ``python -m models.migrate``, as ``scripts/migrate`` does."""
        with contextlib.closing(self._admin()) as admin, admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(self._ident()))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(self._ident()))
        done = subprocess.run(
            [sys.executable, "-m", "models.migrate"],
            cwd=root,
            env={**os.environ, "DATABASE_URL": self.url},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"Migrating {self.name} failed:\n{done.stderr}")
        self.conn = psycopg2.connect(self.url, application_name="callboard:bench")
        self.conn.autocommit = True

    def drop(self) -> None:
        """Drop the database (terminating any connection left to it)."""
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None
        with contextlib.closing(self._admin()) as admin, admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(self._ident()))

    def truncate(self) -> None:
        """Empty the ledger."""
        self._run("TRUNCATE tasks, task_events")

    def counts(self) -> tuple[int, int, int]:
        """``(all tasks, succeeded, failed or cancelled)``."""
        return self._one(
            "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'),"
            " count(*) FILTER (WHERE status IN ('failed', 'cancelled')) FROM tasks"
        )

    def last_finished(self) -> float:
        """Epoch seconds of the latest ``finished_at``."""
        return float(self._one("SELECT extract(epoch FROM max(finished_at)) FROM tasks")[0])

    def started_at(self, task_ids: list[str]) -> dict[str, float]:
        """Epoch seconds of ``started_at`` of each of ``task_ids`` that has started."""
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT id::text, extract(epoch FROM started_at) FROM tasks"
                " WHERE id = ANY(%s::uuid[]) AND started_at IS NOT NULL",
                (task_ids,),
            )
            return {task_id: float(at) for task_id, at in cur.fetchall()}

    def sessions(self) -> int:
        """Sessions ever opened to this database (``pg_stat_database.sessions``)."""
        return int(
            self._one("SELECT sessions FROM pg_stat_database WHERE datname = %s", (self.name,))[0]
        )

    def backend_pids(self) -> list[int]:
        """Process ids of the server backends connected to this database, but ours."""
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            )
            return [row[0] for row in cur.fetchall()]

    def _one(self, query: str, params: tuple = ()) -> tuple:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchone()

    def _run(self, query: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute(query)

    def _admin(self):
        conn = psycopg2.connect(self.url, dbname="postgres", connect_timeout=10)
        conn.autocommit = True
        return conn

    def _ident(self) -> sql.Identifier:
        return sql.Identifier(self.name)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
