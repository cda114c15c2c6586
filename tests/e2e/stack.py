"""A harness that runs Callboard's real processes from the Procfile, for end-to-end tests.

``Stack`` starts ``web``, ``worker`` and ``scheduler`` either under a real ``honcho start`` (as a
developer does) or each on its own, in its own session, so a test can signal one process *group*
the way honcho and a PaaS do (``SIGTERM`` to the group, ``kill -9``, a restart). Every process
writes its merged stdout/stderr to a file under the test's log directory; ``logs()`` returns them
for failure reports, and ``cleanup()`` kills whatever is still running.

The subprocesses inherit ``os.environ``, into which ``tests/conftest.py`` has put the session's
own ``DATABASE_URL`` and ``REDIS_URL``; the venv's ``bin`` comes first on ``PATH``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import requests
from honcho.environ import parse_procfile

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"
PROCESS_NAMES = ("web", "worker", "scheduler")
#: Settings that make the repair loop quick, for tests that do not measure its cadence.
FAST_REBALANCE_ENV = {"CALLBOARD_REBALANCE_PERIOD": "2", "CALLBOARD_RESEND_GRACE": "1"}
#: Lines of each log file that ``logs()`` returns by default.
DEFAULT_LOG_TAIL = 300
#: Environment variable that marks every process of one stack, so cleanup finds them all
#: (orphans included) and nothing else.
STACK_MARKER = "CALLBOARD_E2E_STACK"

T = TypeVar("T")

_HONCHO_STARTED = re.compile(r"\| (\w+)\.\d+ started \(pid=(\d+)\)")
_HONCHO_STOPPED = re.compile(r"\| (\w+)\.\d+ stopped \(rc=(-?\d+)\)")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.2,
    message: str | Callable[[], str] = "the condition",
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    Raises:
        AssertionError: ``timeout`` seconds passed first; names ``message`` (a string, or a
            callable giving one, evaluated at the deadline) and the last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError(
                f"Timed out after {timeout:g} s waiting for {what}; last {value!r}"
            )
        time.sleep(interval)


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile_commands(path: Path = PROCFILE) -> dict[str, str]:
    """The Procfile's commands by process name, parsed by honcho's own parser."""
    return dict(parse_procfile(path.read_text()).processes)


class Stack:
    """Callboard's processes as real subprocesses, with their logs and an HTTP client.

    ``start()`` runs Procfile commands one by one, each in a new session (its pid is its process
    group id); ``start_honcho()`` runs ``honcho start`` itself, in a new session of its own, which
    in turn puts every child in its own session. Names in ``signal_group()``, ``stop()`` and
    friends are Procfile process names, or ``"honcho"``.
    """

    def __init__(self, log_dir: Path, *, env: Mapping[str, str | None] | None = None) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()
        # tests/conftest.py puts the session's API token in the environment the web process gets.
        self.http.headers["Authorization"] = f"Bearer {os.environ['CALLBOARD_API_TOKEN']}"
        self.base_env = dict(env or {})
        self.commands = procfile_commands()
        self.processes: dict[str, subprocess.Popen] = {}
        self.log_files: list[Path] = []
        self._expected_exit: set[str] = set()
        self._starts: Counter[str] = Counter()
        self._honcho_log: Path | None = None
        self.stack_id = uuid.uuid4().hex

    # -- starting ---------------------------------------------------------------------------

    def define(self, name: str, command: str) -> None:
        """Add (or replace) a process ``name`` that runs the shell ``command``, as a Procfile
        line would: e.g. a second worker, or a worker that also imports a test-only module."""
        self.commands[name] = command

    def environment(self, extra_env: Mapping[str, str | None] | None = None) -> dict[str, str]:
        """The environment every subprocess gets: ours, the stack's, then ``extra_env``, where a
        ``None`` value removes the variable."""
        env = os.environ.copy()
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"  # log lines reach the files as they happen
        env["PORT"] = str(self.port)
        env[STACK_MARKER] = self.stack_id
        for key, value in {**self.base_env, **(extra_env or {})}.items():
            if value is None:
                env.pop(key, None)  # None unsets: the process sees the built-in default
            else:
                env[key] = value
        return env

    def start(
        self,
        which: Iterable[str] = PROCESS_NAMES,
        extra_env: Mapping[str, str | None] | None = None,
    ) -> None:
        """Start each named Procfile process on its own, in a new session (process group)."""
        env = self.environment(extra_env)
        for name in which:
            if self.is_running(name):
                raise RuntimeError(f"{name} is already running (pid {self.processes[name].pid})")
            log = self._new_log(name)
            with log.open("ab") as out:
                self.processes[name] = subprocess.Popen(
                    self.commands[name],
                    shell=True,  # the Procfile's ${VAR:-default} and exec need a shell
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._expected_exit.discard(name)

    def start_honcho(
        self,
        which: Iterable[str] = (),
        extra_env: Mapping[str, str | None] | None = None,
    ) -> None:
        """Run ``honcho start [which...]`` on our Procfile, with the web process on ``self.port``.

        honcho lets ``PORT`` from its env file override both ``-p`` and the environment (see
        ``honcho.environ.expand_processes``), and the repository's ``.env`` says 8080, so honcho
        gets an env file of our own that names our port and nothing else. It runs the repository's
        Procfile, or a copy of it if a test changed ``self.commands``.
        """
        if self.is_running("honcho"):
            raise RuntimeError("honcho is already running")
        env_file = self.log_dir / "honcho.env"
        env_file.write_text(f"PORT={self.port}\n")
        procfile = PROCFILE
        if self.commands != procfile_commands():
            # A test changed a command (e.g. added a flag): honcho runs a copy with the change.
            procfile = self.log_dir / "Procfile"
            procfile.write_text("".join(f"{n}: {c}\n" for n, c in self.commands.items()))
        log = self._new_log("honcho")
        self._honcho_log = log
        with log.open("ab") as out:
            self.processes["honcho"] = subprocess.Popen(
                ["honcho", "start", "--no-colour", "-f", str(procfile), "-e", str(env_file)]
                + list(which),
                cwd=ROOT,
                env=self.environment(extra_env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._expected_exit.discard("honcho")

    # -- observing ---------------------------------------------------------------------------

    def is_running(self, name: str) -> bool:
        """Whether the process ``name`` was started and has not exited."""
        proc = self.processes.get(name)
        return proc is not None and proc.poll() is None

    def pid(self, name: str) -> int:
        """The pid (and process group id) of ``name``; under honcho, from honcho's log."""
        if name in self.processes:
            return self.processes[name].pid
        pids = self.honcho_child_pids()
        if name in pids:
            return pids[name]
        raise KeyError(f"{name} was not started")

    def honcho_child_pids(self) -> dict[str, int]:
        """The pid of each honcho child, from honcho's "web.1 started (pid=N)" lines."""
        return {m[1]: int(m[2]) for m in _HONCHO_STARTED.finditer(self._read(self._honcho_log))}

    def honcho_exit_codes(self) -> dict[str, int]:
        """The exit code of each honcho child that stopped, from "web.1 stopped (rc=N)" lines."""
        return {m[1]: int(m[2]) for m in _HONCHO_STOPPED.finditer(self._read(self._honcho_log))}

    def unexpected_exits(self) -> dict[str, int]:
        """Processes that exited although no test asked them to, with their exit codes."""
        return {
            name: proc.returncode
            for name, proc in self.processes.items()
            if name not in self._expected_exit and proc.poll() is not None
        }

    def logs(self, tail: int = DEFAULT_LOG_TAIL) -> str:
        """The last ``tail`` lines of every log file, each under a header naming it."""
        parts = []
        for path in self.log_files:
            lines = self._read(path).splitlines()
            skipped = f" (last {tail} of {len(lines)} lines)" if len(lines) > tail else ""
            parts.append(f"===== {path}{skipped} =====\n" + "\n".join(lines[-tail:]))
        return "\n".join(parts)

    def log_text(self, name: str) -> str:
        """Everything process ``name`` (or ``"honcho"``) logged, over all its starts."""
        return "".join(
            self._read(p) for p in self.log_files if p.name.split(".")[0] == name.split(".")[0]
        )

    def wait_workers(self, count: int, timeout: float = 30.0) -> list[dict]:
        """Wait until ``GET /workers`` lists ``count`` live worker processes; return them.

        A worker process publishes its first heartbeat once it has booted, just before its
        threads start taking messages.
        """

        def workers() -> list[dict] | None:
            found = self.get("/workers").json()["workers"]
            return found if len(found) == count else None

        return self.wait_until(workers, timeout=timeout, message=f"{count} live workers")

    def wait_until(
        self,
        predicate: Callable[[], T],
        *,
        timeout: float,
        interval: float = 0.2,
        message: str | Callable[[], str] = "the condition",
    ) -> T:
        """``wait_until``, but failing at once if a process of the stack exits unexpectedly."""

        def check() -> T:
            dead = self.unexpected_exits()
            if dead:
                raise AssertionError(
                    f"Processes exited unexpectedly {dead} while waiting for "
                    f"{message() if callable(message) else message}."
                )
            return predicate()

        return wait_until(check, timeout=timeout, interval=interval, message=message)

    # -- HTTP ---------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on the web process."""
        return self.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET ``path`` (5 s timeout unless given)."""
        return self.http.get(self.url(path), timeout=kwargs.pop("timeout", 5), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST to ``path`` (5 s timeout unless given)."""
        return self.http.post(self.url(path), timeout=kwargs.pop("timeout", 5), **kwargs)

    def wait_http_ready(self, timeout: float = 30.0) -> dict:
        """Wait until ``GET /readyz`` answers 200; return its body."""

        def ready() -> dict | None:
            try:
                response = self.get("/readyz", timeout=2)
            except requests.RequestException:
                return None
            return response.json() if response.status_code == 200 else None

        return self.wait_until(ready, timeout=timeout, message=f"{self.url('/readyz')} to be 200")

    # -- signalling and stopping --------------------------------------------------------------

    def signal_group(self, name: str, signum: int) -> None:
        """Send ``signum`` to the process group of ``name``, as honcho or a PaaS would."""
        self._expected_exit.add(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid(name), signum)

    def kill(self, name: str) -> int | None:
        """``kill -9`` the process group of ``name``; return its exit code once reaped."""
        self.signal_group(name, signal.SIGKILL)
        return self.wait_exit(name, timeout=10) if name in self.processes else None

    def wait_exit(self, name: str, timeout: float) -> int:
        """Wait for process ``name`` to exit; return its exit code (-N if killed by signal N).

        Raises:
            AssertionError: it is still running after ``timeout`` seconds.
        """
        self._expected_exit.add(name)
        try:
            return self.processes[name].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} did not exit within {timeout:g} s") from None

    def stop(
        self,
        which: Iterable[str] | None = None,
        *,
        signum: int = signal.SIGTERM,
        timeout: float = 15.0,
    ) -> dict[str, int]:
        """Signal each named process group (default: all running), wait for every one within
        ``timeout`` seconds in total, and return their exit codes."""
        names = [n for n in (which or list(self.processes)) if self.is_running(n)]
        for name in names:
            self.signal_group(name, signum)
        deadline = time.monotonic() + timeout
        return {n: self.wait_exit(n, max(deadline - time.monotonic(), 0.01)) for n in names}

    def stop_honcho(self, *, signum: int = signal.SIGINT, timeout: float = 15.0) -> int:
        """Signal honcho's process group (``SIGINT`` is what Ctrl+C sends), wait, return its
        exit code. Its children's codes are then in ``honcho_exit_codes()``."""
        return self.stop(["honcho"], signum=signum, timeout=timeout)["honcho"]

    def cleanup(self) -> None:
        """Kill (``SIGKILL``) every process this stack started that is still there: each one
        carries this stack's marker in its environment, so orphans (the children of a honcho
        killed with -9, say) are found too, and no other process is touched."""
        deadline = time.monotonic() + 10
        while (pids := marked_pids(self.stack_id)) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.http.close()

    # -- private ------------------------------------------------------------------------------

    def _new_log(self, name: str) -> Path:
        self._starts[name] += 1
        count = self._starts[name]
        path = self.log_dir / (f"{name}.log" if count == 1 else f"{name}.{count}.log")
        self.log_files.append(path)
        return path

    @staticmethod
    def _read(path: Path | None) -> str:
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")


def child_pids(pid: int) -> list[int]:
    """The pids of the live children of ``pid`` (Linux ``/proc``)."""
    return sorted(child for child, (parent, _) in _process_table().items() if parent == pid)


def marked_pids(stack_id: str) -> list[int]:
    """The pids of live processes whose environment carries ``STACK_MARKER=stack_id``."""
    marker = f"{STACK_MARKER}={stack_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                environ = (entry / "environ").read_bytes()
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone, or not ours to read
            zombie = stat[stat.rindex(")") + 2] == "Z"  # dead already, waiting to be reaped
            if marker in environ.split(b"\0") and not zombie:
                found.append(int(entry.name))
    return found


def group_pids(pgid: int) -> list[int]:
    """The pids of the live processes in process group ``pgid`` (Linux ``/proc``)."""
    return sorted(pid for pid, (_, group) in _process_table().items() if group == pgid)


def _process_table() -> dict[int, tuple[int, int]]:
    """``{pid: (parent pid, process group id)}`` for every live process, from ``/proc``."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table
