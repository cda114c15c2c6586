"""``/tasks``: submit, list, read, follow, cancel and retry tasks."""

from __future__ import annotations

import logging
import uuid
from urllib.parse import urlencode

import falcon

from actors.ledger_broker import LedgerRedisBroker
from actors.sending import send_tasks
from actors.task_types import REGISTRY
from models import reads, transitions
from models.db import database
from models.tables import STATUSES, Task
from web.errors import Problem
from web.representations import event_json, task_json
from web.submission import invalid, parse_submission

logger = logging.getLogger("callboard.web")


class TasksResource:
    """The collection of tasks (``/tasks``) and each task (``/tasks/{task_id}``)."""

    def __init__(self, broker: LedgerRedisBroker) -> None:
        self.broker = broker

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Record a task durably, then send its message; 202 means "recorded"."""
        new_task = parse_submission(req.get_media())
        (task,) = transitions.create_tasks(database, [new_task])
        self._send([task])
        resp.status = falcon.HTTP_202
        resp.location = f"/tasks/{task.id}"
        resp.media = task_json(task)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List tasks newest first, filtered by ``status`` and ``type``, a page at a time."""
        status = req.get_param("status")
        task_type = req.get_param("type")
        errors = []
        if status is not None and status not in STATUSES:
            errors.append({"field": "status", "message": f"must be one of {', '.join(STATUSES)}"})
        if task_type is not None and task_type not in REGISTRY:
            errors.append({"field": "type", "message": f"must be one of {', '.join(REGISTRY)}"})
        limit = _limit(req, errors)
        if errors:
            raise invalid(errors)
        try:
            page = reads.list_tasks(
                status=status, type=task_type, limit=limit, cursor=req.get_param("cursor")
            )
        except reads.InvalidCursor as exc:
            raise invalid([{"field": "cursor", "message": str(exc)}]) from None
        next_link = None
        if page.next_cursor:
            query = {k: v for k, v in req.params.items() if k != "cursor"}
            next_link = "/tasks?" + urlencode({**query, "cursor": page.next_cursor})
        resp.media = {"items": [task_json(t) for t in page.tasks], "next": next_link}

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """One task: status, progress, result or error."""
        resp.media = task_json(reads.get_task(_task_id(task_id)))

    def on_get_events(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """A task's history, oldest first."""
        events = reads.task_events(_task_id(task_id))
        resp.media = {"task_id": task_id, "events": [event_json(e) for e in events]}

    def on_post_cancel(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """Cancel a queued task now, or ask a running one to stop at its next step."""
        task = transitions.cancel(database, _task_id(task_id))
        resp.status = falcon.HTTP_202 if task.status == "running" else falcon.HTTP_200
        resp.media = task_json(task)

    def on_post_retry(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """Queue a failed or cancelled task again as a new attempt."""
        task = transitions.retry(database, _task_id(task_id))
        self._send([task])
        resp.status = falcon.HTTP_202
        resp.location = f"/tasks/{task.id}"
        resp.media = task_json(task)

    def _send(self, tasks: list[Task]) -> None:
        try:
            send_tasks(self.broker, [(t.id, t.type, t.run_at) for t in tasks])
        except Exception as exc:  # noqa: BLE001 - the rows are committed: never answer 5xx now
            # The rebalance sends them once Redis is back.
            logger.warning(
                "Redis is unavailable; %d task(s) recorded and left for the rebalance to send: %s",
                len(tasks),
                exc,
            )


def _task_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Problem(
            falcon.HTTP_404, title="Task not found", detail=f"No task has id {raw!r}."
        ) from None


def _limit(req: falcon.Request, errors: list) -> int:
    raw = req.get_param("limit")
    if raw is None:
        return reads.DEFAULT_PAGE_SIZE
    if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= reads.MAX_PAGE_SIZE:
        return int(raw)
    errors.append({"field": "limit", "message": f"must be an integer 1..{reads.MAX_PAGE_SIZE}"})
    return reads.DEFAULT_PAGE_SIZE
