"""A small HTTP/1.1 keep-alive load generator: the fallback where ``wrk`` is not installed.

``python -m scripts.benchmark.pyload URL SPEC.json --connections C --seconds S [--quota Q]``
sends the request described in ``SPEC.json`` over ``C`` connections for ``S`` seconds (or until
``Q`` requests were answered), stops early on SIGINT, and prints the same ``WRK_JSON`` line as
the wrk script of ``load.py``. One asyncio loop in its own process: it can become the bottleneck
well before wrk does, so the report names the generator used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import urllib.parse
from collections import Counter

JSON_PREFIX = "WRK_JSON "


class _State:
    def __init__(self, quota: int) -> None:
        self.quota = quota
        self.sent = 0
        self.latencies: list[float] = []
        self.status: Counter[int] = Counter()
        self.errors = 0
        self.stop = asyncio.Event()


def main(argv: list[str] | None = None) -> int:
    """Run the load described on the command line; print the result line."""
    parser = argparse.ArgumentParser(prog="pyload")
    parser.add_argument("url")
    parser.add_argument("spec")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quota", type=int, default=0)
    args = parser.parse_args(argv)
    with open(args.spec) as spec_file:
        spec = json.load(spec_file)
    result = asyncio.run(_run(args.url, spec, args.connections, args.seconds, args.quota))
    print(JSON_PREFIX + json.dumps(result), flush=True)
    return 0


async def _run(url: str, spec: dict, connections: int, seconds: float, quota: int) -> dict:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = _encode(spec, f"{host}:{port}")
    state = _State(quota)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, state.stop.set)
    loop.add_signal_handler(signal.SIGTERM, state.stop.set)
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(_connection(host, port, request, state)) for _ in range(connections)
    ]
    stopper = asyncio.create_task(state.stop.wait())
    # Until the time is up, a SIGINT, or (with a quota) every connection is done.
    waited = [stopper, asyncio.gather(*tasks, return_exceptions=True)] if quota else [stopper]
    await asyncio.wait(waited, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    elapsed = time.perf_counter() - started
    state.stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    return _summary(state, elapsed)


async def _connection(host: str, port: int, request: bytes, state: _State) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        state.errors += 1
        return
    try:
        while not state.stop.is_set() and not (state.quota and state.sent >= state.quota):
            state.sent += 1
            began = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            state.latencies.append(time.perf_counter() - began)
            state.status[status] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        state.errors += 1
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


def _encode(spec: dict, host: str) -> bytes:
    body = (spec.get("body") or "").encode()
    headers = {"Host": host, **spec.get("headers", {})}
    if spec.get("body") is not None:
        headers["Content-Length"] = str(len(body))
    head = f"{spec['method']} {spec['path']} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return head.encode() + b"\r\n" + body


def _summary(state: _State, elapsed: float) -> dict:
    ordered = sorted(state.latencies) or [0.0]

    def percentile(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1e6

    return {
        "requests": len(state.latencies),
        "duration_us": int(elapsed * 1e6),
        "errors": state.errors,
        "timeouts": 0,
        "p50_us": percentile(50),
        "p99_us": percentile(99),
        "mean_us": sum(ordered) / len(ordered) * 1e6,
        "max_us": ordered[-1] * 1e6,
        "status": {str(k): v for k, v in state.status.items()},
    }


if __name__ == "__main__":
    sys.exit(main())
