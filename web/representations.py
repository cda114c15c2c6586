"""The JSON shape of ledger rows in API answers."""

from __future__ import annotations

from datetime import datetime

from models.tables import RebalanceRun, Task, TaskEvent


def task_json(task: Task) -> dict:
    """A task as clients see it."""
    return {
        "id": str(task.id),
        "type": task.type,
        "status": task.status,
        "payload": task.payload,
        "result": task.result,
        "error": task.error,
        "progress": task.progress,
        "attempts": task.attempts,
        "recoveries": task.recoveries,
        "worker": task.worker,
        "cancel_requested": task.cancel_requested,
        "run_at": _time(task.run_at),
        "created_at": _time(task.created_at),
        "started_at": _time(task.started_at),
        "finished_at": _time(task.finished_at),
        "links": {"self": f"/tasks/{task.id}", "events": f"/tasks/{task.id}/events"},
    }


def event_json(event: TaskEvent) -> dict:
    """One line of a task's history."""
    return {
        "at": _time(event.at),
        "kind": event.kind,
        "worker": event.worker,
        "detail": event.detail,
    }


def rebalance_run_json(run: RebalanceRun) -> dict:
    """What one repair pass did."""
    return {
        "started_at": _time(run.started_at),
        "duration_ms": round(run.duration_ms, 3),
        "resent": run.resent,
        "recovered": run.recovered,
        "poisoned": run.poisoned,
        "dead_workers": run.dead_workers,
        "detail": run.detail,
    }


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
