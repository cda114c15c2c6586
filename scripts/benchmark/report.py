"""The benchmark's output: a table of medians [min–max], ratios and targets, then the RESULT line.

A ratio pairs each repetition with the baseline's repetition of the same number (the baselines
run first, each alone), and is reported as the median [min–max] of those per-repetition ratios.
"""

from __future__ import annotations

import dataclasses
import os
import statistics

from scripts.benchmark import cpu
from scripts.benchmark.context import Results
from scripts.benchmark.options import Options

#: The targets of issue 6.
TARGET_E2E_BATCH = 0.70
TARGET_E2E_SINGLE = 0.40
TARGET_BATCH_SUBMIT = 10_000
TARGET_P50_MS = 5.0
TARGET_P99_MS = 25.0
TARGET_RSS_MB = 120.0
TARGET_IDLE_CPU = 3.0
#: Process labels that are Callboard's own (the rest are baselines).
CALLBOARD_PROCESSES = ("web", "worker", "scheduler")
RESULT_KEYS = (
    "e2e_batch_vs_dramatiq",
    "e2e_single_vs_get",
    "batch_submit_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "idle_latency_p50_ms",
    "idle_latency_p99_ms",
    "max_rss_mb",
)


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table."""

    label: str
    figure: str
    unit: str
    baseline: str | None = None
    target: float | None = None
    higher_is_better: bool = True
    ratio_target: bool = False


def render(results: Results, options: Options, header: list[str]) -> str:
    """The whole report: header lines, the table, notes, and the RESULT line last."""
    out = [*header, ""]
    out += _section("Baselines (each alone on the machine)", _baseline_rows(options), results)
    out += _section("Submit (web, scheduler; workers stopped)", _submit_rows(options), results)
    out += _section("End to end (web, scheduler, workers)", _e2e_rows(options), results)
    out += _section("Submit → started_at latency, idle workers", _latency_rows(options), results)
    out += _cpu(results)
    out += _memory(results)
    out += _connections(results)
    if results.notes:
        out += ["", "Notes:"] + [f"  - {note}" for note in results.notes]
    out += ["", result_line(results, options)]
    return "\n".join(out)


def result_line(results: Results, options: Options) -> str:
    """``RESULT key=value ...`` with the eight headline figures (medians)."""
    conns = options.e2e_connections
    values = {
        "e2e_batch_vs_dramatiq": _ratio(results, "e2e_batch_per_s", "stock_drain_per_s"),
        "e2e_single_vs_get": _ratio(results, "e2e_single_per_s", f"bare_get_rps@{conns}"),
        "batch_submit_per_s": results.median("batch_submit_per_s"),
        "latency_p50_ms": results.median("latency_p50"),
        "latency_p99_ms": results.median("latency_p99"),
        "idle_latency_p50_ms": results.median("idle_latency_p50"),
        "idle_latency_p99_ms": results.median("idle_latency_p99"),
        "max_rss_mb": max_rss(results),
    }
    parts = []
    for key in RESULT_KEYS:
        value = values[key]
        if value is None:
            text = "nan"
        elif key.endswith("_vs_dramatiq") or key.endswith("_vs_get"):
            text = f"{value[0]:.3f}"
        elif key in ("batch_submit_per_s", "max_rss_mb"):
            text = f"{round(value)}"
        else:
            text = f"{value:.1f}"
        parts.append(f"{key}={text}")
    return "RESULT " + " ".join(parts)


def max_rss(results: Results) -> float | None:
    """The largest peak RSS of any Callboard process, in MiB."""
    peaks = [mb for name, mb in results.peak_rss.items() if name.startswith(CALLBOARD_PROCESSES)]
    return max(peaks) if peaks else None


def _baseline_rows(options: Options) -> list[Row]:
    rows = [Row(f"stock Dramatiq no-op drain ({options.n:,} msgs)", "stock_drain_per_s", "msg/s")]
    for c in options.connections:
        rows += [
            Row(f"bare waitress GET, {c} conns", f"bare_get_rps@{c}", "req/s"),
            Row("    p50 latency", f"bare_get_p50@{c}", "ms", higher_is_better=False),
            Row("    p99 latency", f"bare_get_p99@{c}", "ms", higher_is_better=False),
        ]
    return rows


def _submit_rows(options: Options) -> list[Row]:
    rows = []
    for c in options.connections:
        rows += [
            Row(f"POST /tasks, {c} conns", f"submit_rps@{c}", "req/s", f"bare_get_rps@{c}"),
            Row("    p50 latency", f"submit_p50@{c}", "ms", f"bare_get_p50@{c}", None, False),
            Row("    p99 latency", f"submit_p99@{c}", "ms", f"bare_get_p99@{c}", None, False),
        ]
    label = f"POST /tasks/batch ({options.batch_size}/req, {options.batch_connections} conns)"
    return rows + [
        Row(label, "batch_submit_per_s", "tasks/s", "stock_drain_per_s", TARGET_BATCH_SUBMIT),
        Row("    p50 latency per batch", "batch_p50", "ms", higher_is_better=False),
        Row("    p99 latency per batch", "batch_p99", "ms", higher_is_better=False),
    ]


def _e2e_rows(options: Options) -> list[Row]:
    c = options.e2e_connections
    return [
        Row(
            f"single POSTs, {options.n:,} tasks, {c} conns",
            "e2e_single_per_s",
            "tasks/s",
            f"bare_get_rps@{c}",
            TARGET_E2E_SINGLE,
            ratio_target=True,
        ),
        Row(
            f"batches, {options.n:,} tasks",
            "e2e_batch_per_s",
            "tasks/s",
            "stock_drain_per_s",
            TARGET_E2E_BATCH,
            ratio_target=True,
        ),
    ]


def _latency_rows(options: Options) -> list[Row]:
    warm = f"warm bursts of {options.burst_size} ({options.burst_gap:g} s apart)"
    o = options
    idle = f"{o.idle_rounds}× ({o.idle_seconds:g} s idle, burst of {o.burst_size})"
    return [
        Row(f"{warm}: p50", "latency_p50", "ms", None, TARGET_P50_MS, False),
        Row(f"{warm}: p99", "latency_p99", "ms", None, TARGET_P99_MS, False),
        Row(f"{idle}: p50", "idle_latency_p50", "ms", None, TARGET_P50_MS, False),
        Row(f"{idle}: p99", "idle_latency_p99", "ms", None, TARGET_P99_MS, False),
    ]


def _section(title: str, rows: list[Row], results: Results) -> list[str]:
    out = [
        "",
        title,
        f"  {'figure':<46} {'median':>10} {'[min–max]':>21} {'unit':<8} "
        f"{'vs baseline':>24} {'target':>16}",
    ]
    for row in rows:
        values = results.figures.get(row.figure)
        if not values:
            continue
        spread = f"[{_num(min(values))}–{_num(max(values))}]"
        ratio_text, ratio = "", None
        if row.baseline and results.figures.get(row.baseline):
            ratio = _ratio(results, row.figure, row.baseline)
            ratio_text = f"{ratio[0]:.2f}× [{ratio[1]:.2f}–{ratio[2]:.2f}]"
        target = ""
        if row.target is not None:
            measured = ratio[0] if row.ratio_target and ratio else statistics.median(values)
            ok = measured >= row.target if row.higher_is_better else measured <= row.target
            sign = "≥" if row.higher_is_better else "≤"
            wanted = f"{row.target:.2f}×" if row.ratio_target else _num(row.target)
            target = f"{sign} {wanted} {'ok' if ok else 'MISS'}"
        out.append(
            f"  {row.label:<46} {_num(statistics.median(values)):>10} {spread:>21} "
            f"{row.unit:<8} {ratio_text:>24} {target:>16}"
        )
    return out


def _cpu(results: Results) -> list[str]:
    if not results.cpu:
        return []
    columns = ["web", "scheduler", "worker", cpu.TOTAL, cpu.POSTGRES, cpu.REDIS]
    out = [
        "",
        "CPU use, % of one core (median over repetitions; the machine has "
        f"{os.cpu_count()}). Target while idle: total ≤ {TARGET_IDLE_CPU:g} %",
        f"  {'phase':<24}" + "".join(f"{name:>19}" for name in columns),
    ]
    for phase, parts in results.cpu.items():
        cells = [
            f"{statistics.median(parts[name]):.1f}" if parts.get(name) else "-" for name in columns
        ]
        out.append(f"  {phase:<24}" + "".join(f"{cell:>19}" for cell in cells))
    out.append(
        "  (total: Callboard's processes. postgres backends: those connected to the bench "
        "database. redis-server: the whole shared server.)"
    )
    return out


def _memory(results: Results) -> list[str]:
    out = [
        "",
        f"Peak RSS (VmHWM) over the whole run, MiB (target: each Callboard process ≤ "
        f"{TARGET_RSS_MB:g})",
    ]
    for name, mb in sorted(results.peak_rss.items()):
        mark = ""
        if name.startswith(CALLBOARD_PROCESSES):
            mark = "ok" if mb <= TARGET_RSS_MB else "MISS"
        out.append(f"  {name:<46} {mb:>10.1f} {mark:>21}")
    return out


def _connections(results: Results) -> list[str]:
    phases = sorted({k.split("@", 1)[1] for k in results.figures if k.startswith("conn_pg@")})
    if not phases:
        return []
    out = [
        "",
        "Connections opened per 1,000 tasks (median [min–max] over repetitions)",
        f"  {'run':<22} {'PostgreSQL sessions':>26} {'Redis, server-wide':>26} "
        f"{'Redis, new on bench db':>26}",
    ]
    for phase in phases:
        cells = []
        for kind in ("conn_pg", "conn_redis", "conn_redis_db"):
            values = results.figures[f"{kind}@{phase}"]
            cells.append(f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]")
        out.append(f"  {phase:<22} {cells[0]:>26} {cells[1]:>26} {cells[2]:>26}")
    out.append(
        "  (PostgreSQL: pg_stat_database.sessions of the bench database. Redis server-wide: "
        "INFO total_connections_received, which counts every client of a shared server."
    )
    background = results.median("redis_background_per_s")
    if background is not None:
        out.append(
            f"  While the stack was idle the Redis server accepted {background:.1f} connections/s "
            "in all: other clients' background. Redis, new on bench db: connections to the "
            "bench's db opened during the run and still open at its end.)"
        )
    else:
        out[-1] += ")"
    return out


def _ratio(results: Results, figure: str, baseline: str) -> tuple[float, float, float] | None:
    values, bases = results.figures.get(figure), results.figures.get(baseline)
    if not values or not bases:
        return None
    if len(bases) < len(values):
        bases = bases + [statistics.median(bases)] * (len(values) - len(bases))
    ratios = [v / b for v, b in zip(values, bases, strict=False) if b]
    if not ratios:
        return None
    return statistics.median(ratios), min(ratios), max(ratios)


def _num(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
