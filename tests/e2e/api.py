"""Callboard's HTTP API as the end-to-end tests use it, and the ledger read directly."""

from __future__ import annotations

from collections import Counter

from .stack import Stack

#: Statuses a task does not leave on its own.
FINAL = ("succeeded", "failed", "cancelled")


def submit(stack: Stack, task_type: str, payload: dict) -> str:
    """POST one task; return its id."""
    response = stack.post("/tasks", json={"type": task_type, "payload": payload})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued", body
    return body["id"]


def task(stack: Stack, task_id: str) -> dict:
    """GET one task."""
    response = stack.get(f"/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return response.json()


def event_kinds(stack: Stack, task_id: str) -> list[str]:
    """The kinds of a task's events, oldest first."""
    response = stack.get(f"/tasks/{task_id}/events")
    assert response.status_code == 200, response.text
    return [event["kind"] for event in response.json()["events"]]


def wait_all_final(stack: Stack, task_ids: list[str], *, timeout: float) -> dict[str, dict]:
    """Poll each task over HTTP until every one is in a final status; return them by id."""
    done: dict[str, dict] = {}

    def all_final() -> bool:
        for task_id in task_ids:
            if task_id not in done:
                body = task(stack, task_id)
                if body["status"] in FINAL:
                    done[task_id] = body
        return len(done) == len(task_ids)

    stack.wait_until(
        all_final,
        timeout=timeout,
        interval=0.25,
        message=lambda: (
            f"all tasks to finish; {len(task_ids) - len(done)} still pending: "
            f"{Counter(task(stack, t)['status'] for t in task_ids if t not in done)}"
        ),
    )
    return done


def ledger_statuses(task_ids: list[str]) -> dict[str, str]:
    """Each task's status read from the ledger's rows (for when the web process is down)."""
    from models.tables import Task

    return {str(t.id): t.status for t in Task.select().where(Task.id.in_(task_ids))}
