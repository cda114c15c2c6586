"""How the CLI prints tasks, lists, stats and a live progress bar."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TextIO

#: Width of the progress bar, in characters.
BAR_WIDTH = 30


def task_summary(task: dict) -> str:
    """A few readable lines about one task."""
    lines = [
        f"{task['id']}  type {task['type']}  {task['status']}  progress {task['progress']}%",
        f"  attempts {task['attempts']}  recoveries {task['recoveries']}  "
        f"created {task['created_at']}",
        f"  payload {json.dumps(task['payload'], sort_keys=True)}",
    ]
    if task.get("run_at"):
        lines.append(f"  due {task['run_at']}")
    if task.get("result") is not None:
        lines.append(f"  result {json.dumps(task['result'], sort_keys=True)}")
    if task.get("error"):
        lines.append(f"  error {task['error']}")
    return "\n".join(lines)


def task_table(tasks: list[dict]) -> str:
    """One line per task: id, type, status, progress, duration, created."""
    rows = [("ID", "TYPE", "STATUS", "PROGRESS", "DURATION", "CREATED")]
    for task in tasks:
        rows.append(
            (
                task["id"],
                task["type"],
                task["status"],
                f"{task['progress']}%",
                duration(task),
                task["created_at"][:19].replace("T", " "),
            )
        )
    return _table(rows)


def stats_text(stats: dict) -> str:
    """Queues, task counts and workers."""
    queue_rows = [("QUEUE", "WAITING", "DELAYED", "IN FLIGHT", "DEAD-LETTERED")]
    for name, q in sorted(stats["queues"].items()):
        queue_rows.append(
            (
                name,
                str(q["waiting"]),
                str(q["delayed"]),
                str(q["in_flight"]),
                str(q["dead_lettered"]),
            )
        )
    task_rows = [("TYPE", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")]
    for task_type, counts in sorted(stats["tasks"].items()):
        task_rows.append(
            (
                task_type,
                *(
                    str(counts.get(s, 0))
                    for s in ("queued", "running", "succeeded", "failed", "cancelled")
                ),
            )
        )
    worker_rows = [("WORKER", "LAST BEAT", "HELD", "PROCESSED")]
    for worker in stats["workers"]:
        worker_rows.append(
            (
                worker["worker_id"],
                f"{worker['age_s']:.1f}s ago",
                str(len(worker["held"])),
                str(worker["processed"]),
            )
        )
    for dead in stats["dead_workers"]:
        worker_rows.append((dead, "DEAD (tasks will be recovered)", "-", "-"))
    return "\n\n".join([_table(queue_rows), _table(task_rows), _table(worker_rows)])


def progress_line(task: dict) -> str:
    """``[#######-----]  42%  running`` for one task."""
    filled = round(BAR_WIDTH * task["progress"] / 100)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    return f"[{bar}] {task['progress']:3d}%  {task['status']}"


def show_progress(out: TextIO, task: dict, *, live: bool) -> None:
    """Redraw the progress line in place on a terminal, or print it when it changes."""
    if live:
        out.write("\r" + progress_line(task))
    else:
        out.write(progress_line(task) + "\n")
    out.flush()


def duration(task: dict) -> str:
    """How long the task ran (or has been running), e.g. ``1.52s``; empty if not started."""
    if not task.get("started_at"):
        return ""
    start = datetime.fromisoformat(task["started_at"])
    end_text = task.get("finished_at")
    end = datetime.fromisoformat(end_text) if end_text else datetime.now(start.tzinfo)
    return f"{(end - start).total_seconds():.2f}s"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
