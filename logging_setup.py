"""One log format for every Callboard process, and the request and task a log line is about.

Each event is one line with its time (UTC, milliseconds), level, process name and pid, logger
and message, then the request id and task id when the line is about a request or a task (shown
here on two lines; it is one):

    2026-11-27T23:08:53.570Z INFO worker[4242] callboard.worker: Task '8dd9...' succeeded.
        request_id=abc123 task_id=8dd9...

``LOG_FORMAT=json`` writes one JSON object per line instead, with the keys ``time``, ``level``,
``process``, ``pid``, ``logger``, ``message``, ``request_id`` and ``task_id`` (when present) and
``exc_info`` (the traceback, as one string). In the plain format a traceback follows its line,
indented, so every line that starts with a timestamp starts an event.

The request id and task id come from two context variables: the web's request-id middleware
sets the first for the duration of a request, the worker's ``LogContext`` middleware sets both
for the duration of a message. Each thread (and each asyncio task) sees its own values.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO

from settings import Settings

#: The formats ``LOG_FORMAT`` may name.
FORMATS = ("plain", "json")
#: What a client-given request id may look like; anything else is replaced by a fresh one.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")

#: The id of the HTTP request being handled, or that caused the message being processed.
request_id_var: ContextVar[str | None] = ContextVar("callboard_request_id", default=None)
#: The id of the task whose message is being processed.
task_id_var: ContextVar[str | None] = ContextVar("callboard_task_id", default=None)


def configure_logging(settings: Settings, process: str, *, stream: IO[str] | None = None) -> None:
    """Give every handler of the root logger Callboard's format for ``process`` (``web``,
    ``worker``, ``scheduler``), adding one on ``stream`` (stderr) if there is none, and set the
    root level from ``LOG_LEVEL``.

    Dramatiq's worker processes configure their own handler (a pipe to the main process) before
    our code runs; it keeps its stream and gets our format.
    """
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(stream or sys.stderr))
    formatter = make_formatter(settings.log_format, process)
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(settings.log_level)


def make_formatter(log_format: str, process: str) -> logging.Formatter:
    """The formatter for ``log_format`` (one of ``FORMATS``), naming ``process`` on each line."""
    if log_format == "json":
        return JsonFormatter(process)
    if log_format == "plain":
        return PlainFormatter(process)
    raise ValueError(f"unknown log format {log_format!r}; expected one of {', '.join(FORMATS)}")


def valid_request_id(value: object) -> str | None:
    """``value`` if it is an acceptable request id (1..128 of ``[A-Za-z0-9._-]``), else None."""
    if isinstance(value, str) and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return None


def current_request_id() -> str | None:
    """The request id of the request (or message) this thread is handling, if any."""
    return request_id_var.get()


class PlainFormatter(logging.Formatter):
    """``<time> <LEVEL> <process>[<pid>] <logger>: <message> request_id=... task_id=...``."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_timestamp(record)} {record.levelname} {self.process}[{record.process}] "
            f"{record.name}: {record.getMessage()}"
        )
        for key, value in _context(record).items():
            line += f" {key}={value}"
        for extra in (_exception_text(self, record), record.stack_info):
            if extra:
                line += "\n" + extra
        return line.replace("\n", "\n    ")


class JsonFormatter(logging.Formatter):
    """One JSON object per line (newlines inside values are escaped by JSON itself)."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": _timestamp(record),
            "level": record.levelname,
            "process": self.process,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
            **_context(record),
        }
        if exc_text := _exception_text(self, record):
            document["exc_info"] = exc_text
        if record.stack_info:
            document["stack_info"] = record.stack_info
        return json.dumps(document, ensure_ascii=False, default=str)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _context(record: logging.LogRecord) -> dict[str, str]:
    # A value passed with ``extra=`` wins over the thread's context.
    context = {
        "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        "task_id": getattr(record, "task_id", None) or task_id_var.get(),
    }
    return {key: str(value) for key, value in context.items() if value}


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    return record.exc_text or None
