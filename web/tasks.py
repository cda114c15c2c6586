"""``/tasks``: submit (one or a batch), list, read, follow, cancel and retry tasks."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import falcon
from spectree import Response

from actors.ledger_broker import LedgerRedisBroker
from actors.sending import send_tasks
from models import reads, transitions
from models.db import database
from models.tables import Task
from web import schemas
from web.errors import Problem, invalid
from web.openapi import spec
from web.representations import event_json, task_json

Submission = schemas.submission_model()
Batch = schemas.batch_model(Submission)
#: Errors every route may answer, besides its own.
COMMON_ERRORS = {"HTTP_401": schemas.Problem, "HTTP_503": schemas.Problem}
BODY_ERRORS = {
    "HTTP_400": schemas.Problem,
    "HTTP_413": schemas.Problem,
    "HTTP_415": schemas.Problem,
}
TAG = "tasks"

logger = logging.getLogger("callboard.web")


class TasksResource:
    """The collection of tasks (``/tasks``) and each task (``/tasks/{task_id}``)."""

    def __init__(self, broker: LedgerRedisBroker) -> None:
        self.broker = broker

    @spec.validate(
        json=Submission,
        headers=schemas.SubmitHeaders,
        resp=Response(
            HTTP_202=schemas.Task,
            HTTP_200=schemas.Task,
            HTTP_409=schemas.Problem,
            **BODY_ERRORS,
            **COMMON_ERRORS,
        ),
        tags=[TAG],
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Submit a task.

        The task is recorded durably before its message is sent: 202 means "recorded". With an
        `Idempotency-Key` header, a replay with the same key and body returns the original task
        (200); the same key with another body is a 409.
        """
        key = req.context.headers.idempotency_key
        new_task = _new_task(req.context.json.root, idempotency_key=key)
        if key is None:
            (task,) = transitions.create_tasks(database, [new_task])
            created = True
        else:
            task, created = transitions.create_idempotent_task(database, new_task)
        if created:
            self._send([task])
        resp.status = falcon.HTTP_202 if created else falcon.HTTP_200
        resp.location = f"/tasks/{task.id}"
        resp.media = task_json(task)

    @spec.validate(
        json=Batch,
        resp=Response(HTTP_202=schemas.BatchAccepted, **BODY_ERRORS, **COMMON_ERRORS),
        tags=[TAG],
    )
    def on_post_batch(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Submit up to 1,000 tasks at once.

        All are validated first (a 422 names each bad item and stores nothing), then inserted in
        one transaction and sent in one Redis round trip. Answers their ids, in order.
        """
        new_tasks = [_new_task(item.root, index=i) for i, item in enumerate(req.context.json.tasks)]
        tasks = transitions.create_tasks(database, new_tasks)
        self._send(tasks)
        resp.status = falcon.HTTP_202
        resp.media = {"ids": [str(t.id) for t in tasks]}

    @spec.validate(
        query=schemas.TaskListQuery,
        resp=Response(HTTP_200=schemas.TaskPage, **COMMON_ERRORS),
        tags=[TAG],
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List tasks, newest first.

        Filter by `status`, `type` and a `created_after`/`created_before` range; follow `next`
        for the next page (the order is stable: creation time, then id).
        """
        query: schemas.TaskListQuery = req.context.query
        try:
            page = reads.list_tasks(
                status=query.status,
                type=query.type,
                created_after=query.created_after,
                created_before=query.created_before,
                limit=query.limit,
                cursor=query.cursor,
            )
        except reads.InvalidCursor as exc:
            raise invalid([{"field": "cursor", "message": str(exc)}]) from None
        next_link = None
        if page.next_cursor:
            params = query.model_dump(mode="json", exclude_none=True, exclude={"cursor"})
            next_link = "/tasks?" + urlencode({**params, "cursor": page.next_cursor})
        resp.media = {"items": [task_json(t) for t in page.tasks], "next": next_link}

    @spec.validate(
        resp=Response(HTTP_200=schemas.Task, HTTP_404=schemas.Problem, **COMMON_ERRORS),
        tags=[TAG],
    )
    def on_get_item(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """Read one task: status, progress, result or error."""
        resp.media = task_json(reads.get_task(_task_id(task_id)))

    @spec.validate(
        resp=Response(HTTP_200=schemas.TaskHistory, HTTP_404=schemas.Problem, **COMMON_ERRORS),
        tags=[TAG],
    )
    def on_get_events(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """Read a task's history: each transition with its time, worker and detail."""
        events = reads.task_events(_task_id(task_id))
        resp.media = {"task_id": task_id, "events": [event_json(e) for e in events]}

    @spec.validate(
        resp=Response(
            HTTP_200=schemas.Task,
            HTTP_202=schemas.Task,
            HTTP_404=schemas.Problem,
            HTTP_409=schemas.Problem,
            **COMMON_ERRORS,
        ),
        tags=[TAG],
    )
    def on_post_cancel(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """Cancel a task.

        A queued task is cancelled at once (200); a running one is asked to stop at its next
        step (202, `cancel_requested` true); a finished one is a 409.
        """
        task = transitions.cancel(database, _task_id(task_id))
        resp.status = falcon.HTTP_202 if task.status == "running" else falcon.HTTP_200
        resp.media = task_json(task)

    @spec.validate(
        resp=Response(
            HTTP_202=schemas.Task,
            HTTP_404=schemas.Problem,
            HTTP_409=schemas.Problem,
            **COMMON_ERRORS,
        ),
        tags=[TAG],
    )
    def on_post_retry(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """Retry a failed or cancelled task as a new attempt (202); any other state is a 409."""
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


def _new_task(
    submission, *, idempotency_key: str | None = None, index: int | None = None
) -> transitions.NewTask:
    prefix = "" if index is None else f"tasks[{index}]."
    given = submission.model_fields_set
    if "run_at" in given and "delay_ms" in given:
        raise invalid(
            [{"field": f"{prefix}delay_ms", "message": "give run_at or delay_ms, not both"}]
        )
    now = datetime.now(UTC)
    run_at = submission.run_at
    if submission.delay_ms is not None:
        run_at = now + timedelta(milliseconds=submission.delay_ms)
    if run_at is not None and run_at - now > timedelta(milliseconds=schemas.MAX_DELAY_MS):
        raise invalid(
            [{"field": f"{prefix}run_at", "message": "must be less than 7 days from now"}]
        )
    body = submission.model_dump(mode="json", exclude_unset=True)
    return transitions.NewTask(
        type=submission.type,
        payload=submission.payload.model_dump(mode="json"),
        run_at=run_at,
        idempotency_key=idempotency_key,
        request_hash=_fingerprint(body) if idempotency_key else None,
    )


def _fingerprint(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _task_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Problem(
            falcon.HTTP_404, title="Task not found", detail=f"No task has id {raw!r}."
        ) from None
