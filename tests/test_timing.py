"""Reminder offsets and quiet hours: parsed from the config, computed in the school's zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from jobs.timing import parse_clock, parse_offset, parse_quiet_hours

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")


def local(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=ZONE)


def test_days_before_at_a_time_is_that_local_time() -> None:
    starts = local(10, 7, 30)
    due = parse_offset("7d 08:00").due(starts, ZONE)
    assert due == local(3, 8)
    assert due.tzinfo == dt.UTC


def test_hours_and_minutes_before_count_from_the_first_session() -> None:
    starts = local(10, 7, 30)
    assert parse_offset("2h").due(starts, ZONE) == local(10, 5, 30)
    assert parse_offset("90m").due(starts, ZONE) == local(10, 6)


def test_an_offset_is_written_loosely() -> None:
    assert parse_offset("  1d   8:05 ").text == "1d 8:05"
    assert parse_offset("1d 8:05").at == dt.time(8, 5)


@pytest.mark.parametrize("text", ["", "7", "7d", "d 08:00", "2x", "0h", "1d 24:00", "-2h"])
def test_bad_offsets_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"reminder offset|at least|time of day"):
        parse_offset(text)


def test_clock_needs_hours_and_minutes() -> None:
    assert parse_clock("07:05") == dt.time(7, 5)
    for text in ("7", "7h", "24:00", "12:60"):
        with pytest.raises(ValueError, match="time of day"):
            parse_clock(text)


@pytest.mark.parametrize(
    ("hour", "minute", "quiet"),
    [(20, 59, False), (21, 0, True), (23, 59, True), (0, 0, True), (6, 59, True), (7, 0, False)],
)
def test_quiet_hours_span_midnight(hour: int, minute: int, quiet: bool) -> None:
    hours = parse_quiet_hours("21:00-07:00")
    assert hours is not None
    assert hours.contains(local(5, hour, minute).astimezone(dt.UTC), ZONE) is quiet


def test_quiet_hours_within_a_day() -> None:
    hours = parse_quiet_hours("12:00-13:30")
    assert hours is not None
    assert hours.contains(local(5, 12, 45), ZONE)
    assert not hours.contains(local(5, 13, 30), ZONE)
    assert not hours.contains(local(5, 11, 59), ZONE)


def test_quiet_hours_end_the_next_morning() -> None:
    hours = parse_quiet_hours("21:00-07:00")
    assert hours is not None
    assert hours.ends_after(local(5, 22), ZONE) == local(6, 7)
    assert hours.ends_after(local(6, 3), ZONE) == local(6, 7)


def test_empty_quiet_hours_are_none() -> None:
    assert parse_quiet_hours("") is None
    assert parse_quiet_hours("  ") is None
