"""Callboard's own processes, started from the Procfile's lines with the bench's environment."""

from __future__ import annotations

import json
from pathlib import Path

from honcho.environ import parse_procfile

from scripts.benchmark.client import get_status
from scripts.benchmark.context import Context
from scripts.benchmark.resources import BenchError
from scripts.benchmark.waiting import say, wait_until

#: The Procfile's process names, in the order they are started.
WEB, SCHEDULER, WORKER = "web", "scheduler", "worker"
BOOT_TIMEOUT = 90


def procfile_commands(root: Path) -> dict[str, str]:
    """The Procfile's commands by process name, parsed by honcho as ``honcho start`` does."""
    return dict(parse_procfile((root / "Procfile").read_text()).processes)


def start(ctx: Context, name: str) -> None:
    """Start Procfile process ``name`` and wait until it is ready: the web answers
    ``/readyz``, the workers all publish heartbeats, the scheduler is just started."""
    command = procfile_commands(ctx.root)[name]
    ctx.runner.start(name, command, env=ctx.env, cwd=ctx.root)
    if name == WEB:
        wait_until(
            lambda: _check_alive(ctx, name) and get_status(ctx.web_url + "/readyz")[0] == 200,
            timeout=BOOT_TIMEOUT,
            what="the web process to be ready",
            interval=0.1,
        )
    elif name == WORKER:
        wait_until(
            lambda: _check_alive(ctx, name) and len(workers(ctx)) >= ctx.options.processes,
            timeout=BOOT_TIMEOUT,
            what=f"{ctx.options.processes} worker heartbeats",
            interval=0.1,
        )
    say(f"started {name} (pid {ctx.runner.pid(name)}): {command}")


def stop(ctx: Context, name: str) -> None:
    """Record the peak RSS of ``name`` and its children, then stop it gracefully (SIGTERM)."""
    if not ctx.runner.is_running(name):
        return
    ctx.results.record_rss(name, ctx.runner.pid(name))
    code = ctx.runner.stop(name, timeout=30)
    if code not in (0, None):
        ctx.results.notes.append(f"{name} exited with code {code} when stopped.")


def workers(ctx: Context) -> list[dict]:
    """The live workers ``GET /workers`` lists."""
    status, body = get_status(ctx.web_url + "/workers", ctx.auth)
    return json.loads(body)["workers"] if status == 200 else []


def pids(ctx: Context) -> dict[str, int]:
    """The pid of each Callboard process running now."""
    return {n: ctx.runner.pid(n) for n in (WEB, SCHEDULER, WORKER) if ctx.runner.is_running(n)}


def _check_alive(ctx: Context, name: str) -> bool:
    if not ctx.runner.is_running(name):
        tail = "\n".join(ctx.runner.log_text(name).splitlines()[-30:])
        raise BenchError(f"{name} exited while starting:\n{tail}")
    return True
