"""Turn a ``POST /tasks`` body into a validated ``NewTask``, or a 422 naming each bad field.

Payloads are validated by the task type's own pydantic model (declared in its ``actors/``
module), so the API accepts exactly what the handler expects.
"""

from __future__ import annotations

from typing import Any

import falcon
import pydantic

from actors.task_types import REGISTRY
from models.transitions import NewTask
from web.errors import Problem

#: The members a submission may have.
SUBMISSION_FIELDS = {"type", "payload"}


def parse_submission(body: Any) -> NewTask:
    """Validate one submission.

    Raises:
        Problem: 422 with an ``errors`` list of ``{"field", "message"}``.
    """
    errors = submission_errors(body)
    if errors:
        raise invalid(errors)
    return NewTask(type=body["type"], payload=_validated_payload(body))


def submission_errors(body: Any, prefix: str = "") -> list[dict]:
    """Every problem with one submission, each naming its field (empty when it is valid)."""
    if not isinstance(body, dict):
        return [_error(prefix or "(body)", "must be a JSON object")]
    errors = [
        _error(prefix + name, "is not a known field")
        for name in sorted(set(body) - SUBMISSION_FIELDS)
    ]
    errors.extend(_nul_errors(body, prefix.rstrip(".")))
    task_type = body.get("type")
    if "type" not in body:
        errors.append(_error(prefix + "type", "is required"))
    elif not isinstance(task_type, str) or task_type not in REGISTRY:
        errors.append(
            _error(
                prefix + "type", f"must be one of {', '.join(sorted(REGISTRY))}; got {task_type!r}"
            )
        )
    if "payload" not in body:
        errors.append(_error(prefix + "payload", "is required"))
    elif not isinstance(body["payload"], dict):
        errors.append(_error(prefix + "payload", "must be a JSON object"))
    elif isinstance(task_type, str) and task_type in REGISTRY:
        try:
            REGISTRY[task_type].payload_model.model_validate(body["payload"])
        except pydantic.ValidationError as exc:
            errors.extend(_pydantic_errors(exc, prefix + "payload"))
    return errors


def invalid(errors: list[dict]) -> Problem:
    """The 422 problem for a list of field errors."""
    fields = ", ".join(e["field"] for e in errors)
    return Problem(
        falcon.HTTP_422,
        title="Invalid request",
        detail=f"The request is invalid: {fields}. Nothing was stored.",
        errors=errors,
    )


def _validated_payload(body: dict) -> dict:
    model = REGISTRY[body["type"]].payload_model.model_validate(body["payload"])
    return model.model_dump(mode="json")


def _pydantic_errors(exc: pydantic.ValidationError, prefix: str) -> list[dict]:
    return [
        _error(".".join([prefix, *(str(p) for p in e["loc"])]), e["msg"])
        for e in exc.errors(include_url=False)
    ]


def _nul_errors(value: Any, field: str) -> list[dict]:
    # PostgreSQL's jsonb cannot store U+0000, and no payload needs it: refuse it by name.
    if isinstance(value, str):
        return (
            [_error(field or "(body)", "must not contain NUL characters")]
            if "\x00" in value
            else []
        )
    if isinstance(value, dict):
        errors = []
        for key, item in value.items():
            path = f"{field}.{key}" if field else str(key)
            if "\x00" in str(key):
                errors.append(_error(field or "(body)", "keys must not contain NUL characters"))
            errors.extend(_nul_errors(item, path))
        return errors
    if isinstance(value, list):
        return [e for i, item in enumerate(value) for e in _nul_errors(item, f"{field}[{i}]")]
    return []


def _error(field: str, message: str) -> dict:
    return {"field": field, "message": message}
