"""Task type B: long-running and I/O-bound. Waits in equal steps, reporting progress."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from actors.task_types import TaskContext, TaskType, register


class PayloadB(BaseModel):
    """Payload of type B."""

    model_config = ConfigDict(extra="forbid", strict=True)

    duration_ms: int = Field(ge=0, le=600_000, description="Total time to wait, in ms.")
    steps: int = Field(ge=1, le=1000, description="How many equal steps to wait in.")


def wait_in_steps(payload: PayloadB, context: TaskContext) -> dict:
    """Wait ``duration_ms`` in ``steps`` equal steps; after each, record progress, which is also
    where a cancel request stops the task."""
    step_s = payload.duration_ms / payload.steps / 1000
    started = time.monotonic()
    for done in range(payload.steps):
        context.wait(step_s, work_left=step_s * (payload.steps - done))
        context.progress(round(100 * (done + 1) / payload.steps))
    slept_ms = round((time.monotonic() - started) * 1000)
    return {"slept_ms": slept_ms, "steps": payload.steps}


TASK_B = register(
    TaskType(
        name="b",
        payload_model=PayloadB,
        handler=wait_in_steps,
        # The longest payload waits 10 minutes; leave room for slow progress writes.
        time_limit_ms=15 * 60_000,
        summary="I/O-bound: waits duration_ms in steps, with progress and cancellation.",
    )
)
