"""Every error answer is ``application/problem+json`` (RFC 9457), never a traceback.

Domain errors from ``models.errors`` are mapped to HTTP statuses here, once. Anything unexpected
is logged with its traceback on the server and answered with a bare 500 problem.
"""

from __future__ import annotations

import json
import logging

import falcon

from models.db import UNAVAILABLE_ERRORS, drop_broken_connection
from models.errors import InvalidTransition, TaskNotFound

#: Seconds a client should wait before retrying while PostgreSQL is unavailable.
RETRY_AFTER_SECONDS = 5

logger = logging.getLogger("callboard.web")


class Problem(falcon.HTTPError):
    """An HTTP error with RFC 9457 extension members (e.g. ``errors``)."""

    def __init__(self, status, *, title: str, detail: str, headers=None, **extensions) -> None:
        super().__init__(status, title=title, description=detail, headers=headers)
        self.extensions = extensions


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


def _task_not_found(req, resp, error: TaskNotFound, params) -> None:
    raise Problem(falcon.HTTP_404, title="Task not found", detail=str(error))


def _invalid_transition(req, resp, error: InvalidTransition, params) -> None:
    raise Problem(
        falcon.HTTP_409, title="Invalid transition", detail=str(error), status_now=error.status
    )


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
