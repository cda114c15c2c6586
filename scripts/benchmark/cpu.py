"""CPU used by each part of the stack over a stretch of time, as % of one core.

Callboard's processes (each with its children), the PostgreSQL backends connected to the bench
database (the servers' own work for Callboard), and the Redis server (shared: other clients of
it count too). Read from ``/proc`` at the start and the end.
"""

from __future__ import annotations

import time

from scripts.benchmark import stack
from scripts.benchmark.context import Context
from scripts.benchmark.runner import cpu_seconds, process_tree

POSTGRES = "postgres backends"
REDIS = "redis-server"
TOTAL = "total"


class CpuMeter:
    """``start()`` then ``stop()``: the CPU % of each part in between."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._groups: dict[str, list[int]] = {}
        self._before: dict[str, dict[int, float]] = {}
        self._began = 0.0

    def start(self) -> CpuMeter:
        """Read the counters now; return self."""
        self._groups = {name: process_tree(pid) for name, pid in stack.pids(self.ctx).items()}
        self._groups[POSTGRES] = self.ctx.db.backend_pids()
        self._groups[REDIS] = [self.ctx.redis.server_pid()]
        self._before = {name: _cpu(pids) for name, pids in self._groups.items()}
        self._began = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        """CPU % of each part since ``start()``, and the ``total`` of Callboard's processes."""
        elapsed = max(time.monotonic() - self._began, 1e-6)
        used = {}
        for name, pids in self._groups.items():
            before, after = self._before[name], _cpu(pids)
            # Only processes alive at both readings count: one that exited lost its counters.
            seconds = sum(after[pid] - before[pid] for pid in after if pid in before)
            used[name] = seconds / elapsed * 100
        used[TOTAL] = sum(v for k, v in used.items() if k not in (POSTGRES, REDIS))
        return used


def record(ctx: Context, phase: str, used: dict[str, float]) -> None:
    """Keep one repetition's CPU use of ``phase``."""
    for name, percent in used.items():
        ctx.results.cpu.setdefault(phase, {}).setdefault(name, []).append(percent)


def _cpu(pids: list[int]) -> dict[int, float]:
    readings = {pid: cpu_seconds(pid) for pid in pids}
    return {pid: seconds for pid, seconds in readings.items() if seconds is not None}
