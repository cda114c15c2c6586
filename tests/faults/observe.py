"""What fault tests measure: task histories over HTTP, CPU use of a process group, log rates."""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from tests.e2e.stack import Stack, group_pids

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- task histories ---------------------------------------------------------------------------


def events(stack: Stack, task_id: str) -> list[dict]:
    """A task's history, oldest first, each event's ``at`` parsed to a ``datetime``."""
    response = stack.get(f"/tasks/{task_id}/events")
    assert response.status_code == 200, response.text
    found = response.json()["events"]
    for event in found:
        event["at"] = datetime.fromisoformat(event["at"])
    return found


def histories(stack: Stack, task_ids: list[str]) -> dict[str, list[dict]]:
    """The history of each task, by id."""
    return {task_id: events(stack, task_id) for task_id in task_ids}


def assert_each_succeeded_exactly_once(stack: Stack, finished: dict[str, dict]) -> None:
    """Every task succeeded, with exactly one ``succeeded`` event and nothing final after it."""
    statuses = Counter(body["status"] for body in finished.values())
    assert statuses == {"succeeded": len(finished)}, statuses
    for task_id, history in histories(stack, list(finished)).items():
        kinds = [event["kind"] for event in history]
        assert Counter(kinds)["succeeded"] == 1, (task_id, kinds)
        assert kinds[-1] == "succeeded", (task_id, kinds)
        assert not {"failed", "cancelled"} & set(kinds), (task_id, kinds)


def first(history: list[dict], kind: str, *, after: datetime | None = None) -> dict | None:
    """The first event of ``kind`` (at or after ``after``, if given), or ``None``."""
    for event in history:
        if event["kind"] == kind and (after is None or event["at"] >= after):
            return event
    return None


def ledger_statuses(db, task_ids: list[str]) -> Counter:
    """How many of ``task_ids`` the ledger holds in each status (read directly, in bulk)."""
    rows = db.execute_sql("SELECT status FROM tasks WHERE id = ANY(%s::uuid[])", (task_ids,))
    return Counter(status for (status,) in rows)


def ledger_event_counts(db, task_ids: list[str], kind: str) -> Counter:
    """How many events of ``kind`` each of ``task_ids`` has (0 for none), read in bulk."""
    rows = db.execute_sql(
        "SELECT task_id::text, count(*) FROM task_events"
        " WHERE task_id = ANY(%s::uuid[]) AND kind = %s GROUP BY task_id",
        (task_ids, kind),
    )
    counts = Counter(dict.fromkeys(task_ids, 0))
    counts.update(dict(rows))
    return counts


# -- processes --------------------------------------------------------------------------------


def cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by the live processes of process group ``pgid``."""
    total = 0
    for pid in group_pids(pgid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _CLOCK_TICKS


class CpuMeter:
    """CPU share (1.0 = one core busy) of each named process group of a stack over a window."""

    def __init__(self, stack: Stack, names: list[str]) -> None:
        self.stack = stack
        self.names = names
        self.started = time.monotonic()
        self.start = {name: cpu_seconds(stack.pid(name)) for name in names}

    def shares(self) -> dict[str, float]:
        """Each group's CPU seconds since the meter started, divided by the seconds elapsed."""
        elapsed = time.monotonic() - self.started
        return {
            name: round((cpu_seconds(self.stack.pid(name)) - self.start[name]) / elapsed, 3)
            for name in self.names
        }


class LogWindow:
    """The lines each process of a stack logs from now on (``lines()``), for rate checks."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started = time.monotonic()
        self.offsets = {path: _size(path) for path in stack.log_files}

    def lines(self, name: str) -> list[str]:
        """Every line that process ``name`` logged since the window opened."""
        found = []
        for path in self.stack.log_files:
            if path.name.split(".")[0] != name:
                continue
            with path.open("rb") as log:
                log.seek(self.offsets.get(path, 0))
                found.extend(log.read().decode(errors="replace").splitlines())
        return found

    def rate(self, name: str, pattern: str = "") -> float:
        """Lines per second that process ``name`` logged since the window opened (only those
        matching the regular expression ``pattern``, if given)."""
        matching = [line for line in self.lines(name) if re.search(pattern, line)]
        return len(matching) / (time.monotonic() - self.started)


#: Log lines about a Redis outage name Redis or the connection; access-log lines do not count.
_OUTAGE_LINE = re.compile(r"(?i)redis|connect")
_ACCESS_LINE = re.compile(r"callboard\.access")
_PID = re.compile(r"\w\[(\d+)\]|\[PID (\d+)\]")
_RETRY_IN = re.compile(r"retries in ([\d.]+) s")


def outage_lines(window: LogWindow, name: str) -> list[str]:
    """The log records about a Redis outage that process ``name`` wrote in ``window``, one string
    per record (a record's continuation lines, which start with blanks, are joined to it)."""
    records: list[str] = []
    for line in window.lines(name):
        if line[:1].isspace() and records:
            records[-1] += "\n" + line
        else:
            records.append(line)
    return [r for r in records if _OUTAGE_LINE.search(r) and not _ACCESS_LINE.search(r)]


def retry_delays_by_pid(lines: list[str]) -> dict[int, list[float]]:
    """The successive "retries in N s" delays each process announced, by pid."""
    delays: dict[int, list[float]] = {}
    for line in lines:
        pid, delay = _PID.search(line), _RETRY_IN.search(line)
        if pid and delay:
            delays.setdefault(int(pid[1] or pid[2]), []).append(float(delay[1]))
    return delays


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
