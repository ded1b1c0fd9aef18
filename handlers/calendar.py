"""A class as an iCalendar file (RFC 5545), written by hand: one event per session.

A class without a schedule is one all-day event from its first to its last day. Times are
written in UTC (`…Z`), so no time zone definition is needed; text is escaped, lines end in
CRLF and are folded at 75 octets without splitting a UTF-8 character.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from db.models import ClassSession, TrainingClass

PRODUCT = "-//trainingbot//class calendar//VI"
DOMAIN = "trainingbot"
LINE_OCTETS = 75


def escape_text(text: str) -> str:
    """Return `text` as an iCalendar TEXT value: backslash, semicolon, comma and newline escaped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def fold(line: str) -> str:
    """Return one content line folded into CRLF-joined pieces of at most 75 octets each."""
    pieces: list[str] = []
    current = ""
    size = 0
    limit = LINE_OCTETS
    for char in line:
        octets = len(char.encode())
        if size + octets > limit:
            pieces.append(current)
            # A continuation line starts with a space, which counts towards its 75 octets.
            current, size, limit = " ", 1, LINE_OCTETS
        current += char
        size += octets
    pieces.append(current)
    return "\r\n".join(pieces)


def utc_stamp(moment: dt.datetime) -> str:
    """Return an aware moment as an iCalendar UTC date-time, e.g. 20261207T010000Z."""
    return f"{moment.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"


def _date(day: dt.date) -> str:
    return f"{day:%Y%m%d}"


def class_calendar(
    training_class: TrainingClass, sessions: Sequence[ClassSession], *, now: dt.datetime
) -> bytes:
    """Return the class as a VCALENDAR: a VEVENT per session, or one all-day event."""
    stamp = utc_stamp(now)
    summary = f"{training_class.code} – {training_class.title}"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODUCT}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
    ]
    for session in sessions:
        title = f"{summary}: {session.topic}" if session.topic else summary
        location = session.location or training_class.location
        lines += [
            "BEGIN:VEVENT",
            f"UID:class-{training_class.id}-session-{session.id}@{DOMAIN}",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{utc_stamp(session.starts_at)}",
            f"DTEND:{utc_stamp(session.ends_at)}",
            f"SUMMARY:{escape_text(title)}",
            *([f"LOCATION:{escape_text(location)}"] if location else []),
            "END:VEVENT",
        ]
    if not sessions:
        lines += [
            "BEGIN:VEVENT",
            f"UID:class-{training_class.id}@{DOMAIN}",
            f"DTSTAMP:{stamp}",
            f"DTSTART;VALUE=DATE:{_date(training_class.start_date)}",
            # DTEND of an all-day event is exclusive: the day after the last day.
            f"DTEND;VALUE=DATE:{_date(training_class.end_date + dt.timedelta(days=1))}",
            f"SUMMARY:{escape_text(summary)}",
            *(
                [f"LOCATION:{escape_text(training_class.location)}"]
                if training_class.location
                else []
            ),
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines).encode()
