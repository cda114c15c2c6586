"""The second-resolution schedule that periodiq asks when to send the rebalance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from actors.every_seconds import EverySeconds


def at(minute: int, second: int, microsecond: int = 0) -> datetime:
    return datetime(2030, 5, 6, 7, minute, second, microsecond, tzinfo=UTC)


@pytest.mark.parametrize(
    ("second", "valid"),
    [(0, True), (10, True), (20, True), (50, True), (1, False), (9, False), (59, False)],
)
def test_only_multiples_of_ten_seconds_are_scheduled(second, valid):
    assert EverySeconds(10).validate(at(8, second)) is valid


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(8, 0), at(8, 10)),
        (at(8, 0, 1), at(8, 10)),
        (at(8, 9, 999_999), at(8, 10)),
        (at(8, 10), at(8, 20)),
        (at(8, 10, 500_000), at(8, 20)),
        (at(8, 50), at(9, 0)),
        (at(8, 59), at(9, 0)),
        (at(8, 59, 999_999), at(9, 0)),
    ],
)
def test_the_next_scheduled_instant_is_the_next_ten_strictly_after_now(now, expected):
    assert EverySeconds(10).next_valid_date(now) == expected


def test_the_next_instant_rolls_over_the_hour_and_the_day():
    schedule = EverySeconds(10)

    assert schedule.next_valid_date(datetime(2030, 12, 31, 23, 59, 55, tzinfo=UTC)) == datetime(
        2031, 1, 1, tzinfo=UTC
    )


def test_every_next_instant_is_valid_and_they_are_one_period_apart():
    # Given
    schedule = EverySeconds(10)
    instant = at(8, 3, 250_000)

    # When
    instants = []
    for _ in range(12):
        instant = schedule.next_valid_date(instant)
        instants.append(instant)

    # Then
    assert all(schedule.validate(i) for i in instants)
    assert {(b - a).total_seconds() for a, b in zip(instants, instants[1:], strict=False)} == {10}


@pytest.mark.parametrize("period", [1, 5, 15, 30, 60])
def test_any_period_that_divides_a_minute_is_accepted(period):
    schedule = EverySeconds(period)

    assert schedule.validate(at(8, 0))
    assert schedule.next_valid_date(at(8, 0)) == at(8, 0) + timedelta(seconds=period)
    assert str(schedule) == f"every {period} s"


@pytest.mark.parametrize("period", [0, -10, 7, 45, 120])
def test_a_period_that_does_not_divide_a_minute_is_refused(period):
    with pytest.raises(ValueError, match="divide 60"):
        EverySeconds(period)
