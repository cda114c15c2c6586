"""What a task type is, the registry of types, and the context a handler runs with.

A task type is one module in ``actors/`` that calls ``register(TaskType(...))``. The API's
validation, the OpenAPI document and the worker's actor are all derived from the registry, so
adding a type needs no edit anywhere else.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import pydantic

from models.transitions import Claim

#: Every registered task type, by name (the name is also the Dramatiq queue name).
REGISTRY: dict[str, TaskType] = {}


class HandBack(Exception):  # noqa: N818 - a signal to the runner, not an error
    """Raised by a handler that cannot finish before its worker stops; the task is requeued."""


class Cancelled(Exception):  # noqa: N818
    """Raised by a handler that noticed a cancel request; the task ends ``cancelled``."""


class LostClaim(Exception):  # noqa: N818
    """Raised by a handler whose task was taken away (recovered or finished elsewhere)."""


@dataclasses.dataclass(frozen=True)
class TaskType:
    """One kind of work.

    Attributes:
        name: the ``type`` clients submit, and the Dramatiq queue name.
        payload_model: the pydantic model that validates (and documents) the payload.
        handler: ``handler(payload, context) -> result dict``; runs in a worker thread.
        time_limit_ms: the longest one attempt may run before it is failed.
        summary: one line for the API documentation.
    """

    name: str
    payload_model: type[pydantic.BaseModel]
    handler: Callable[[pydantic.BaseModel, TaskContext], dict]
    time_limit_ms: int
    summary: str

    @property
    def actor_name(self) -> str:
        """The Dramatiq actor name: a wire format, never renamed while messages may be queued."""
        return actor_name_of(self.name)


def actor_name_of(type_name: str) -> str:
    """The Dramatiq actor name that runs tasks of type ``type_name`` (its queue is the type name).

    A function of the name alone, so that a process can send a task of a type it has not
    registered (see ``actors.sending``).
    """
    return f"run_task_{type_name}"


def register(task_type: TaskType) -> TaskType:
    """Add a task type to the registry and declare its Dramatiq actor."""
    from actors.runner import declare_actor  # the runner imports this module

    if task_type.name in REGISTRY:
        raise ValueError(f"task type {task_type.name!r} is already registered")
    REGISTRY[task_type.name] = task_type
    declare_actor(task_type)
    return task_type


class TaskContext:
    """What a handler may ask of the runner: report progress, wait, learn it must stop."""

    def __init__(
        self,
        claim: Claim,
        *,
        report_progress: Callable[[int], bool | None],
        stopping: threading.Event,
        seconds_left: Callable[[], float],
    ) -> None:
        self.claim = claim
        self._report_progress = report_progress
        self._stopping = stopping
        self._seconds_left = seconds_left

    @property
    def task_id(self) -> str:
        """The id of the task being run."""
        return str(self.claim.task_id)

    def progress(self, percent: int) -> None:
        """Record progress (0..100), and stop here if the task was cancelled or taken away.

        Raises:
            Cancelled: a client asked to cancel the task.
            LostClaim: this worker does not hold the task any more.
        """
        cancel_requested = self._report_progress(percent)
        if cancel_requested is None:
            raise LostClaim(self.task_id)
        if cancel_requested:
            raise Cancelled(self.task_id)

    def wait(self, seconds: float, *, work_left: float) -> None:
        """Sleep ``seconds``; if the worker starts stopping and ``work_left`` seconds of work
        (this wait included) cannot end before its deadline, hand the task back at once.

        Raises:
            HandBack: the worker is stopping and the rest of the task does not fit.
        """
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._stopping.is_set():
                if work_left - (seconds - left) > self._seconds_left():
                    raise HandBack(self.task_id)
                time.sleep(left)
                return
            self._stopping.wait(left)
