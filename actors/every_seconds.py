"""A periodiq schedule with second resolution: "every N seconds, on the wall-clock multiples".

periodiq 0.14 only parses 5-field cron (minute resolution), but its scheduler asks an actor's
``periodic`` option for just ``validate(date)``, ``next_valid_date(date)`` and ``str()``. This
object answers those, so periodiq itself sends the rebalance every 10 s, on :00, :10, :20, ...
"""

from __future__ import annotations

from datetime import datetime, timedelta


class EverySeconds:
    """Valid at every wall-clock second that is a multiple of ``period`` (which divides 60)."""

    def __init__(self, period: int) -> None:
        if period < 1 or 60 % period:
            raise ValueError(f"period must divide 60 seconds, got {period!r}")
        self.period = period

    def validate(self, date: datetime) -> bool:
        """Whether ``date`` (rounded to the second by periodiq) is a scheduled instant."""
        return date.second % self.period == 0

    def next_valid_date(self, date: datetime) -> datetime:
        """The first scheduled instant strictly after ``date``."""
        start = date.replace(microsecond=0)
        return start + timedelta(seconds=self.period - start.second % self.period)

    def __str__(self) -> str:
        return f"every {self.period} s"
