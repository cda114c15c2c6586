"""End-to-end tests for web.server.serve: a real waitress process receiving real signals."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]

SERVER_SCRIPT = """
import json, logging, sys, time
from urllib.parse import parse_qs

from web.server import serve

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/slow":
        ms = int(parse_qs(environ["QUERY_STRING"]).get("ms", ["0"])[0])
        print(f"Request started: /slow?ms={ms}", flush=True)
        time.sleep(ms / 1000)
        body = json.dumps({"slept_ms": ms}).encode()
    elif path == "/fast":
        body = b'{"fast": true}'
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")
code = serve(
    app,
    host="127.0.0.1",
    port=0,
    threads=4,
    shutdown_timeout=float(sys.argv[1]),
    on_shutdown=lambda: print("on_shutdown called", flush=True),
)
print(f"serve returned {code}", flush=True)
sys.exit(code)
"""


class Server:
    """A `serve` subprocess whose merged stdout/stderr is collected line by line."""

    def __init__(self, tmp_path: Path, shutdown_timeout: float) -> None:
        script = tmp_path / "serve_app.py"
        script.write_text(SERVER_SCRIPT)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(shutdown_timeout)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._new_lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_output, daemon=True).start()
        match = self.wait_for_line(r"Serving on http://127\.0\.0\.1:(\d+) with 4 threads\.")
        self.url = f"http://127.0.0.1:{match.group(1)}"
        self.port = int(match.group(1))

    def _read_output(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._new_lines.put(line.rstrip("\n"))

    def wait_for_line(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """Return the first output line matching `pattern`, waiting at most `timeout` s."""
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if match := re.search(pattern, line):
                return match
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._new_lines.get(timeout=remaining)
            except queue.Empty:
                break
            self.lines.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matched {pattern!r} in {timeout} s; output: {self.lines}")

    def signal(self, signum: int) -> float:
        self.proc.send_signal(signum)
        return time.monotonic()

    def wait_for_exit(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self.wait_for_line(r"on_shutdown called", timeout=1)
        return code


class Call:
    """An HTTP GET running in a background thread."""

    def __init__(self, url: str, timeout: float = 15) -> None:
        self.response: requests.Response | None = None
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, args=(url, timeout), daemon=True)
        self._thread.start()

    def _run(self, url: str, timeout: float) -> None:
        try:
            self.response = requests.get(url, timeout=timeout)
        except Exception as error:
            self.error = error

    def result(self, timeout: float) -> requests.Response:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the request did not complete in time"
        assert self.error is None, f"the request failed: {self.error!r}"
        assert self.response is not None
        return self.response


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    servers: list[Server] = []

    def start(shutdown_timeout: float = 10.0) -> Server:
        servers.append(Server(tmp_path, shutdown_timeout))
        return servers[-1]

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=5)


def start_slow_request(server: Server, ms: int) -> Call:
    call = Call(f"{server.url}/slow?ms={ms}")
    server.wait_for_line(rf"Request started: /slow\?ms={ms}")
    return call


def test_sigterm_lets_an_in_flight_request_finish_and_exits_0(start_server):
    server = start_server()
    call = start_slow_request(server, 1500)

    server.signal(signal.SIGTERM)

    response = call.result(timeout=5)
    assert response.status_code == 200
    assert response.json() == {"slept_ms": 1500}
    assert server.wait_for_exit(timeout=3) == 0
    server.wait_for_line(r"Received SIGTERM; draining 1 in-flight request \(timeout 10\.0 s\)\.")
    server.wait_for_line(r"Web server stopped\.")


def test_a_second_sigterm_does_not_cut_the_drain(start_server):
    server = start_server()
    call = start_slow_request(server, 1500)

    first_signal_at = server.signal(signal.SIGTERM)
    # Send the second signal once the drain has started (so the kernel cannot merge the two
    # pending signals into one), and no sooner than 100 ms after the first.
    server.wait_for_line(r"Received SIGTERM; draining 1 in-flight request")
    time.sleep(max(0.0, first_signal_at + 0.1 - time.monotonic()))
    server.signal(signal.SIGTERM)

    response = call.result(timeout=5)
    assert response.status_code == 200
    assert response.json() == {"slept_ms": 1500}
    assert server.wait_for_exit(timeout=3) == 0
    server.wait_for_line(r"Received SIGTERM again; the drain continues\.")


def test_new_connections_are_refused_after_sigterm(start_server):
    server = start_server()
    call = start_slow_request(server, 1500)

    server.signal(signal.SIGTERM)
    server.wait_for_line(r"Received SIGTERM; draining")

    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/fast", timeout=2)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    response = call.result(timeout=5)
    assert response.status_code == 200
    assert server.wait_for_exit(timeout=3) == 0


def test_the_drain_is_bounded_by_the_shutdown_timeout(start_server):
    server = start_server(shutdown_timeout=1)
    call = Call(f"{server.url}/slow?ms=10000")
    server.wait_for_line(r"Request started: /slow\?ms=10000")

    signalled_at = server.signal(signal.SIGTERM)

    assert server.wait_for_exit(timeout=3) == 0
    assert time.monotonic() - signalled_at < 3
    server.wait_for_line(r"The shutdown timeout expired; abandoning 1 in-flight request\.")
    with pytest.raises(AssertionError, match="the request failed"):
        call.result(timeout=3)


def test_sigint_stops_an_idle_server_with_exit_code_0(start_server):
    server = start_server(shutdown_timeout=10)
    with requests.Session() as session:
        # The session keeps this connection open (keep-alive) after the response.
        assert session.get(f"{server.url}/fast", timeout=5).json() == {"fast": True}

        signalled_at = server.signal(signal.SIGINT)

        assert server.wait_for_exit(timeout=3) == 0
        assert time.monotonic() - signalled_at < 3
    # Usually "0 in-flight requests", but the response can reach the client a moment before the
    # waitress worker marks the request as done, so the count may be 1; either way no wait.
    server.wait_for_line(
        r"Received SIGINT; draining [01] in-flight requests? \(timeout 10\.0 s\)\."
    )
    server.wait_for_line(r"serve returned 0")
