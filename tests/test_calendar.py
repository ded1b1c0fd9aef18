"""The .ics writer: events per session or one all-day event, escaping, CRLF and folding."""

from __future__ import annotations

import datetime as dt

from db.models import ClassSession, Form, Program, TrainingClass
from handlers.calendar import class_calendar, escape_text, fold

NOW = dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.UTC)
VN = dt.timezone(dt.timedelta(hours=7))


def _class(location: str = "Hội trường A, Trường Chính trị; tầng 2") -> TrainingClass:
    return TrainingClass(
        id=7,
        code="KN-01",
        title="Kỹ năng lãnh đạo, quản lý",
        program=Program.KY_NANG,
        form=Form.FULL_TIME,
        location=location,
        start_date=dt.date(2026, 12, 7),
        end_date=dt.date(2026, 12, 11),
        registration_deadline=dt.date(2026, 12, 1),
        capacity=30,
    )


def _unfold(text: str) -> list[str]:
    return text.replace("\r\n ", "").split("\r\n")


def test_one_event_per_session_in_utc_with_the_session_or_class_location() -> None:
    sessions = [
        ClassSession(
            id=11,
            class_id=7,
            starts_at=dt.datetime(2026, 12, 7, 8, 0, tzinfo=VN),
            ends_at=dt.datetime(2026, 12, 7, 11, 30, tzinfo=VN),
            topic="Khai giảng",
            location=None,
        ),
        ClassSession(
            id=12,
            class_id=7,
            starts_at=dt.datetime(2026, 12, 8, 13, 30, tzinfo=VN),
            ends_at=dt.datetime(2026, 12, 8, 17, 0, tzinfo=VN),
            topic="",
            location="Phòng 301",
        ),
    ]
    text = class_calendar(_class(), sessions, now=NOW).decode()
    lines = _unfold(text)
    assert lines[0] == "BEGIN:VCALENDAR"
    assert lines[-2:] == ["END:VCALENDAR", ""]
    assert lines.count("BEGIN:VEVENT") == 2
    assert "UID:class-7-session-11@trainingbot" in lines
    assert "UID:class-7-session-12@trainingbot" in lines
    assert "DTSTART:20261207T010000Z" in lines
    assert "DTEND:20261207T043000Z" in lines
    assert "DTSTART:20261208T063000Z" in lines
    assert "DTSTAMP:20261130T180000Z" in lines
    assert "SUMMARY:KN-01 – Kỹ năng lãnh đạo\\, quản lý: Khai giảng" in lines
    assert "LOCATION:Hội trường A\\, Trường Chính trị\\; tầng 2" in lines
    assert "LOCATION:Phòng 301" in lines


def test_without_sessions_one_all_day_event_spans_the_dates() -> None:
    lines = _unfold(class_calendar(_class(), [], now=NOW).decode())
    assert lines.count("BEGIN:VEVENT") == 1
    assert "UID:class-7@trainingbot" in lines
    assert "DTSTART;VALUE=DATE:20261207" in lines
    assert "DTEND;VALUE=DATE:20261212" in lines  # exclusive: the day after the last day


def test_crlf_line_endings_and_lines_folded_at_75_octets() -> None:
    long_place = "Hội trường lớn, " * 12
    content = class_calendar(_class(location=long_place), [], now=NOW)
    assert content.endswith(b"\r\n")
    assert b"\n" not in content.replace(b"\r\n", b"")
    for line in content.split(b"\r\n"):
        assert len(line) <= 75
        line.decode()  # never split inside a UTF-8 character
    location = next(line for line in _unfold(content.decode()) if line.startswith("LOCATION:"))
    assert location == "LOCATION:" + escape_text(long_place)


def test_escaping_and_folding() -> None:
    assert escape_text("a,b;c\\d\ne") == "a\\,b\\;c\\\\d\\ne"
    assert escape_text("x\r\ny") == "x\\ny"
    assert fold("short") == "short"
    folded = fold("X" * 80)
    assert folded == "X" * 75 + "\r\n " + "X" * 5
    accented = fold("ệ" * 40)  # 3 octets each
    first, second = accented.split("\r\n")
    assert len(first.encode()) == 75
    assert len(second.encode()) <= 75
    assert second.startswith(" ")
