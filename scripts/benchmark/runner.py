"""The processes the benchmark starts: each in its own session, marked, logged, and always stopped.

Every process gets ``CALLBOARD_BENCH_RUN=<run id>`` in its environment and a new session (its
pid is its process group id). ``stop()`` signals a group and escalates to ``SIGKILL``;
``cleanup()`` does that for every group, then kills any process still carrying the run's marker
(a child that left its group), and nothing else. ``/proc`` readers give the process tree, peak
RSS (``VmHWM``) and CPU time of what was started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

MARKER = "CALLBOARD_BENCH_RUN"
#: Seconds a process group gets between SIGTERM and SIGKILL.
DEFAULT_STOP_TIMEOUT = 15.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Runner:
    """Starts named processes and guarantees they are gone after ``cleanup()``."""

    def __init__(self, log_dir: Path, run_id: str, base_env: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        self.run_id = run_id
        self.base_env = {**base_env, MARKER: run_id, "PYTHONUNBUFFERED": "1"}
        self.processes: dict[str, subprocess.Popen] = {}
        self.log_paths: dict[str, Path] = {}

    def start(
        self,
        name: str,
        command: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen:
        """Start ``command`` (a shell line, as in a Procfile, or an argv list) as ``name``, with
        stdout and stderr in ``<log_dir>/<name>.log``."""
        if self.is_running(name):
            raise RuntimeError(f"{name} is already running")
        log = self.log_dir / f"{name}.log"
        self.log_paths[name] = log
        with log.open("ab") as out:
            proc = subprocess.Popen(
                command,
                shell=isinstance(command, str),
                cwd=cwd,
                env={**self.base_env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = proc
        return proc

    def is_running(self, name: str) -> bool:
        """Whether ``name`` was started and has not exited."""
        proc = self.processes.get(name)
        return proc is not None and proc.poll() is None

    def pid(self, name: str) -> int:
        """The pid (and process group id) of ``name``."""
        return self.processes[name].pid

    def log_text(self, name: str) -> str:
        """Everything ``name`` wrote so far."""
        path = self.log_paths.get(name)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def signal(self, name: str, signum: int) -> None:
        """Send ``signum`` to the process ``name`` only (not its group)."""
        with contextlib.suppress(ProcessLookupError):
            self.processes[name].send_signal(signum)

    def stop(self, name: str, *, timeout: float = DEFAULT_STOP_TIMEOUT) -> int | None:
        """SIGTERM the group of ``name``, SIGKILL it after ``timeout`` s; return the exit code."""
        proc = self.processes.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            _killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        _killpg(proc.pid, signal.SIGKILL)  # whatever of the group outlived its leader
        return proc.returncode

    def cleanup(self) -> None:
        """Stop every process started (in reverse order), then kill anything left with the
        run's marker, e.g. a child that escaped its group."""
        for name in reversed(list(self.processes)):
            with contextlib.suppress(Exception):
                self.stop(name, timeout=10)
        deadline = time.monotonic() + 10
        while (pids := marked_pids(self.run_id)) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)


def marked_pids(run_id: str) -> list[int]:
    """Live (not zombie) processes whose environment has ``CALLBOARD_BENCH_RUN=run_id``."""
    marker = f"{MARKER}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if marker in environ.split(b"\0") and stat[stat.rindex(")") + 2] != "Z":
            found.append(int(entry.name))
    return found


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            tree.append(pid)
            todo.extend(children.get(pid, ()))
    return sorted(tree)


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident set size (``VmHWM``) of ``pid`` in MiB, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds ``pid`` has used, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def command_line(pid: int) -> str:
    """The command line of ``pid``, space-separated ("" if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _killpg(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
