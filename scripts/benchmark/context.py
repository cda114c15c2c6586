"""What every phase of one benchmark run shares: its knobs, processes, stores and results."""

from __future__ import annotations

import dataclasses
import socket
import statistics
from collections import defaultdict
from pathlib import Path

from scripts.benchmark.load import LoadGenerator
from scripts.benchmark.options import Options
from scripts.benchmark.resources import BenchDatabase, BenchRedis
from scripts.benchmark.runner import Runner, peak_rss_mb, process_tree


@dataclasses.dataclass
class Results:
    """Figures by name, one value per repetition, plus whole-run peaks and notes."""

    figures: dict[str, list[float]] = dataclasses.field(default_factory=lambda: defaultdict(list))
    #: Peak RSS in MiB by process label (the largest, for labels shared by several processes).
    peak_rss: dict[str, float] = dataclasses.field(default_factory=dict)
    #: CPU % by phase, then by part of the stack (``cpu.py``), one value per repetition.
    cpu: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(self, name: str, value: float) -> None:
        """Record one repetition's value of figure ``name``."""
        self.figures[name].append(float(value))

    def median(self, name: str) -> float | None:
        """The median of figure ``name`` over its repetitions (None if never measured)."""
        values = self.figures.get(name)
        return statistics.median(values) if values else None

    def record_rss(self, label: str, root: int) -> None:
        """Record the peak RSS of ``root`` (as ``label``) and of each of its descendants."""
        tree = process_tree(root)
        children = len(tree) - 1
        for pid in tree:
            mb = peak_rss_mb(pid)
            if mb is None:
                continue
            name = label if pid == root else f"{label}: each of {children} child processes"
            self.peak_rss[name] = max(mb, self.peak_rss.get(name, 0.0))


@dataclasses.dataclass
class Context:
    """One run's shared state, handed to every phase."""

    options: Options
    root: Path
    work_dir: Path
    runner: Runner
    loadgen: LoadGenerator
    redis: BenchRedis
    db: BenchDatabase
    token: str
    #: The environment of Callboard's processes (bench URLs, port, token).
    env: dict[str, str]
    web_port: int
    results: Results = dataclasses.field(default_factory=Results)

    @property
    def web_url(self) -> str:
        """Base URL of Callboard's web process."""
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def auth(self) -> dict[str, str]:
        """The authorization header every API request carries."""
        return {"Authorization": f"Bearer {self.token}"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
