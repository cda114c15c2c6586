"""One graceful stop per worker process, however many SIGTERMs arrive.

Under honcho (and on a PaaS) SIGTERM goes to the whole process group, so a worker process gets
it once from the group signal and once more when Dramatiq's main process forwards it. Stock
Dramatiq treats the second TERM as "kill now" and cuts running tasks (verified: 4 ms after the
first). This middleware wraps Dramatiq's handler so only the first signal counts, and starts our
own stop at once: the shutdown deadline begins, and handlers that cannot finish by it hand their
task back instead of being cut by SIGKILL.
"""

from __future__ import annotations

import logging
import signal

from dramatiq import Middleware

from actors.sending import send_tasks
from actors.worker_state import WorkerState

logger = logging.getLogger("callboard.worker")

#: Signals Dramatiq's worker process treats as "stop" (and a repeat as "kill now").
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


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

    def after_ack(self, broker, message) -> None:
        # A task handed back during the stop is sent again now that its old message is acked,
        # so another worker runs it at once. Should Redis be down, the rebalance sends it later.
        task_type = self.state.pop_resend(message.message_id)
        if task_type is None:
            return
        try:
            send_tasks(broker, [(message.message_id, task_type, None)])
        except Exception:  # noqa: BLE001 - the queued row is the source of truth
            logger.warning("Could not re-send task %r; the rebalance will.", message.message_id)

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
            if callable(dramatiq_handler):
                dramatiq_handler(signum, frame)

        return handle


def _name(signum: int) -> str:
    return signal.Signals(signum).name
