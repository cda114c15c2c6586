"""Throwaway Redis and PostgreSQL servers that a fault test may stop, kill and restart.

A test that takes a server down owns it: each one runs on a free port of its own, in a temporary
directory, and is gone after the test. The machine's shared servers (5432, 6379), which other
sessions use, are never touched.

- ``RedisServer``: a ``redis-server`` that keeps nothing on disk, like Callboard's production
  Redis, so a restart comes back empty; given a certificate and key, it speaks TLS only
  (``rediss://``), as Heroku Redis does.
- ``PostgresCluster``: a cluster made with ``initdb`` and run with ``pg_ctl`` as the ``postgres``
  user (PostgreSQL refuses to run as root), with trust authentication on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg2
import redis

from tests.e2e.stack import free_port, wait_until

#: Where Debian's PostgreSQL 15 keeps its server programs.
POSTGRES_BIN = Path(os.environ.get("CALLBOARD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: The operating-system user PostgreSQL runs as (and the cluster's superuser).
POSTGRES_USER = "postgres"
#: Seconds a server may take to start answering.
START_TIMEOUT = 30.0


class RedisServer:
    """A ``redis-server`` on a free port that keeps nothing on disk.

    With ``tls_cert_file`` and ``tls_key_file`` (PEM), it listens for TLS only: its ``url`` is
    ``rediss://``, plain TCP is off, and clients need no certificate of their own. The
    certificate is also its CA file, so a self-signed one works as it does on Heroku Redis.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        tls_cert_file: Path | None = None,
        tls_key_file: Path | None = None,
    ) -> None:
        if (tls_cert_file is None) != (tls_key_file is None):
            raise ValueError("TLS needs both tls_cert_file and tls_key_file")
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_cert_file = tls_cert_file
        self.tls_key_file = tls_key_file
        self.tls = tls_cert_file is not None
        self.url = f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"
        self.log_path = work_dir / "redis.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        """Start the server (empty: it keeps nothing on disk) and wait until it answers PING."""
        if self.is_running():
            raise RuntimeError(f"redis-server is already running on port {self.port}")
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    *self._listen_options(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.work_dir),
                ],  # fmt: skip
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._started, timeout=START_TIMEOUT, interval=0.02, message="redis-server")

    def _listen_options(self) -> list[str]:
        if not self.tls:
            return ["--port", str(self.port)]
        return [
            "--port", "0",  # no plain TCP: TLS only
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls_cert_file),
            "--tls-key-file", str(self.tls_key_file),
            "--tls-ca-cert-file", str(self.tls_cert_file),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def _started(self) -> bool:
        # A server that exited (a bad option, say, or a build without TLS) fails at once, with
        # its log, instead of after the whole start timeout.
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"redis-server exited with code {self.process.returncode} at start; its log:\n"
                + self.log_path.read_text(errors="replace")[-4000:]
            )
        return self._answers()

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would; every message it held is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart_empty(self) -> None:
        """Kill the server and start it again, empty."""
        self.kill()
        self.start()

    def is_running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def client(self) -> redis.Redis:
        """A client for this server (the caller closes it); over TLS, it accepts the server's
        certificate unverified."""
        tls = {"ssl_cert_reqs": "none"} if self.tls else {}
        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5, **tls)

    def _answers(self) -> bool:
        client = self.client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


class PostgresCluster:
    """A PostgreSQL cluster of our own, on a free port, that a test may stop and start again."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="callboard-pg-"))
        if os.geteuid() == 0:  # the server runs as postgres, which must own its directory
            account = pwd.getpwnam(POSTGRES_USER)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.base_url = f"postgresql://{POSTGRES_USER}@127.0.0.1:{self.port}"
        #: The database Callboard's processes use (``create_database()`` makes it).
        self.database = "callboard"
        self.database_url = self.url(self.database)
        self._pg(
            "initdb", "--pgdata", str(self.data_dir), "--username", POSTGRES_USER,
            "--auth", "trust", "--no-sync", "--encoding", "UTF8", "--no-instructions",
        )  # fmt: skip

    def url(self, database: str) -> str:
        """The ``DATABASE_URL`` of ``database`` on this cluster."""
        return f"{self.base_url}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg(
            "pg_ctl", "--pgdata", str(self.data_dir), "--log", str(self.log_path),
            "--options", options, "--wait", "--timeout", str(int(START_TIMEOUT)), "start",
        )  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; ``immediate`` (the default) drops every connection as a crash would."""
        self._pg("pg_ctl", "--pgdata", str(self.data_dir), "--mode", mode, "--wait", "stop")

    def is_running(self) -> bool:
        """Whether the server answers ``pg_ctl status``."""
        status = subprocess.run(
            self._as_postgres("pg_ctl", "--pgdata", str(self.data_dir), "status"),
            capture_output=True,
        )
        return status.returncode == 0

    def create_database(self, name: str | None = None) -> None:
        """Create an empty database (``self.database`` unless named); Callboard's processes
        migrate it at boot."""
        name = name or self.database
        conn = psycopg2.connect(self.url("postgres"), connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def connect(self, database: str | None = None):
        """A psycopg2 connection to ``database`` (``self.database`` unless named), in autocommit
        mode; the caller closes it."""
        conn = psycopg2.connect(self.url(database or self.database), connect_timeout=5)
        conn.autocommit = True
        return conn

    def destroy(self) -> None:
        """Stop the server if it runs and remove the cluster's files."""
        if self.data_dir.exists() and self.is_running():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """The server's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _pg(self, program: str, *args: str) -> None:
        subprocess.run(self._as_postgres(program, *args), check=True, capture_output=True)

    @staticmethod
    def _as_postgres(program: str, *args: str) -> list[str]:
        command = [str(POSTGRES_BIN / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", POSTGRES_USER, "--", *command]
        return command
