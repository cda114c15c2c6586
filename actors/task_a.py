"""Task type A: CPU-bound and short. Iterated SHA-256 of a text."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from actors.task_types import TaskContext, TaskType, register

#: The largest ``text`` accepted, in characters; its UTF-8 form is hashed.
MAX_TEXT_LENGTH = 64 * 1024


class PayloadA(BaseModel):
    """Payload of type A."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str = Field(
        max_length=MAX_TEXT_LENGTH,
        pattern=r"^[^\x00]*$",  # PostgreSQL's jsonb cannot store NUL
        description="Text to hash (at most 64 Ki characters, no NUL).",
    )
    rounds: int = Field(ge=1, le=100_000, description="How many times SHA-256 is applied.")


def hash_text(payload: PayloadA, context: TaskContext) -> dict:
    """Apply SHA-256 ``rounds`` times: first to the UTF-8 text, then to each previous digest."""
    digest = payload.text.encode("utf-8")
    for _ in range(payload.rounds):
        digest = hashlib.sha256(digest).digest()
    return {"sha256": digest.hex(), "rounds": payload.rounds}


TASK_A = register(
    TaskType(
        name="a",
        payload_model=PayloadA,
        handler=hash_text,
        time_limit_ms=60_000,
        summary="CPU-bound: iterated SHA-256 of a text.",
    )
)
