"""The reconnect schedule a worker process's consumers share while Redis is unreachable."""

from __future__ import annotations

import logging

import pytest

from actors.redis_outage import RedisOutage


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def outage(clock):
    return RedisOutage(first_delay=0.5, max_delay=4.0, clock=clock)


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "callboard.broker"]


def test_nothing_waits_while_redis_is_not_known_to_be_down(outage):
    assert outage.wait_left() == 0


def test_consumers_that_fail_together_count_as_one_attempt_logged_once(outage, clock, caplog):
    # Given six consumers of one process whose fetch fails at the same moment
    caplog.set_level(logging.INFO)

    # When each reports its failure
    waits = [outage.failed(ConnectionError("Connection refused")) for _ in range(6)]

    # Then all wait for the same next attempt, and one line says what is wrong and when
    assert waits == [0.5] * 6
    assert outage.wait_left() == 0.5
    (line,) = lines(caplog)
    assert "Redis is unreachable (Connection refused)" in line
    assert "retries in 0.5 s" in line


def test_each_further_failed_attempt_doubles_the_wait_up_to_the_cap(outage, clock, caplog):
    # Given Redis that stays down
    caplog.set_level(logging.INFO)
    announced = []

    # When the consumers retry each time the wait is over, and fail again
    for _ in range(6):
        announced.append(outage.failed(ConnectionError("down")))
        clock.now += outage.wait_left()

    # Then the waits double up to the cap, with one line per attempt
    assert announced == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert len(lines(caplog)) == 6


def test_redis_answering_ends_the_outage_once_and_the_next_one_starts_afresh(outage, clock, caplog):
    # Given an outage two attempts long
    caplog.set_level(logging.INFO)
    outage.failed(ConnectionError("down"))
    clock.now += 0.5
    outage.failed(ConnectionError("down"))
    clock.now += 1.0

    # When Redis answers (several consumers notice)
    outage.answered()
    outage.answered()

    # Then one line says so, nothing waits any more, and a later outage starts at the first delay
    assert lines(caplog)[-1].startswith("Redis answers again after 1.5 s")
    assert len(lines(caplog)) == 3
    assert outage.wait_left() == 0
    assert outage.failed(ConnectionError("down again")) == 0.5
