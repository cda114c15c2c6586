"""The scheduler process: periodiq's own scheduler, with a clean exit and a Redis that may be down.

``periodiq actors`` works too, but periodiq's CLI exits 1 on Ctrl+C, dies by SIGTERM's default
action, and crashes (stopping the whole honcho stack) when Redis is unreachable at a send. This
thin entry point reuses ``periodiq.Scheduler`` and fixes those three: SIGTERM and SIGINT end the
loop and exit 0, and a failed send is logged and tried again at the next tick.
"""

from __future__ import annotations

import logging
import signal
import sys

import periodiq
import redis
from dramatiq.errors import BrokerConnectionError

logger = logging.getLogger("callboard.scheduler")


class ResilientScheduler(periodiq.Scheduler):
    """periodiq's scheduler, whose failed sends are logged instead of ending the process."""

    def send_actors(self, actors, now) -> None:
        try:
            super().send_actors(actors, now)
        except (redis.RedisError, BrokerConnectionError) as exc:
            logger.error("Could not send %r at %s (Redis unavailable: %s).", actors, now, exc)

    def stop(self, signum, frame) -> None:
        """Signal handler: end ``loop()`` after the current tick."""
        logger.info("Received %s: the scheduler stops sending.", signal.Signals(signum).name)
        signal.alarm(0)
        self.alarm_q.put_nowait(False)


def main() -> int:
    """Schedule every periodic actor of the ``actors`` package until SIGTERM or SIGINT."""
    from logging_setup import configure_logging
    from settings import get_settings

    configure_logging(get_settings(), "scheduler")
    import actors  # noqa: F401 - declares the broker and the periodic actors
    from actors.broker import broker

    periodic = [a for a in broker.actors.values() if "periodic" in a.options]
    scheduler = ResilientScheduler(actors=periodic)
    signal.signal(signal.SIGTERM, scheduler.stop)
    signal.signal(signal.SIGINT, scheduler.stop)
    periodiq.print_periodic_actors(periodic)
    scheduler.schedule()
    scheduler.loop()
    logger.info("Scheduler stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
