"""Graceful waitress entry point for the Callboard web process.

waitress on its own drops in-flight requests on SIGTERM: Python's default SIGTERM handler kills
the process while responses are still being computed or written. ``serve`` runs waitress's event
loop itself instead, so that SIGTERM and SIGINT only stop the server from accepting connections.
Requests that are already being handled are allowed to finish (bounded by a timeout), idle
keep-alive connections are closed, and only then does ``serve`` return.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer

logger = logging.getLogger("callboard.web")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve(
    app: Callable[..., Any],
    *,
    host: str,
    port: int,
    threads: int,
    shutdown_timeout: float,
    on_shutdown: Callable[[], object] | None = None,
    **waitress_options: Any,
) -> int:
    """Serve the WSGI `app` with waitress until SIGTERM or SIGINT; then stop accepting new
    connections, let in-flight requests finish (bounded by shutdown_timeout seconds), close idle
    keep-alive connections, call on_shutdown() (if given; e.g. to close DB pools), and return 0.
    A second SIGTERM/SIGINT during the drain does not abort it (honcho and PaaS may signal twice).

    ``waitress_options`` are passed on to ``waitress.create_server`` (e.g.
    ``max_request_body_size``). Must be called from the main thread, because it installs signal
    handlers.
    """
    server = waitress.create_server(app, host=host, port=port, threads=threads, **waitress_options)
    socket_map = _socket_map(server)
    listeners = [d for d in socket_map.values() if isinstance(d, BaseWSGIServer)]
    stop = _StopRequest(wake=listeners[0].pull_trigger)
    previous = {signum: signal.signal(signum, stop.handle) for signum in _SIGNALS}
    try:
        urls = ", ".join(_url(listener) for listener in listeners)
        logger.info("Serving on %s with %d threads.", urls, threads)
        while not stop.signals:
            _poll(server, socket_map, server.adj.asyncore_loop_timeout)
        _drain(server, socket_map, listeners, stop, shutdown_timeout)
        logger.info("Web server stopped.")
        if on_shutdown is not None:
            on_shutdown()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    return 0


class _StopRequest:
    """Records SIGTERM/SIGINT and wakes the event loop; does nothing else inside the handler."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake: Callable[[], None] | None = wake
        self.signals: list[int] = []

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)
        if self.wake is not None:
            self.wake()  # one byte into waitress's trigger pipe, so select() returns at once


def _drain(
    server: Any,
    socket_map: dict[int, Any],
    listeners: list[BaseWSGIServer],
    stop: _StopRequest,
    timeout: float,
) -> None:
    """Stop accepting, wait for in-flight requests (at most `timeout` s), then close everything."""
    for listener in listeners:
        # Not listener.close(): that would also close the trigger that worker threads pull.
        wasyncore.dispatcher.close(listener)
    in_flight = sum(not _is_idle(channel) for channel in _channels(socket_map))
    logger.info(
        "Received %s; draining %s (timeout %.1f s).",
        _signal_name(stop.signals[0]),
        _in_flight_requests(in_flight),
        timeout,
    )
    deadline = time.monotonic() + timeout
    signals_seen = 1
    while channels := _channels(socket_map):
        for signum in stop.signals[signals_seen:]:
            logger.info("Received %s again; the drain continues.", _signal_name(signum))
        signals_seen = len(stop.signals)
        for channel in channels:
            if _is_idle(channel):
                channel.will_close = True  # the loop closes it on its next pass
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            busy = [channel for channel in channels if not _is_idle(channel)]
            logger.warning(
                "The shutdown timeout expired; abandoning %s.", _in_flight_requests(len(busy))
            )
            for channel in channels:
                channel.handle_close()  # marks it disconnected, so its task stops writing
            break
        _poll(server, socket_map, min(remaining, server.adj.asyncore_loop_timeout))
    stop.wake = None  # the trigger is about to be closed; its fd number may be reused
    server.task_dispatcher.shutdown(timeout=max(deadline - time.monotonic(), 0.2))
    wasyncore.close_all(socket_map)


def _is_idle(channel: HTTPChannel) -> bool:
    """True if the connection has no request being received, handled, or written out."""
    return not channel.requests and channel.request is None and not channel.total_outbufs_len


def _channels(socket_map: dict[int, Any]) -> list[HTTPChannel]:
    return [d for d in socket_map.values() if isinstance(d, HTTPChannel)]


def _poll(server: Any, socket_map: dict[int, Any], timeout: float) -> None:
    """Run one pass of waitress's event loop: accept, read, write, and run trigger thunks."""
    wasyncore.loop(timeout=timeout, use_poll=server.adj.asyncore_use_poll, map=socket_map, count=1)


def _socket_map(server: Any) -> dict[int, Any]:
    # create_server returns a TcpWSGIServer, or a MultiSocketServer if `host` resolves to more
    # than one address (e.g. "localhost" on a host with IPv6).
    return server.map if isinstance(server, MultiSocketServer) else server._map


def _url(listener: BaseWSGIServer) -> str:
    host = listener.effective_host
    return f"http://{f'[{host}]' if ':' in host else host}:{listener.effective_port}"


def _signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def _in_flight_requests(count: int) -> str:
    return f"{count} in-flight request{'' if count == 1 else 's'}"
