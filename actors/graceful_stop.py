"""One graceful stop per worker process, however many SIGTERMs arrive.

Under honcho (and on a PaaS) SIGTERM goes to the whole process group, so a worker process gets
it once from the group signal and once more when Dramatiq's main process forwards it. Stock
Dramatiq treats the second TERM as "kill now" and cuts running tasks (verified: 4 ms after the
first). This middleware wraps Dramatiq's handler so only the first signal counts, and starts our
own stop at once: the shutdown deadline begins, and handlers that cannot finish by it hand their
task back instead of being cut by SIGKILL.
"""

from __future__ import annotations

import contextlib
import logging
import signal

from dramatiq import Middleware

from actors.sending import send_tasks
from actors.worker_state import WorkerState

logger = logging.getLogger("callboard.worker")

#: Signals Dramatiq's worker process treats as "stop" (and a repeat as "kill now").
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: The longest a stopping worker's idle consumers sleep between polls, in milliseconds.
STOP_POLL_MS = 100


class GracefulStop(Middleware):
    """Makes the worker process's stop signals idempotent and starts the shutdown deadline."""

    def __init__(self, state: WorkerState, *, timeout: float) -> None:
        self.state = state
        self.timeout = timeout
        self._signalled = False

    def after_process_boot(self, broker) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._once(signal.getsignal(signum)))

    def before_worker_shutdown(self, broker, worker) -> None:
        self.state.begin_stop(self.timeout)
        # Dramatiq keeps the consumers polling while tasks finish, then stops and joins them; an
        # idle consumer sleeps up to the worker timeout (1 s) between polls, and the stop waited
        # that out (measured: 0.75 s after the last task), eating into the time honcho (5 s) or
        # a PaaS allows before SIGKILL. From here on they poll, and so stop, within 0.1 s.
        for consumer_thread in worker.consumers.values():
            consumer_thread.worker_timeout = STOP_POLL_MS
            if consumer_thread.consumer is not None:
                consumer_thread.consumer.timeout = STOP_POLL_MS

    def after_worker_shutdown(self, broker, worker) -> None:
        # Tasks handed back during the stop are sent again only now: their old messages are
        # acked (an ack deletes the message stored under the task id) and this process's
        # consumers have stopped (so it cannot fetch them again itself). Another worker runs
        # them at once; should Redis be down, the rebalance sends the queued rows later.
        handed_back = self.state.take_resends()
        if not handed_back:
            return
        try:
            send_tasks(broker, [(task_id, task_type, None) for task_id, task_type in handed_back])
            logger.info("Re-sent %d handed-back task(s) for other workers.", len(handed_back))
        except Exception:  # noqa: BLE001 - the queued rows are the source of truth
            logger.warning(
                "Could not re-send %d handed-back task(s); the rebalance will.", len(handed_back)
            )

    def _once(self, dramatiq_handler):
        def handle(signum, frame):
            if self._signalled:
                logger.info(
                    "Ignoring a repeated %s: this worker is already stopping.", _name(signum)
                )
                return
            self._signalled = True
            logger.info(
                "Received %s: stopping; tasks that cannot finish within %.1f s are handed back.",
                _name(signum),
                self.timeout,
            )
            self.state.begin_stop(self.timeout)
            if callable(dramatiq_handler) and not _dramatiq_already_stopping(dramatiq_handler):
                # Should the check above miss, Dramatiq reads this TERM as a repeat and raises
                # SystemExit ("kill now"); the stop is under way, so let it finish instead.
                with contextlib.suppress(SystemExit):
                    dramatiq_handler(signum, frame)

        return handle


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def _dramatiq_already_stopping(handler) -> bool:
    # A TERM that arrived while the process booted, before our handler was installed, went to
    # Dramatiq's own handler, which keeps its "running" flag in its closure. Calling it again
    # would read as a second TERM: "Killing worker process...".
    try:
        cells = dict(zip(handler.__code__.co_freevars, handler.__closure__ or (), strict=True))
        return cells["running"].cell_contents is False
    except (AttributeError, KeyError, ValueError):
        return False
