"""The log format: one line per event, plain or JSON, naming the request and task it is about."""

from __future__ import annotations

import json
import logging
import re
import sys

import pytest

from logging_setup import make_formatter, request_id_var, task_id_var
from settings import ConfigError, settings_from

PLAIN_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<level>[A-Z]+) (?P<process>\w+)\[(?P<pid>\d+)\] "
    r"(?P<logger>[\w.]+): (?P<message>.*)$"
)
_VARS = {"request_id": request_id_var, "task_id": task_id_var}


def record(message: str = "Task %r succeeded.", *args, exc_info=None, **extra):
    made = logging.LogRecord("callboard.worker", logging.INFO, __file__, 1, message, args, exc_info)
    made.__dict__.update(extra)
    return made


def in_context(formatter: logging.Formatter, made: logging.LogRecord, **context) -> str:
    tokens = [(var, var.set(context.get(name))) for name, var in _VARS.items()]
    try:
        return formatter.format(made)
    finally:
        for var, token in tokens:
            var.reset(token)


def test_a_plain_line_has_time_level_process_logger_message_then_request_and_task():
    line = in_context(
        make_formatter("plain", "worker"),
        record("Task %r succeeded.", "t-1"),
        request_id="abc123",
        task_id="t-1",
    )

    match = PLAIN_LINE.match(line)
    assert match, line
    assert match["level"] == "INFO"
    assert match["process"] == "worker"
    assert match["logger"] == "callboard.worker"
    assert match["message"] == "Task 't-1' succeeded. request_id=abc123 task_id=t-1"


def test_a_plain_line_without_context_names_no_request_or_task():
    line = make_formatter("plain", "web").format(record("Serving."))

    assert line.endswith(" callboard.worker: Serving.")
    assert "request_id" not in line and "task_id" not in line


def test_a_plain_traceback_follows_its_line_indented():
    try:
        raise ValueError("boom")
    except ValueError:
        made = record("Task %r failed.", "t-1", exc_info=sys.exc_info())

    lines = make_formatter("plain", "worker").format(made).splitlines()

    assert PLAIN_LINE.match(lines[0])
    assert lines[1:] and all(line.startswith("    ") for line in lines[1:])
    assert lines[-1].strip() == "ValueError: boom"


def test_a_json_line_is_one_object_with_every_field():
    try:
        raise ValueError("boom\nand more")
    except ValueError:
        made = record("Task %r failed.", "t-1", exc_info=sys.exc_info())

    line = in_context(make_formatter("json", "worker"), made, request_id="abc123", task_id="t-1")

    assert "\n" not in line
    document = json.loads(line)
    assert set(document) == {
        "time",
        "level",
        "process",
        "pid",
        "logger",
        "message",
        "request_id",
        "task_id",
        "exc_info",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", document["time"])
    assert document["level"] == "INFO"
    assert (document["process"], document["pid"]) == ("worker", made.process)
    assert document["message"] == "Task 't-1' failed."
    assert (document["request_id"], document["task_id"]) == ("abc123", "t-1")
    assert document["exc_info"].endswith("ValueError: boom\nand more")


def test_a_json_line_leaves_out_the_request_and_task_when_there_are_none():
    document = json.loads(make_formatter("json", "scheduler").format(record("Sent.")))

    assert "request_id" not in document and "task_id" not in document
    assert "exc_info" not in document


def test_an_explicit_request_id_wins_over_the_context():
    line = in_context(
        make_formatter("plain", "web"), record("Hi.", request_id="given"), request_id="ctx"
    )

    assert line.endswith("Hi. request_id=given")


@pytest.mark.parametrize(("raw", "expected"), [("", "plain"), ("json", "json"), ("JSON", "json")])
def test_log_format_is_read_from_the_environment(raw, expected):
    assert settings_from({"LOG_FORMAT": raw}).log_format == expected


def test_an_unknown_log_format_is_refused_naming_the_variable():
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        settings_from({"LOG_FORMAT": "xml"})
