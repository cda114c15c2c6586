"""Optional py-spy profiles of the web and worker processes (``scripts/bench --profile DIR``).

py-spy is not a dependency of Callboard: ``pip install py-spy`` into the venv to use this. Each
process is sampled 100 times a second without being paused (``--nonblocking``), twice over: a
"wall" view (every busy thread, so waits on PostgreSQL and Redis show) and a "gil" view (only
the thread holding the GIL: where the process's one core of Python goes). Files are
``DIR/<phase>-<process>-<view>.txt`` in collapsed-stack form (``frame;frame;... count``, which
flamegraph.pl turns into an SVG), each with a ``.summary.txt``: the top functions by own and by
total samples, and own samples by package.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

from scripts.benchmark import stack
from scripts.benchmark.context import Context
from scripts.benchmark.waiting import say

SAMPLE_RATE = 100
TOP = 15
#: "wall": every thread that is not idle (waits on PostgreSQL and Redis included); "gil": only
#: the thread holding the GIL, i.e. where the process's one core of Python goes.
VIEWS = ("wall", "gil")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


class Profiler:
    """Records web and worker (with its child processes) while a phase runs."""

    def __init__(self, ctx: Context, out_dir: Path) -> None:
        if shutil.which("py-spy") is None:
            raise FileNotFoundError("--profile needs py-spy: pip install py-spy")
        self.ctx = ctx
        self.out_dir = out_dir
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._running: list[tuple[str, Path]] = []

    def start(self, phase: str) -> None:
        """Start recording every running web and worker process for ``phase``."""
        for name, pid in stack.pids(self.ctx).items():
            if name == stack.SCHEDULER:
                continue
            for view in VIEWS:
                out = self.out_dir / f"{phase}-{name}-{view}.txt"
                command = ["py-spy", "record", f"--pid={pid}", f"--rate={SAMPLE_RATE}"]
                command += ["--nonblocking", "--full-filenames", "--format=raw", f"--output={out}"]
                if view == "gil":
                    command.append("--gil")
                if name == stack.WORKER:
                    command.append("--subprocesses")
                proc_name = f"py-spy-{phase}-{name}-{view}"
                self.ctx.runner.start(proc_name, command)
                self._running.append((proc_name, out))

    def stop(self) -> None:
        """Stop the recordings (py-spy writes its file on SIGINT) and print their summaries."""
        for proc_name, out in self._running:
            self.ctx.runner.signal(proc_name, signal.SIGINT)
            try:
                self.ctx.runner.processes[proc_name].wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.ctx.runner.stop(proc_name)
            if out.exists():
                summary = summarize(out)
                out.with_suffix(".summary.txt").write_text(summary)
                say(f"profile {out}:\n{summary}")
        self._running = []


def summarize(path: Path, top: int = TOP) -> str:
    """The top functions by own and by total samples, and own samples by package."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack_text.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        samples += count
        own[frames[-1][0]] += count
        packages[frames[-1][1]] += count
        for func in {f[0] for f in frames}:
            total[func] += count
    if not samples:
        return "(no samples)\n"
    lines = [f"{samples} samples"]
    for title, counter in (("own", own), ("total", total), ("own, by package", packages)):
        lines.append(f"-- top by {title}:")
        lines += [f"{n / samples:6.1%}  {func}" for func, n in counter.most_common(top)]
    return "\n".join(lines) + "\n"


def _name(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), "?"
    file = match["file"]
    return f"{match['func']} ({_short(file)})", _package(file)


def _short(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3."):
        if marker in file:
            return file.split(marker, 1)[1]
    return file.removeprefix(f"{Path.cwd()}/")


def _package(file: str) -> str:
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/lib/python3." in file:
        return "stdlib:" + file.split("/lib/python3.", 1)[1].split("/")[1]
    return "callboard:" + _short(file).split("/", 1)[0]
