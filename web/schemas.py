"""The API's request and response models: one source for validation and the OpenAPI document.

pydantic validates every request body and query, and its JSON Schema (2020-12, the dialect of
OpenAPI 3.1) documents them; spectree (``web/openapi.py``) ties both to the routes. A submission
is a union of one model per registered task type, discriminated by ``type``, so a new task type
module appears in validation and in the document with no edit here.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StrictInt,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from actors.task_types import REGISTRY
from models.reads import CURSOR_PATTERN, MAX_PAGE_SIZE
from models.tables import STATUSES

#: Dramatiq's Redis broker refuses delays of 7 days or more.
MAX_DELAY_MS = 7 * 24 * 3600 * 1000 - 1
#: The most tasks one batch may submit.
MAX_BATCH_SIZE = 1000

#: An RFC 3339 date-time (JSON Schema's ``date-time`` format), with its offset.
RFC_3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)

Status = Literal[STATUSES]  # type: ignore[valid-type]
TaskTypeName = Literal[tuple(sorted(REGISTRY))]  # type: ignore[valid-type]


def _rfc_3339_text(value: Any) -> Any:
    # pydantic alone also takes numbers and numeric strings (Unix time), "2030-01-01 10:00Z" and
    # offsets without a colon: none of them is the documented format, so they are refused here.
    if value is None:
        return None
    if not isinstance(value, str) or not RFC_3339.fullmatch(value):
        raise PydanticCustomError(
            "datetime_format", "must be an RFC 3339 date-time, e.g. 2030-01-31T12:00:00Z"
        )
    # A leap second (23:59:60) is valid RFC 3339 but not a Python time: take the instant before.
    return re.sub(r"(T[0-9]{2}:[0-9]{2}:)60(\.[0-9]+)?", r"\g<1>59.999999", value, flags=re.I)


def _in_utc(value: dt.datetime) -> dt.datetime:
    # PostgreSQL refuses offsets beyond ±15:59, which RFC 3339 allows; in UTC, an instant
    # before year 1 or after 9999 is clamped to the first or last one Python can represent:
    # no task is created, or may start, that early or late.
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        extreme = dt.datetime.min if value.year == dt.MINYEAR else dt.datetime.max
        return extreme.replace(tzinfo=dt.UTC)


#: A timezone-aware date-time, given as RFC 3339 text, in UTC once validated.
Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc_3339_text), AfterValidator(_in_utc)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Task(BaseModel):
    """A task as clients see it."""

    id: uuid.UUID
    type: str
    status: Status
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    progress: int = Field(ge=0, le=100)
    attempts: int = Field(ge=0)
    recoveries: int = Field(ge=0)
    worker: str | None
    cancel_requested: bool
    run_at: dt.datetime | None = Field(description="When a delayed task is due to start.")
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    links: dict[str, str]


class TaskPage(BaseModel):
    """A page of tasks, newest first."""

    items: list[Task]
    next: str | None = Field(description="Link to the next page; null on the last one.")


class TaskEvent(BaseModel):
    """One line of a task's history."""

    at: dt.datetime
    kind: str
    worker: str | None
    detail: dict[str, Any]


class TaskHistory(BaseModel):
    """A task's history, oldest first."""

    task_id: uuid.UUID
    events: list[TaskEvent]


class BatchAccepted(BaseModel):
    """The ids of the tasks of a batch, in the order they were submitted."""

    ids: list[uuid.UUID]


class RebalanceRun(BaseModel):
    """What one run of the repair loop did."""

    started_at: dt.datetime
    duration_ms: float
    resent: int
    recovered: int
    poisoned: int
    dead_workers: list[str]
    detail: dict[str, Any]


class RebalanceRuns(BaseModel):
    """The latest runs of the repair loop, newest first."""

    runs: list[RebalanceRun]


class Worker(BaseModel):
    """A live worker process, from its heartbeat."""

    model_config = ConfigDict(extra="allow")

    worker_id: str
    host: str
    pid: str
    queues: list[str]
    threads: int
    held: list[str]
    processed: int
    started_at: float
    beat_at: float
    age_s: float = Field(description="Seconds since its last heartbeat.")


class Workers(BaseModel):
    """Every worker whose heartbeat has not expired."""

    workers: list[Worker]


class QueueStats(BaseModel):
    """Messages of one queue, from Redis."""

    waiting: int
    delayed: int
    in_flight: int = Field(description="Fetched by a worker and not acknowledged yet.")
    dead_lettered: int


class Stats(BaseModel):
    """The whole system at a glance: queues, tasks by type and status, workers."""

    queues: dict[str, QueueStats]
    tasks: dict[str, dict[str, int]] = Field(description="Task counts by type, then status.")
    workers: list[Worker]
    dead_workers: list[str] = Field(
        description="Workers that hold running tasks but whose heartbeat expired; the next "
        "rebalance recovers their tasks."
    )


class Health(BaseModel):
    """The web process is up."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """PostgreSQL and Redis are reachable."""

    status: Literal["ready"]
    checks: dict[str, str]


class Problem(BaseModel):
    """An error (RFC 9457 problem details)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str
    message: str


class TaskListQuery(_Strict):
    """Filters and paging of ``GET /tasks``."""

    status: Status | None = None
    type: TaskTypeName | None = None
    created_after: Rfc3339 | None = Field(None, description="Only tasks created after.")
    created_before: Rfc3339 | None = Field(None, description="Only tasks created before.")
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(
        None, pattern=CURSOR_PATTERN, description="From a `next` link (opaque)."
    )


class RebalanceQuery(_Strict):
    """Paging of ``GET /rebalance``."""

    limit: int = Field(20, ge=1, le=200)


class SubmitHeaders(BaseModel):
    """Headers of ``POST /tasks``."""

    idempotency_key: str | None = Field(
        None,
        alias="idempotency-key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Replays with the same key and body return the original task (200).",
    )

    @model_validator(mode="before")
    @classmethod
    def _case_insensitive_names(cls, headers: Any) -> Any:
        # Header names are case-insensitive; Falcon hands them over upper-cased.
        if isinstance(headers, dict):
            return {str(name).lower(): value for name, value in headers.items()}
        return headers


def submission_model() -> type[RootModel]:
    """The model of one submission: a union of one variant per registered task type."""
    variants = [_submission_variant(name) for name in sorted(REGISTRY)]
    union = variants[0] if len(variants) == 1 else Union[tuple(variants)]  # noqa: UP007
    return type(
        "Submission",
        (RootModel[Annotated[union, Field(discriminator="type")]],),
        {"__doc__": "A task to run: its type and that type's payload, optionally delayed."},
    )


def batch_model(submission: type[RootModel]) -> type[BaseModel]:
    """The model of ``POST /tasks/batch``."""
    return create_model(
        "Batch",
        __config__=ConfigDict(extra="forbid"),
        __doc__="Up to 1,000 tasks, validated all-or-nothing and stored in one transaction.",
        tasks=(list[submission], Field(min_length=1, max_length=MAX_BATCH_SIZE)),
    )


def _submission_variant(name: str) -> type[BaseModel]:
    task_type = REGISTRY[name]
    return create_model(
        f"Submit{name.upper()}",
        # Both delays at once are refused (also when one is null), as the schema says.
        __config__=ConfigDict(
            extra="forbid", json_schema_extra={"not": {"required": ["run_at", "delay_ms"]}}
        ),
        __doc__=task_type.summary,
        type=(Literal[name], ...),
        payload=(task_type.payload_model, ...),
        run_at=(
            Rfc3339 | None,
            Field(None, description="Start no earlier than this time (RFC 3339), < 7 days."),
        ),
        delay_ms=(
            StrictInt | None,
            Field(None, ge=0, le=MAX_DELAY_MS, description="Start after this many ms."),
        ),
    )


Problem.model_rebuild()
