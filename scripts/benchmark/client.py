"""A small pool of keep-alive HTTP connections for the benchmark's own requests (bursts, batches).

Heavy, steady load goes through ``load.py`` (wrk); this is for requests whose ids and send times
the benchmark needs, e.g. to match a task's ``started_at`` with the moment it was submitted.
"""

from __future__ import annotations

import http.client
import json
import queue
import time
from concurrent.futures import ThreadPoolExecutor

from scripts.benchmark.resources import BenchError


class HttpPool:
    """``size`` keep-alive connections to ``host:port``, each used by one request at a time."""

    def __init__(self, host: str, port: int, headers: dict[str, str], size: int) -> None:
        self.host = host
        self.port = port
        self.headers = {"Content-Type": "application/json", **headers}
        self.size = size
        self._idle: queue.Queue[http.client.HTTPConnection] = queue.Queue()
        for _ in range(size):
            conn = self._connection()
            conn.connect()  # connected now, so no request below pays for it
            self._idle.put(conn)
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="bench-http")

    def post(self, path: str, body: dict) -> tuple[float, dict]:
        """POST ``body`` as JSON; return ``(epoch seconds just before sending, answer)``.

        Raises:
            BenchError: the answer is not a 2xx.
        """
        payload = json.dumps(body).encode()
        conn = self._idle.get()
        try:
            sent_at = time.time()
            conn.request("POST", path, payload, self.headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = self._connection()
            raise
        finally:
            self._idle.put(conn)
        if not 200 <= response.status < 300:
            raise BenchError(f"POST {path} answered {response.status}: {data[:300]!r}")
        return sent_at, json.loads(data)

    def post_concurrently(self, path: str, bodies: list[dict]) -> list[tuple[float, dict]]:
        """POST each of ``bodies`` at once (up to ``size`` in flight); answers in order."""
        futures = [self.executor.submit(self.post, path, body) for body in bodies]
        return [future.result() for future in futures]

    def close(self) -> None:
        """Close every connection and stop the threads."""
        self.executor.shutdown(wait=True)
        while not self._idle.empty():
            self._idle.get().close()

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=60)


def get_status(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """``GET url``: ``(status, body)``, or ``(0, b"")`` if nothing answers."""
    split = url.split("/", 3)
    host, _, port = split[2].partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80), timeout=5)
    try:
        conn.request("GET", "/" + (split[3] if len(split) > 3 else ""), headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()
