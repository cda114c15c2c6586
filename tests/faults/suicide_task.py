"""A task type for tests only: its handler kills its own worker process with SIGKILL.

Run a worker that knows it with ``dramatiq actors tests.faults.suicide_task``. Every attempt takes
its worker process down, so the task can only end as poison: ``failed`` once it was running when
its worker died ``CALLBOARD_MAX_RECOVERIES`` times. The web process does not know this type; tests
create its tasks in the ledger and send their messages themselves.
"""

from __future__ import annotations

import os
import signal

from pydantic import BaseModel, ConfigDict

from actors.task_types import TaskContext, TaskType, register

#: The type's name, also its queue's name.
NAME = "suicide"


class PayloadSuicide(BaseModel):
    """No payload: the handler does the same thing every time."""

    model_config = ConfigDict(extra="forbid", strict=True)


def kill_own_process(payload: PayloadSuicide, context: TaskContext) -> dict:
    """Record a little progress (so the attempt is visibly under way), then SIGKILL this process."""
    context.progress(10)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable: SIGKILL cannot be caught")


TASK_SUICIDE = register(
    TaskType(
        name=NAME,
        payload_model=PayloadSuicide,
        handler=kill_own_process,
        time_limit_ms=60_000,
        summary="Test only: kills its own worker process.",
    )
)
