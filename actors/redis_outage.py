"""Pace a worker process's reconnects while Redis is unreachable, and say so once per attempt.

Stock Dramatiq restarts each consumer of a worker process (one per queue and per delay queue: six
here) every 3 s for as long as Redis is down, each restart logging a CRITICAL and an INFO line
that do not name Redis: a dozen lines every 3 s per process, forever, at a fixed pace. Instead,
every consumer of the process waits for one shared next attempt, the wait doubles from
``DEFAULT_FIRST_DELAY`` up to ``DEFAULT_MAX_DELAY``, each failed attempt logs one line that says
what is wrong and when the next attempt is, and one line says when Redis answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

#: Wait after the first failed attempt, doubling after each further one up to the cap (seconds).
#: The cap is also how long consumers may go on waiting once Redis is back: keep it short.
DEFAULT_FIRST_DELAY = 0.5
DEFAULT_MAX_DELAY = 5.0

logger = logging.getLogger("callboard.broker")


class RedisOutage:
    """The reconnect schedule of one worker process's consumers. Thread-safe."""

    def __init__(
        self,
        *,
        first_delay: float = DEFAULT_FIRST_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # when this outage's first attempt failed
        self._delay = 0.0
        self._next_attempt = 0.0

    def wait_left(self) -> float:
        """Seconds until the next attempt may be made (0 when Redis is not known to be down)."""
        if self._since is None:
            return 0.0
        return max(0.0, self._next_attempt - self._clock())

    def failed(self, error: Exception) -> float:
        """Record that an attempt failed with ``error``; return seconds until the next attempt.

        Consumers that fail together (they all tried at the shared attempt time) count as one
        attempt: only the first of them backs off further and logs.
        """
        with self._lock:
            now = self._clock()
            if self._since is None:
                self._since = now
                self._delay = self.first_delay
            elif now >= self._next_attempt:
                self._delay = min(self._delay * 2, self.max_delay)
            else:
                return self._next_attempt - now
            self._next_attempt = now + self._delay
            logger.warning(
                "Redis is unreachable (%s); this worker stops fetching messages and retries in "
                "%.1f s (down for %.1f s).",
                str(error).strip() or type(error).__name__,
                self._delay,
                now - self._since,
            )
            return self._delay

    def answered(self) -> None:
        """Record that Redis answered; ends the outage, saying so once."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            logger.info(
                "Redis answers again after %.1f s; this worker fetches messages again.",
                self._clock() - self._since,
            )
            self._since = None
            self._next_attempt = 0.0
