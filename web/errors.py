"""Every error answer is ``application/problem+json`` (RFC 9457), never a traceback.

Domain errors from ``models.errors`` are mapped to HTTP statuses here, once. Anything unexpected
is logged with its traceback on the server and answered with a bare 500 problem.
"""

from __future__ import annotations

import json
import logging

import falcon
import pydantic

from models.db import UNAVAILABLE_ERRORS, drop_broken_connection
from models.errors import IdempotencyConflict, InvalidTransition, TaskNotFound

#: Seconds a client should wait before retrying while PostgreSQL is unavailable.
RETRY_AFTER_SECONDS = 5

logger = logging.getLogger("callboard.web")


class Problem(falcon.HTTPError):
    """An HTTP error with RFC 9457 extension members (e.g. ``errors``)."""

    def __init__(self, status, *, title: str, detail: str, headers=None, **extensions) -> None:
        super().__init__(status, title=title, description=detail, headers=headers)
        self.extensions = extensions


def invalid(errors: list[dict]) -> Problem:
    """The 422 problem for a list of ``{"field", "message"}`` errors."""
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return Problem(
        falcon.HTTP_422,
        title="Invalid request",
        detail=f"The request is invalid: {fields}. Nothing was stored.",
        errors=errors,
    )


def validation_problem(error: pydantic.ValidationError) -> Problem:
    """The 422 problem naming each field a pydantic validation rejected."""
    return invalid(
        [
            {"field": _field_path(e["loc"], e["type"]), "message": _message(e)}
            for e in error.errors(include_url=False)
        ]
    )


def problem_document(error: falcon.HTTPError) -> dict:
    """The RFC 9457 body for ``error``."""
    document = {
        "type": "about:blank",
        "title": error.title,
        "status": error.status_code,
    }
    document["detail"] = error.description or f"{error.title}."
    document.update(getattr(error, "extensions", {}))
    return document


def serialize_problem(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Falcon error serializer: always problem+json, whatever the client accepts."""
    resp.content_type = "application/problem+json"
    resp.data = json.dumps(problem_document(error)).encode()
    resp.append_header("Vary", "Accept")


def install_error_handlers(app: falcon.App) -> None:
    """Map domain errors, database outages and unexpected exceptions to problem answers."""
    app.set_error_serializer(serialize_problem)
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(UNAVAILABLE_ERRORS, _database_unavailable)
    app.add_error_handler(TaskNotFound, _task_not_found)
    app.add_error_handler(InvalidTransition, _invalid_transition)
    app.add_error_handler(IdempotencyConflict, _idempotency_conflict)


def _task_not_found(req, resp, error: TaskNotFound, params) -> None:
    raise Problem(falcon.HTTP_404, title="Task not found", detail=str(error))


def _invalid_transition(req, resp, error: InvalidTransition, params) -> None:
    raise Problem(
        falcon.HTTP_409, title="Invalid transition", detail=str(error), status_now=error.status
    )


def _idempotency_conflict(req, resp, error: IdempotencyConflict, params) -> None:
    raise Problem(falcon.HTTP_409, title="Idempotency key reused", detail=str(error))


def _database_unavailable(req, resp, error: Exception, params) -> None:
    drop_broken_connection()
    logger.warning("PostgreSQL is unavailable (%s %s): %s", req.method, req.path, error)
    raise Problem(
        falcon.HTTP_503,
        title="Service unavailable",
        detail="The task ledger (PostgreSQL) is unreachable; nothing was recorded. Retry later.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _unexpected(req, resp, error: Exception, params) -> None:
    if isinstance(error, falcon.HTTPError):
        raise error
    logger.exception("Unexpected error while handling %s %s.", req.method, req.path)
    raise Problem(
        falcon.HTTP_500,
        title="Internal server error",
        detail="The server failed to handle this request; the error has been logged.",
    )


def _field_path(loc: tuple, error_type: str) -> str:
    # pydantic puts the tag of a discriminated union (the task type) in the location, as in
    # ("tasks", 3, "a", "payload", "rounds"); clients know that field as tasks[3].payload.rounds.
    from actors.task_types import REGISTRY

    path = ""
    previous: object = None
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (part in REGISTRY and (previous is None or isinstance(previous, int))):
            path += f".{part}" if path else str(part)
        previous = part
    if error_type in ("union_tag_invalid", "union_tag_not_found"):
        path = f"{path}.type" if path else "type"
    if path == "idempotency-key":
        return "Idempotency-Key"
    return path or "(body)"


def _message(error: dict) -> str:
    from actors.task_types import REGISTRY

    kind = error["type"]
    if kind == "union_tag_not_found":
        return f"is required: one of {', '.join(sorted(REGISTRY))}"
    if kind == "union_tag_invalid":
        return f"must be one of {', '.join(sorted(REGISTRY))}; got {error['ctx']['tag']!r}"
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected']}"
    return error["msg"]
