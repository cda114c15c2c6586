"""The benchmark's knobs: defaults sized for a 2-core machine (the whole run in ~5 minutes)."""

from __future__ import annotations

import argparse
import dataclasses
import os

#: Tasks per end-to-end run, and messages per stock Dramatiq drain.
DEFAULT_N = 5000
DEFAULT_REPS = 3
DEFAULT_CONNECTIONS = (16, 64)
#: Seconds of each duration-bound load run (bare GET, POST /tasks, batch submit).
DEFAULT_DURATION = 4.0
#: Seconds the workers stay idle before the idle-latency burst: Dramatiq's poll back-off
#: reaches its 1 s cap after about 2.5 s without messages.
DEFAULT_IDLE_SECONDS = 5.0
#: Idle windows (each followed by a burst) per repetition.
DEFAULT_IDLE_ROUNDS = 3
DEFAULT_BATCH_SIZE = 1000
DEFAULT_BATCH_CONNECTIONS = 2
DEFAULT_BURST_SIZE = 10
DEFAULT_BURSTS = 10
#: Seconds the workers are idle between two warm bursts.
DEFAULT_BURST_GAP = 0.2
DEFAULT_REDIS_DB = 14
DEFAULT_DATABASE = "callboard_bench"
#: What ``--quick`` changes: a smoke run of well under a minute.
QUICK = {
    "n": 300,
    "reps": 1,
    "connections": (16,),
    "duration": 1.5,
    "idle_seconds": 1.5,
    "idle_rounds": 1,
    "bursts": 3,
}


@dataclasses.dataclass(frozen=True)
class Options:
    """Every knob of one benchmark run; see ``parse_args`` for their meaning."""

    n: int = DEFAULT_N
    reps: int = DEFAULT_REPS
    connections: tuple[int, ...] = DEFAULT_CONNECTIONS
    duration: float = DEFAULT_DURATION
    idle_seconds: float = DEFAULT_IDLE_SECONDS
    idle_rounds: int = DEFAULT_IDLE_ROUNDS
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_connections: int = DEFAULT_BATCH_CONNECTIONS
    burst_size: int = DEFAULT_BURST_SIZE
    bursts: int = DEFAULT_BURSTS
    burst_gap: float = DEFAULT_BURST_GAP
    processes: int = 2
    threads: int = 5
    web_threads: int = 8
    redis_db: int = DEFAULT_REDIS_DB
    database: str = DEFAULT_DATABASE
    loadgen: str = "auto"
    keep_logs: bool = False
    profile_dir: str | None = None
    quick: bool = False

    @property
    def e2e_connections(self) -> int:
        """Connections of the single-POST end-to-end run: the first of ``connections``."""
        return self.connections[0]


def parse_args(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Options:
    """Read the command line (and the worker/web sizes from the environment, as the Procfile
    and ``settings.py`` do)."""
    env = dict(os.environ if env is None else env)
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark Callboard against stock Dramatiq and bare Falcon-on-waitress.",
    )
    parser.add_argument("--n", type=_positive, help=f"tasks per end-to-end run ({DEFAULT_N})")
    parser.add_argument("--reps", type=_positive, help=f"repetitions ({DEFAULT_REPS})")
    parser.add_argument(
        "--connections",
        type=_int_list,
        help="comma-separated HTTP connection counts; the first one drives the single-POST "
        "end-to-end run (16,64)",
    )
    parser.add_argument("--duration", type=float, help=f"seconds per load run ({DEFAULT_DURATION})")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        help=f"worker idle time before the idle-latency burst ({DEFAULT_IDLE_SECONDS})",
    )
    parser.add_argument(
        "--idle-rounds",
        type=_positive,
        help=f"idle windows, each then a burst, per repetition ({DEFAULT_IDLE_ROUNDS})",
    )
    parser.add_argument("--batch-size", type=_positive, help="tasks per batch POST (1000)")
    parser.add_argument("--batch-connections", type=_positive, help="concurrent batch POSTs (2)")
    parser.add_argument("--burst-size", type=_positive, help="tasks per latency burst (10)")
    parser.add_argument("--bursts", type=_positive, help="warm bursts per repetition (10)")
    parser.add_argument("--burst-gap", type=float, help="seconds idle between warm bursts (0.2)")
    parser.add_argument(
        "--processes",
        type=_positive,
        help="worker processes, both stacks (CALLBOARD_WORKER_PROCESSES or 2)",
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        help="threads per worker process (CALLBOARD_WORKER_THREADS or 5)",
    )
    parser.add_argument("--redis-db", type=int, help=f"the bench's Redis db ({DEFAULT_REDIS_DB})")
    parser.add_argument("--database", help=f"the bench's PostgreSQL database ({DEFAULT_DATABASE})")
    parser.add_argument(
        "--loadgen", choices=("auto", "wrk", "python"), help="load generator (auto: wrk if found)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument(
        "--profile",
        dest="profile_dir",
        metavar="DIR",
        help="record py-spy profiles of web and worker in the first repetition of each "
        "submit and end-to-end run into DIR "
        "(needs `pip install py-spy`; the figures of a profiled run are slower)",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run, for a smoke test")
    args = parser.parse_args(argv)
    values = {
        "processes": int(env.get("CALLBOARD_WORKER_PROCESSES") or 2),
        "threads": int(env.get("CALLBOARD_WORKER_THREADS") or 5),
        "web_threads": int(env.get("CALLBOARD_WEB_THREADS") or 8),
    }
    if args.quick:
        values.update(QUICK, quick=True)
    for field in dataclasses.fields(Options):
        given = getattr(args, field.name, None)
        if given is not None and field.name != "quick":
            values[field.name] = given
    if not 0 <= values.get("redis_db", DEFAULT_REDIS_DB) <= 15:
        parser.error("--redis-db must be between 0 and 15")
    if values.get("redis_db") == 0:
        parser.error("--redis-db 0 is the shared default db; pick another")
    return Options(**values)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} needs positive integers")
    return values
