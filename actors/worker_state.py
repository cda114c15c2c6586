"""What one worker process knows about itself: its id, the tasks it holds, whether it is stopping.

Shared by the task runner (which claims and releases tasks), the heartbeat (which publishes this
state to Redis) and the shutdown middleware (which starts the stop). One instance per process.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

from models.transitions import Claim


class WorkerState:
    """Thread-safe state of this worker process."""

    def __init__(self) -> None:
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.started_at = time.time()
        self.stopping = threading.Event()
        self._deadline: float | None = None
        self._lock = threading.Lock()
        self._held: dict[str, Claim] = {}
        self._resend_after_stop: dict[str, str] = {}
        self.processed = 0

    def hold(self, claim: Claim) -> None:
        """Remember a claimed task until ``release``."""
        with self._lock:
            self._held[str(claim.task_id)] = claim

    def release(self, claim: Claim) -> None:
        """Forget a task this process no longer holds, counting it as processed."""
        with self._lock:
            self._held.pop(str(claim.task_id), None)
            self.processed += 1

    def held_task_ids(self) -> list[str]:
        """The ids of the tasks this process holds now."""
        with self._lock:
            return list(self._held)

    def resend_after_stop(self, task_id: str, task_type: str) -> None:
        """Ask for the task's message to be sent again once this worker has stopped consuming.

        Not at once: the ack of the current delivery deletes the message stored under the task
        id (which would delete a new one sent under the same id), and this process would only
        fetch it again itself.
        """
        with self._lock:
            self._resend_after_stop[task_id] = task_type

    def take_resends(self) -> list[tuple[str, str]]:
        """Every ``(task_id, task_type)`` awaiting its re-send, forgetting them."""
        with self._lock:
            taken, self._resend_after_stop = list(self._resend_after_stop.items()), {}
            return taken

    def begin_stop(self, timeout: float) -> None:
        """Start a graceful stop: work that cannot end within ``timeout`` seconds is handed back."""
        with self._lock:
            if self._deadline is None:
                self._deadline = time.monotonic() + timeout
        self.stopping.set()

    def seconds_left(self) -> float:
        """Seconds until the stop deadline; infinite while not stopping."""
        deadline = self._deadline
        return float("inf") if deadline is None else deadline - time.monotonic()


#: The state of the current worker process (Dramatiq imports the actors in each worker process,
#: never in its parent, so each process gets its own identity).
current = WorkerState()
