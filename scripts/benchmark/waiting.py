"""Deadlines and progress lines (on stderr, so stdout holds only the table and the RESULT line)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TypeVar

from scripts.benchmark.resources import BenchError

T = TypeVar("T")
_STARTED = time.monotonic()


def say(message: str) -> None:
    """Print a progress line with the seconds since the benchmark started."""
    print(f"bench [{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def wait_until(
    predicate: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Raises:
        BenchError: ``timeout`` seconds passed first; names ``what`` and the last value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"Timed out after {timeout:g} s waiting for {what} (last: {value!r})")
        time.sleep(interval)
