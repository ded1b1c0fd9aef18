"""Roster import and export: validate rows of units, people, classes and schedules; write them.

No file formats here (bot/tabular.py reads those): a row arrives as text cells keyed by
lower-case column name, with the line number the user sees in the file. Validation is
pure and reports every problem of every row; writing happens only when no row is bad,
inside the caller's transaction, with INSERT … ON CONFLICT so that two imports running
at once on PostgreSQL cannot create duplicates. Nothing is ever deleted: people, units
and classes missing from a file stay as they are. The one exception is a schedule: a
sessions file is the complete schedule of every class it names, so those classes'
sessions that are not in the file are removed (classes it does not name keep theirs).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import delete, insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import (
    ClassQuota,
    ClassSession,
    ClassStatus,
    Form,
    Person,
    Program,
    Registration,
    RegistrationStatus,
    Role,
    TheoryLevel,
    TrainingClass,
    Unit,
    UnitKind,
    utcnow,
)
from db.phone import normalize_phone
from db.session import upsert_insert
from db.text import CODE_CHARACTERS, fold, is_code

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)
Kind = Literal["units", "people", "classes", "sessions"]
KINDS: tuple[Kind, ...] = ("units", "people", "classes", "sessions")
# The default of the [bot] timezone setting: schedule times are read in it unless told.
DEFAULT_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")

# The demo roster's class dates are written for this day; load_demo shifts them to today.
DEMO_ANCHOR = dt.date(2026, 11, 24)

REQUIRED_COLUMNS: dict[Kind, tuple[str, ...]] = {
    "units": ("code", "name", "kind", "parent_code"),
    "people": (
        "phone",
        "full_name",
        "unit_code",
        "position",
        "gender",
        "birth_year",
        "theory_level",
        "roles",
    ),
    "classes": (
        "code",
        "title",
        "program",
        "form",
        "location",
        "start_date",
        "end_date",
        "registration_deadline",
        "capacity",
        "max_age",
        "required_theory_level",
        "unit_quotas",
    ),
    "sessions": ("class_code", "date", "start_time", "end_time"),
}
# Columns a file may leave out; a class keeps its current value (or the default) then,
# and a session has no topic and takes place where its class does.
OPTIONAL_COLUMNS: dict[Kind, tuple[str, ...]] = {
    "units": (),
    "people": (),
    "classes": ("requires_approval", "status", "online_url"),
    "sessions": ("topic", "location"),
}

EXPORT_COLUMNS = (
    "class_code",
    "full_name",
    "phone",
    "unit_code",
    "unit_name",
    "status",
    "registered_at",
)

_CODE_LENGTH = 32
_MIN_AGE, _MAX_AGE = 16, 100
# Bound parameters per IN (...) query, well under SQLite's and asyncpg's limits.
_CHUNK = 1000
# Rows written at once past which planner statistics are refreshed.
_BULK = 1000
# PostgreSQL advisory lock that makes imports run one at a time ("trainingbot import").
_IMPORT_LOCK_KEY = int.from_bytes(b"tb-import", "big") % 2**63
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_DAY_FIRST_DATE = re.compile(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})")
# 7:30, 07:30, 07:30:00 (an Excel time cell), 07h30, 7h, 7g30 (giờ), any case.
_TIME = re.compile(r"(\d{1,2})\s*(?::\s*(\d{2})(?::00)?|[hg]\s*(\d{2})?)", re.IGNORECASE)
_QUOTA = re.compile(r"([^:\s]+)\s*:\s*(\d+)")
_GENDERS = {
    "male": "male",
    "nam": "male",
    "female": "female",
    "nữ": "female",
    "nu": "female",
    "other": "other",
    "khác": "other",
    "khac": "other",
}
_TRUE = {"true", "1", "yes", "có", "co", "x"}
_FALSE = {"false", "0", "no", "không", "khong"}


class RosterError(ValueError):
    """A roster problem worded for school staff: unknown class, demo file with bad rows…"""


@dataclass(frozen=True)
class Row:
    """One data row of a file: the line the user sees (header is 1) and its text cells."""

    line: int
    values: Mapping[str, str]


@dataclass(frozen=True)
class RowError:
    """One problem found on one line of a file."""

    line: int
    message: str


@dataclass(frozen=True)
class UnitRecord:
    """A valid units row."""

    line: int
    code: str
    name: str
    kind: UnitKind
    parent_code: str | None


@dataclass(frozen=True)
class PersonRecord:
    """A valid people row, phone normalised to 0XXXXXXXXX."""

    line: int
    phone: str
    full_name: str
    unit_code: str
    position: str
    gender: str | None
    birth_year: int | None
    theory_level: TheoryLevel | None
    is_learner: bool
    is_unit_head: bool
    is_admin: bool


@dataclass(frozen=True)
class ClassRecord:
    """A valid classes row; None in requires_approval/status means "not given"."""

    line: int
    code: str
    title: str
    program: Program
    form: Form
    location: str
    start_date: dt.date
    end_date: dt.date
    registration_deadline: dt.date
    capacity: int
    max_age: int | None
    required_theory_level: TheoryLevel | None
    quotas: tuple[tuple[str, int], ...]
    requires_approval: bool | None
    status: ClassStatus | None
    # None: the file has no online_url column (the stored link stays); "": no link.
    online_url: str | None = None


@dataclass(frozen=True)
class SessionRecord:
    """A valid sessions row; times aware in UTC, location None for the class's own."""

    line: int
    class_code: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    topic: str
    location: str | None


@dataclass(frozen=True)
class ImportResult:
    """What an import did, or the bad rows that stopped it (then nothing was written).

    Only a sessions import removes anything: the stored sessions of the classes in the
    file that the file no longer lists.
    """

    kind: Kind
    rows: int
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: tuple[RowError, ...] = ()
    removed: int = 0
    # Things done that need a person's attention, one line each (the import still happened).
    warnings: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """Return the one-line summary of a successful import."""
        removed = f", {self.removed} removed" if self.kind == "sessions" else ""
        return (
            f"{self.kind}: {self.rows} rows — {self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged{removed}"
        )


@dataclass(frozen=True)
class RegistrationRow:
    """One registration as exported; registered_at is aware (UTC)."""

    class_code: str
    class_start: dt.date
    full_name: str
    phone: str
    unit_code: str
    unit_name: str
    status: RegistrationStatus
    registered_at: dt.datetime


# ---------------------------------------------------------------------------- columns


def missing_columns(kind: Kind, columns: Collection[str]) -> list[str]:
    """Return the required columns a file's header lacks."""
    return [column for column in REQUIRED_COLUMNS[kind] if column not in columns]


def unknown_columns(kind: Kind, columns: Collection[str]) -> list[str]:
    """Return header columns the import does not read (often a typo)."""
    known = set(REQUIRED_COLUMNS[kind]) | set(OPTIONAL_COLUMNS[kind])
    return [column for column in columns if column not in known]


# ---------------------------------------------------------------------- cell parsers
# Each parser takes (column, stripped text) and returns a value or raises ValueError
# with the sentence to show; an empty optional cell gives None or "".


def _code(column: str, text: str) -> str:
    if not text:
        raise ValueError(f"{column} is empty")
    if len(text) > _CODE_LENGTH:
        raise ValueError(f"{column} {text!r} is longer than {_CODE_LENGTH} characters")
    if any(ch.isspace() for ch in text):
        raise ValueError(f"{column} {text!r} must not contain spaces")
    return text


def _new_code(column: str, text: str) -> str:
    """Parse the code a row gives its unit or class (references to one are looser)."""
    code = _code(column, text)
    if not is_code(code):
        raise ValueError(f"{column} {text!r} may contain only {CODE_CHARACTERS}")
    return code


def _optional_code(column: str, text: str) -> str | None:
    return _code(column, text) if text else None


def _text(limit: int) -> Callable[[str, str], str]:
    def parse(column: str, text: str) -> str:
        if not text:
            raise ValueError(f"{column} is empty")
        return _optional_text(limit)(column, text)

    return parse


def _optional_text(limit: int) -> Callable[[str, str], str]:
    def parse(column: str, text: str) -> str:
        if len(text) > limit:
            raise ValueError(f"{column} is longer than {limit} characters")
        return text

    return parse


def _link(column: str, text: str) -> str:
    """Parse a web address to join an online class; empty means none."""
    if text and (
        not text.startswith(("https://", "http://"))
        or any(char.isspace() for char in text)
        or len(text) > 500
    ):
        raise ValueError(f"{column} {text[:60]!r} is not a web address (https://…)")
    return text


def _enum(cls: type[E]) -> Callable[[str, str], E]:
    def parse(column: str, text: str) -> E:
        if not text:
            raise ValueError(f"{column} is empty")
        try:
            return cls(text.lower())
        except ValueError:
            allowed = ", ".join(member.value for member in cls)
            raise ValueError(f"{column} {text!r} is not one of: {allowed}") from None

    return parse


def _optional_enum(cls: type[E]) -> Callable[[str, str], E | None]:
    def parse(column: str, text: str) -> E | None:
        return _enum(cls)(column, text) if text else None

    return parse


def _phone(column: str, text: str) -> str:
    if not text:
        raise ValueError(f"{column} is empty")
    candidate = text
    # A spreadsheet that took 0912000100 for a number shows 912000100: put the 0 back.
    if candidate.isdigit() and len(candidate) == 9:
        candidate = "0" + candidate
    phone = normalize_phone(candidate)
    if phone is None:
        raise ValueError(f"{column} {text!r} is not a Vietnamese mobile number")
    return phone


def parse_date(column: str, text: str) -> dt.date:
    """Return a date written YYYY-MM-DD or DD/MM/YYYY (also with '.' or '-')."""
    if not text:
        raise ValueError(f"{column} is empty")
    if match := _ISO_DATE.fullmatch(text):
        year, month, day = match.groups()
    elif match := _DAY_FIRST_DATE.fullmatch(text):
        day, month, year = match.groups()
    else:
        raise ValueError(f"{column} {text!r} is not a date (use YYYY-MM-DD or DD/MM/YYYY)")
    try:
        return dt.date(int(year), int(month), int(day))
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a valid date") from None


def parse_time(column: str, text: str) -> dt.time:
    """Return a time of day written 07:30, 7:30, 07h30, 7h or 7g30."""
    if not text:
        raise ValueError(f"{column} is empty")
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{column} {text!r} is not a time (use HH:MM, e.g. 07:30)")
    hour, minute = int(match.group(1)), int(match.group(2) or match.group(3) or 0)
    if hour > 23 or minute > 59:
        raise ValueError(f"{column} {text!r} is not a valid time of day")
    return dt.time(hour, minute)


def _positive_int(column: str, text: str) -> int:
    if not text:
        raise ValueError(f"{column} is empty")
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{column} {text!r} is not a positive whole number")
    return int(text)


def _max_age(column: str, text: str) -> int | None:
    # The class files write 0 for "no age limit".
    if text in ("", "0"):
        return None
    if not text.isdigit() or not _MIN_AGE <= int(text) <= _MAX_AGE:
        raise ValueError(
            f"{column} {text!r} is not an age from {_MIN_AGE} to {_MAX_AGE} (0 or empty: no limit)"
        )
    return int(text)


def _birth_year(today: dt.date) -> Callable[[str, str], int | None]:
    def parse(column: str, text: str) -> int | None:
        if not text:
            return None
        if not (text.isdigit() and len(text) == 4):
            raise ValueError(f"{column} {text!r} is not a 4-digit year")
        year = int(text)
        if year > today.year:
            raise ValueError(f"{column} {year} is in the future")
        if not today.year - _MAX_AGE <= year <= today.year - _MIN_AGE:
            raise ValueError(
                f"{column} {year} is implausible (age must be {_MIN_AGE} to {_MAX_AGE})"
            )
        return year

    return parse


def _roles(column: str, text: str) -> frozenset[Role]:
    # An empty cell means an ordinary learner, the model's default.
    names = [name.strip().lower() for name in re.split(r"[;,]", text) if name.strip()]
    if not names:
        return frozenset({Role.LEARNER})
    unknown = [name for name in names if name not in {role.value for role in Role}]
    if unknown:
        allowed = ", ".join(role.value for role in Role)
        raise ValueError(f"{column}: unknown role {unknown[0]!r} (use {allowed}, ';'-separated)")
    return frozenset(Role(name) for name in names)


def _gender(column: str, text: str) -> str | None:
    if not text:
        return None
    gender = _GENDERS.get(text.lower())
    if gender is None:
        raise ValueError(f"{column} {text!r} is not male, female or other")
    return gender


def _optional_bool(column: str, text: str) -> bool | None:
    lowered = text.lower()
    if not lowered:
        return None
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{column} {text!r} is not true/false (or 1/0, có/không)")


def _quotas(column: str, text: str) -> tuple[tuple[str, int], ...]:
    quotas: dict[str, int] = {}
    for part in (part.strip() for part in text.split(";")):
        if not part:
            continue
        match = _QUOTA.fullmatch(part)
        if match is None:
            raise ValueError(f"{column} {part!r} is not UNIT:SEATS (e.g. YTH:8;DCH:8)")
        code, seats = match.group(1), int(match.group(2))
        if seats < 1:
            raise ValueError(f"{column} {part!r}: seats must be at least 1")
        if code in quotas:
            raise ValueError(f"{column}: unit {code!r} is listed twice")
        quotas[code] = seats
    return tuple(sorted(quotas.items()))


def _control_character(column: str, text: str) -> str | None:
    """Return the problem of a cell holding a control character, or None.

    Every cell is one line of plain text, so none is allowed: not NUL (which PostgreSQL
    refuses to store), not a tab or line break inside a cell, not DEL or the C1 controls
    a wrongly decoded file brings in (Unicode category Cc).
    """
    for position, character in enumerate(text, start=1):
        if unicodedata.category(character) == "Cc":
            return (
                f"{column} contains a control character (U+{ord(character):04X}) at "
                f"character {position}; retype the cell as one line of plain text"
            )
    return None


def _cell(
    problems: list[str], values: Mapping[str, str], column: str, parse: Callable[[str, str], T]
) -> T | None:
    """Parse one cell, recording its problem and returning None when it is bad."""
    text = values.get(column, "").strip()
    if (problem := _control_character(column, text)) is not None:
        problems.append(problem)
        return None
    try:
        return parse(column, text)
    except ValueError as exc:
        problems.append(str(exc))
        return None


def _ok(value: T | None) -> T:
    """Return a required value, known to be parsed because its row had no problems."""
    assert value is not None
    return value


def _unknown_unit(column: str, code: str, known: Collection[str]) -> str:
    """Return the message for a unit code that is not in the roster, with a case hint."""
    return _unknown_code(column, code, known, "unit")


def _unknown_code(column: str, code: str, known: Collection[str], noun: str) -> str:
    """Return the message for a code that is not stored, with a hint if only case differs."""
    near = [k for k in known if k.lower() == code.lower()]
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"{column} {code!r} is not a known {noun}{hint}"


def _duplicate(
    seen: dict[str, int], key: str, line: int, label: str, errors: list[RowError]
) -> bool:
    """Record a key's first line; report and return True when it was seen before."""
    if key in seen:
        errors.append(RowError(line, f"duplicate {label} {key!r} (already on line {seen[key]})"))
        return True
    seen[key] = line
    return False


def _row_errors(line: int, problems: list[str]) -> list[RowError]:
    return [RowError(line, problem) for problem in problems]


# -------------------------------------------------------------------- validation (pure)


def validate_units(
    rows: Sequence[Row], existing_parents: Mapping[str, str | None]
) -> tuple[list[UnitRecord], list[RowError]]:
    """Check units rows against each other and the units already stored (code → parent)."""
    records: list[UnitRecord] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for row in rows:
        problems: list[str] = []
        code = _cell(problems, row.values, "code", _new_code)
        name = _cell(problems, row.values, "name", _text(255))
        kind = _cell(problems, row.values, "kind", _enum(UnitKind))
        parent = _cell(problems, row.values, "parent_code", _optional_code)
        errors += _row_errors(row.line, problems)
        if code is not None and _duplicate(seen, code, row.line, "code", errors):
            continue
        if not problems:
            records.append(UnitRecord(row.line, _ok(code), _ok(name), _ok(kind), parent))
    errors += _tree_errors(records, existing_parents)
    return records, sorted(errors, key=lambda e: e.line)


def _tree_errors(
    records: Sequence[UnitRecord], existing_parents: Mapping[str, str | None]
) -> list[RowError]:
    """Report unknown parents and units that would become their own ancestor."""
    parents = dict(existing_parents) | {r.code: r.parent_code for r in records}
    errors: list[RowError] = []
    for record in records:
        if record.parent_code is None:
            continue
        if record.parent_code not in parents:
            message = _unknown_unit("parent_code", record.parent_code, parents)
            errors.append(RowError(record.line, message))
            continue
        chain = [record.code]
        parent: str | None = record.parent_code
        while parent is not None and parent not in chain:
            chain.append(parent)
            parent = parents.get(parent)
        if parent == record.code:
            path = " → ".join([*chain, record.code])
            errors.append(
                RowError(record.line, f"unit {record.code!r} would be its own ancestor: {path}")
            )
    return errors


def validate_people(
    rows: Sequence[Row], unit_codes: Collection[str], *, today: dt.date
) -> tuple[list[PersonRecord], list[RowError]]:
    """Check people rows; units must already be stored (import units first)."""
    records: list[PersonRecord] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for row in rows:
        problems: list[str] = []
        phone = _cell(problems, row.values, "phone", _phone)
        full_name = _cell(problems, row.values, "full_name", _text(255))
        unit_code = _cell(problems, row.values, "unit_code", _code)
        position = _cell(problems, row.values, "position", _optional_text(255))
        gender = _cell(problems, row.values, "gender", _gender)
        birth_year = _cell(problems, row.values, "birth_year", _birth_year(today))
        level = _cell(problems, row.values, "theory_level", _optional_enum(TheoryLevel))
        roles = _cell(problems, row.values, "roles", _roles)
        if unit_code is not None and unit_code not in unit_codes:
            problems.append(_unknown_unit("unit_code", unit_code, unit_codes))
        errors += _row_errors(row.line, problems)
        if phone is not None and _duplicate(seen, phone, row.line, "phone", errors):
            continue
        if problems:
            continue
        held = _ok(roles)
        records.append(
            PersonRecord(
                line=row.line,
                phone=_ok(phone),
                full_name=_ok(full_name),
                unit_code=_ok(unit_code),
                position=_ok(position),
                gender=gender,
                birth_year=birth_year,
                theory_level=level,
                is_learner=Role.LEARNER in held,
                is_unit_head=Role.UNIT_HEAD in held,
                is_admin=Role.ADMIN in held,
            )
        )
    return records, errors


def validate_classes(
    rows: Sequence[Row], unit_codes: Collection[str]
) -> tuple[list[ClassRecord], list[RowError]]:
    """Check classes rows: dates in order, quotas of known units within capacity."""
    records: list[ClassRecord] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for row in rows:
        problems: list[str] = []
        values = row.values
        code = _cell(problems, values, "code", _new_code)
        title = _cell(problems, values, "title", _text(500))
        program = _cell(problems, values, "program", _enum(Program))
        form = _cell(problems, values, "form", _enum(Form))
        location = _cell(problems, values, "location", _optional_text(500))
        start = _cell(problems, values, "start_date", parse_date)
        end = _cell(problems, values, "end_date", parse_date)
        deadline = _cell(problems, values, "registration_deadline", parse_date)
        capacity = _cell(problems, values, "capacity", _positive_int)
        max_age = _cell(problems, values, "max_age", _max_age)
        level = _cell(problems, values, "required_theory_level", _optional_enum(TheoryLevel))
        quotas = _cell(problems, values, "unit_quotas", _quotas)
        approval = _cell(problems, values, "requires_approval", _optional_bool)
        status = _cell(problems, values, "status", _optional_enum(ClassStatus))
        link = _cell(problems, values, "online_url", _link) if "online_url" in values else None
        if start and end and end < start:
            problems.append(f"end_date {end} is before start_date {start}")
        if start and deadline and deadline > start:
            problems.append(f"registration_deadline {deadline} is after start_date {start}")
        if quotas:
            problems += [
                _unknown_unit("unit_quotas unit", unit, unit_codes)
                for unit, _seats in quotas
                if unit not in unit_codes
            ]
            total = sum(seats for _unit, seats in quotas)
            if capacity and total > capacity:
                problems.append(f"unit_quotas total {total} is more than capacity {capacity}")
        errors += _row_errors(row.line, problems)
        if code is not None and _duplicate(seen, code, row.line, "code", errors):
            continue
        if problems:
            continue
        records.append(
            ClassRecord(
                line=row.line,
                code=_ok(code),
                title=_ok(title),
                program=_ok(program),
                form=_ok(form),
                location=_ok(location),
                start_date=_ok(start),
                end_date=_ok(end),
                registration_deadline=_ok(deadline),
                capacity=_ok(capacity),
                max_age=max_age,
                required_theory_level=level,
                quotas=_ok(quotas),
                requires_approval=approval,
                status=status,
                online_url=link,
            )
        )
    return records, errors


def validate_sessions(
    rows: Sequence[Row],
    class_dates: Mapping[str, tuple[dt.date, dt.date]],
    *,
    zone: ZoneInfo,
) -> tuple[list[SessionRecord], list[RowError]]:
    """Check sessions rows against the stored classes (code → first and last day).

    Dates and times are local to `zone`; each session must fall within its class's days,
    end after it starts, and not overlap another session of its class in the file.
    """
    records: list[SessionRecord] = []
    errors: list[RowError] = []
    for row in rows:
        problems: list[str] = []
        values = row.values
        code = _cell(problems, values, "class_code", _code)
        day = _cell(problems, values, "date", parse_date)
        start = _cell(problems, values, "start_time", parse_time)
        end = _cell(problems, values, "end_time", parse_time)
        topic = _cell(problems, values, "topic", _optional_text(500))
        location = _cell(problems, values, "location", _optional_text(500))
        dates = class_dates.get(code) if code is not None else None
        if code is not None and dates is None:
            problems.append(_unknown_code("class_code", code, class_dates, "class"))
        if start is not None and end is not None and end <= start:
            problems.append(f"end_time {end:%H:%M} is not after start_time {start:%H:%M}")
        if day is not None and dates is not None and not dates[0] <= day <= dates[1]:
            problems.append(
                f"date {day} is outside the dates of class {code} ({dates[0]} to {dates[1]})"
            )
        errors += _row_errors(row.line, problems)
        if problems:
            continue
        records.append(
            SessionRecord(
                line=row.line,
                class_code=_ok(code),
                starts_at=dt.datetime.combine(_ok(day), _ok(start), zone).astimezone(dt.UTC),
                ends_at=dt.datetime.combine(_ok(day), _ok(end), zone).astimezone(dt.UTC),
                topic=_ok(topic),
                location=location or None,
            )
        )
    errors += _overlap_errors(records, zone)
    return records, sorted(errors, key=lambda e: e.line)


def _overlap_errors(records: Sequence[SessionRecord], zone: ZoneInfo) -> list[RowError]:
    """Report each session that overlaps an earlier-listed session of the same class."""
    by_class: dict[str, list[SessionRecord]] = {}
    for record in records:
        by_class.setdefault(record.class_code, []).append(record)
    errors: list[RowError] = []
    for code, sessions in by_class.items():
        sessions.sort(key=lambda r: (r.starts_at, r.line))
        # The session that ends last among those starting no later than the current one.
        latest: SessionRecord | None = None
        for record in sessions:
            if latest is not None and record.starts_at < latest.ends_at:
                first, second = sorted((latest, record), key=lambda r: r.line)
                errors.append(
                    RowError(
                        second.line,
                        f"overlaps the session of class {code} on line {first.line} "
                        f"({_local_span(first, zone)})",
                    )
                )
            if latest is None or record.ends_at > latest.ends_at:
                latest = record
    return errors


def _local_span(record: SessionRecord, zone: ZoneInfo) -> str:
    """Return a session's date and times as the file wrote them: 2027-01-11 07:30–11:30."""
    starts, ends = record.starts_at.astimezone(zone), record.ends_at.astimezone(zone)
    return f"{starts:%Y-%m-%d %H:%M}–{ends:%H:%M}"


def shift_class_dates(records: Sequence[ClassRecord], days: int) -> list[ClassRecord]:
    """Return the classes with start, end and deadline moved by `days` days."""
    delta = dt.timedelta(days=days)
    return [
        replace(
            r,
            start_date=r.start_date + delta,
            end_date=r.end_date + delta,
            registration_deadline=r.registration_deadline + delta,
        )
        for r in records
    ]


# ------------------------------------------------------------------------ database


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


async def _upsert(
    session: AsyncSession, model: type[Any], key: list[str], rows: list[dict[str, Any]]
) -> None:
    """Insert rows, updating every given column but created_at where the key exists.

    ON CONFLICT makes a concurrent import of the same key wait and then update instead
    of failing on the unique constraint or inserting a duplicate.
    """
    if not rows:
        return
    columns = [c for c in rows[0] if c not in (*key, "created_at")]
    upsert = upsert_insert(session, model)
    statement = upsert.on_conflict_do_update(
        index_elements=key, set_={c: upsert.excluded[c] for c in columns}
    )
    await session.execute(statement, rows)


async def _refresh_statistics(session: AsyncSession, model: type[Any], changed: int) -> None:
    """Refresh PostgreSQL's planner statistics after a bulk write.

    Until autovacuum gets to it, the planner believes a freshly loaded table is empty and
    the next import's lookups by phone slow down twentyfold.
    """
    if changed >= _BULK and session.get_bind().dialect.name == "postgresql":
        await session.execute(sql_text(f"ANALYZE {model.__tablename__}"))


async def unit_ids(session: AsyncSession) -> dict[str, int]:
    """Return every stored unit's id by code."""
    result = await session.execute(select(Unit.code, Unit.id))
    return {code: unit_id for code, unit_id in result}


async def _stored_units(session: AsyncSession) -> dict[str, tuple[str, UnitKind, str | None]]:
    """Return every stored unit as code → (name, kind, parent code)."""
    parent = aliased(Unit)
    result = await session.execute(
        select(Unit.code, Unit.name, Unit.kind, parent.code).outerjoin(
            parent, Unit.parent_id == parent.id
        )
    )
    return {code: (name, kind, parent_code) for code, name, kind, parent_code in result}


async def import_units(session: AsyncSession, rows: Sequence[Row]) -> ImportResult:
    """Validate units rows and, when all are good, add or update them by code."""
    stored = await _stored_units(session)
    records, errors = validate_units(rows, {code: unit[2] for code, unit in stored.items()})
    if errors:
        return ImportResult("units", len(rows), errors=tuple(errors))
    changed = [r for r in records if stored.get(r.code) != (r.name, r.kind, r.parent_code)]
    await _upsert(
        session, Unit, ["code"], [{"code": r.code, "name": r.name, "kind": r.kind} for r in changed]
    )
    # Parents go in a second pass: a parent may be a unit added later in the same file.
    ids = await unit_ids(session)
    parent_updates = [
        {"id": ids[r.code], "parent_id": ids[r.parent_code] if r.parent_code else None}
        for r in changed
    ]
    if parent_updates:
        await session.execute(update(Unit), parent_updates)
    added = sum(1 for r in changed if r.code not in stored)
    return ImportResult(
        "units", len(rows), added, len(changed) - added, len(records) - len(changed)
    )


def _person_values(record: PersonRecord, unit_id: int) -> dict[str, Any]:
    return {
        "phone": record.phone,
        "full_name": record.full_name,
        "unit_id": unit_id,
        "position": record.position,
        "gender": record.gender,
        "birth_year": record.birth_year,
        "theory_level": record.theory_level,
        "is_learner": record.is_learner,
        "is_unit_head": record.is_unit_head,
        "is_admin": record.is_admin,
    }


async def _stored_people(session: AsyncSession, phones: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Return the stored people with these phones, as the column values an import sets."""
    columns = [
        Person.phone,
        Person.full_name,
        Person.unit_id,
        Person.position,
        Person.gender,
        Person.birth_year,
        Person.theory_level,
        Person.is_learner,
        Person.is_unit_head,
        Person.is_admin,
    ]
    stored: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(phones):
        result = await session.execute(select(*columns).where(Person.phone.in_(chunk)))
        for row in result.mappings():
            stored[row["phone"]] = dict(row)
    return stored


async def import_people(
    session: AsyncSession, rows: Sequence[Row], *, today: dt.date
) -> ImportResult:
    """Validate people rows and, when all are good, add or update them by phone."""
    ids = await unit_ids(session)
    records, errors = validate_people(rows, ids, today=today)
    if errors:
        return ImportResult("people", len(rows), errors=tuple(errors))
    stored = await _stored_people(session, [r.phone for r in records])
    wanted = [_person_values(r, ids[r.unit_code]) for r in records]
    changed = [values for values in wanted if stored.get(values["phone"]) != values]
    now = utcnow()
    await _upsert(
        session,
        Person,
        ["phone"],
        [values | {"created_at": now, "updated_at": now} for values in changed],
    )
    await _refresh_statistics(session, Person, len(changed))
    added = sum(1 for values in changed if values["phone"] not in stored)
    return ImportResult(
        "people", len(rows), added, len(changed) - added, len(records) - len(changed)
    )


def _class_values(record: ClassRecord, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the columns an import sets; a flag not in the file keeps its stored value."""
    approval = record.requires_approval
    if approval is None:
        approval = stored["requires_approval"] if stored else False
    status = record.status
    if status is None:
        status = stored["status"] if stored else ClassStatus.OPEN
    link = record.online_url
    if link is None:
        link = stored["online_url"] if stored else None
    return {
        "code": record.code,
        "title": record.title,
        "search_text": fold(f"{record.code} {record.title}"),
        "program": record.program,
        "form": record.form,
        "location": record.location,
        "start_date": record.start_date,
        "end_date": record.end_date,
        "registration_deadline": record.registration_deadline,
        "capacity": record.capacity,
        "max_age": record.max_age,
        "required_theory_level": record.required_theory_level,
        "requires_approval": approval,
        "status": status,
        "online_url": link or None,
    }


async def _stored_classes(session: AsyncSession, codes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Return the stored classes with these codes: imported columns, id and quotas."""
    columns = [
        TrainingClass.id,
        TrainingClass.code,
        TrainingClass.title,
        TrainingClass.search_text,
        TrainingClass.program,
        TrainingClass.form,
        TrainingClass.location,
        TrainingClass.start_date,
        TrainingClass.end_date,
        TrainingClass.registration_deadline,
        TrainingClass.capacity,
        TrainingClass.max_age,
        TrainingClass.required_theory_level,
        TrainingClass.requires_approval,
        TrainingClass.status,
        TrainingClass.online_url,
    ]
    stored: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(codes):
        result = await session.execute(select(*columns).where(TrainingClass.code.in_(chunk)))
        for row in result.mappings():
            stored[row["code"]] = dict(row) | {"quotas": ()}
        quota_rows = await session.execute(
            select(TrainingClass.code, Unit.code, ClassQuota.seats)
            .join(ClassQuota, ClassQuota.class_id == TrainingClass.id)
            .join(Unit, Unit.id == ClassQuota.unit_id)
            .where(TrainingClass.code.in_(chunk))
        )
        quotas: dict[str, list[tuple[str, int]]] = {}
        for class_code, unit_code, seats in quota_rows:
            quotas.setdefault(class_code, []).append((unit_code, seats))
        for class_code, pairs in quotas.items():
            stored[class_code]["quotas"] = tuple(sorted(pairs))
    return stored


async def import_classes(
    session: AsyncSession,
    rows: Sequence[Row],
    *,
    shift_days: int = 0,
    zone: ZoneInfo = DEFAULT_ZONE,
) -> ImportResult:
    """Validate classes rows and, when all are good, add or update them and their quotas.

    `shift_days` moves every date (the demo uses it to keep its classes upcoming). A
    class whose new dates leave some of its stored sessions (dated in `zone`) outside
    them gets a warning: its schedule should be imported again. That is no error, as a
    schedule import checks sessions against the stored class dates.
    """
    ids = await unit_ids(session)
    records, errors = validate_classes(rows, ids)
    if errors:
        return ImportResult("classes", len(rows), errors=tuple(errors))
    records = shift_class_dates(records, shift_days)
    stored = await _stored_classes(session, [r.code for r in records])
    changed: list[tuple[ClassRecord, dict[str, Any]]] = []
    for record in records:
        current = stored.get(record.code)
        values = _class_values(record, current)
        comparable = {k: v for k, v in (current or {}).items() if k not in ("id", "quotas")}
        if current is None or comparable != values or current["quotas"] != record.quotas:
            changed.append((record, values))
    now = utcnow()
    await _upsert(
        session,
        TrainingClass,
        ["code"],
        [values | {"created_at": now, "updated_at": now} for _record, values in changed],
    )
    await _replace_quotas(session, [record for record, _values in changed], ids)
    moved = [
        record
        for record, _values in changed
        if (current := stored.get(record.code)) is not None
        and (current["start_date"], current["end_date"]) != (record.start_date, record.end_date)
    ]
    warnings = await _sessions_outside(session, moved, stored, zone)
    added = sum(1 for record, _values in changed if record.code not in stored)
    return ImportResult(
        "classes",
        len(rows),
        added,
        len(changed) - added,
        len(records) - len(changed),
        warnings=tuple(warnings),
    )


async def _sessions_outside(
    session: AsyncSession,
    records: Sequence[ClassRecord],
    stored: Mapping[str, Mapping[str, Any]],
    zone: ZoneInfo,
) -> list[str]:
    """Return a warning for each class with stored sessions outside its new dates."""
    by_id = {stored[r.code]["id"]: r for r in records}
    outside: dict[int, int] = {}
    for chunk in _chunks(list(by_id)):
        result = await session.execute(
            select(ClassSession.class_id, ClassSession.starts_at).where(
                ClassSession.class_id.in_(chunk)
            )
        )
        for class_id, starts_at in result:
            record = by_id[class_id]
            if not record.start_date <= starts_at.astimezone(zone).date() <= record.end_date:
                outside[class_id] = outside.get(class_id, 0) + 1
    warnings = []
    for class_id, record in by_id.items():
        if count := outside.get(class_id, 0):
            sessions = (
                "1 scheduled session falls" if count == 1 else f"{count} scheduled sessions fall"
            )
            warnings.append(
                f"{record.code}: {sessions} outside the new dates; import its schedule again"
            )
    return warnings


async def _replace_quotas(
    session: AsyncSession, records: Sequence[ClassRecord], unit_ids: Mapping[str, int]
) -> None:
    """Make the quotas of these classes exactly those of the file."""
    if not records:
        return
    class_ids: dict[str, int] = {}
    for chunk in _chunks([r.code for r in records]):
        result = await session.execute(
            select(TrainingClass.code, TrainingClass.id).where(TrainingClass.code.in_(chunk))
        )
        class_ids.update({code: class_id for code, class_id in result})
    for id_chunk in _chunks(list(class_ids.values())):
        await session.execute(delete(ClassQuota).where(ClassQuota.class_id.in_(id_chunk)))
    quotas = [
        {"class_id": class_ids[r.code], "unit_id": unit_ids[unit], "seats": seats}
        for r in records
        for unit, seats in r.quotas
    ]
    await _upsert(session, ClassQuota, ["class_id", "unit_id"], quotas)


async def _class_dates(session: AsyncSession) -> dict[str, tuple[int, dt.date, dt.date]]:
    """Return every stored class as code → (id, start date, end date)."""
    result = await session.execute(
        select(
            TrainingClass.code, TrainingClass.id, TrainingClass.start_date, TrainingClass.end_date
        )
    )
    return {code: (class_id, start, end) for code, class_id, start, end in result}


async def _lock_classes(session: AsyncSession, class_ids: Sequence[int]) -> None:
    """Lock these classes' rows, in id order, until the transaction ends.

    Two imports of one class's schedule at once on PostgreSQL then run one after the
    other, the second seeing the first's sessions, instead of both inserting them. On
    SQLite, where SQLAlchemy leaves FOR UPDATE out, every unit of work already holds the
    database's write lock from its start (BEGIN IMMEDIATE, see db.session), so the second
    import begins only when the first has committed.
    """
    for chunk in _chunks(class_ids):
        await session.execute(
            select(TrainingClass.id)
            .where(TrainingClass.id.in_(chunk))
            .order_by(TrainingClass.id)
            .with_for_update()
        )


async def import_sessions(
    session: AsyncSession, rows: Sequence[Row], *, zone: ZoneInfo
) -> ImportResult:
    """Validate sessions rows and, when all are good, make them the named classes' schedule.

    A session is matched to a stored one by class and start time: the same end, topic
    and location leave it unchanged, others update it; stored sessions of these classes
    that the file does not list are removed.
    """
    classes = await _class_dates(session)
    dates = {code: (start, end) for code, (_id, start, end) in classes.items()}
    records, errors = validate_sessions(rows, dates, zone=zone)
    if errors:
        return ImportResult("sessions", len(rows), errors=tuple(errors))
    class_ids = sorted({classes[r.class_code][0] for r in records})
    await _lock_classes(session, class_ids)
    # (class id, start) → (session id, end, topic, location); a class and start are unique.
    stored: dict[tuple[int, dt.datetime], tuple[int, dt.datetime, str, str | None]] = {}
    for chunk in _chunks(class_ids):
        found = await session.execute(
            select(
                ClassSession.class_id,
                ClassSession.starts_at,
                ClassSession.id,
                ClassSession.ends_at,
                ClassSession.topic,
                ClassSession.location,
            ).where(ClassSession.class_id.in_(chunk))
        )
        for class_id, starts_at, session_id, ends_at, topic, location in found:
            stored[class_id, starts_at] = (session_id, ends_at, topic, location)
    added: list[dict[str, Any]] = []
    updated: list[dict[str, Any]] = []
    for record in records:
        class_id = classes[record.class_code][0]
        values = {
            "class_id": class_id,
            "starts_at": record.starts_at,
            "ends_at": record.ends_at,
            "topic": record.topic,
            "location": record.location,
        }
        current = stored.pop((class_id, record.starts_at), None)
        if current is None:
            added.append(values)
        elif current[1:] != (record.ends_at, record.topic, record.location):
            updated.append(values | {"id": current[0]})
    removed = [current[0] for current in stored.values()]
    for id_chunk in _chunks(removed):
        await session.execute(delete(ClassSession).where(ClassSession.id.in_(id_chunk)))
    if updated:
        await session.execute(update(ClassSession), updated)
    if added:
        await session.execute(insert(ClassSession), added)
    await _refresh_statistics(session, ClassSession, len(added))
    return ImportResult(
        "sessions",
        len(rows),
        added=len(added),
        updated=len(updated),
        unchanged=len(records) - len(added) - len(updated),
        removed=len(removed),
    )


async def _lock_imports(session: AsyncSession) -> None:
    """Wait until no other import runs, and hold that until the transaction ends.

    Each import decides what it adds and what it updates from a read before it writes;
    two running at once (upserts keep them from duplicating rows) would both report the
    same rows as added. Imports are rare, so one lock for every kind on PostgreSQL (an
    advisory lock held to the end of the transaction; taking it again in the same one,
    as the demo does, is fine). On SQLite each unit of work already has the database's
    write lock from its start (db.session).
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            sql_text("SELECT pg_advisory_xact_lock(:key)"), {"key": _IMPORT_LOCK_KEY}
        )


async def import_rows(
    session: AsyncSession,
    kind: Kind,
    rows: Sequence[Row],
    *,
    today: dt.date,
    shift_days: int = 0,
    zone: ZoneInfo = DEFAULT_ZONE,
) -> ImportResult:
    """Import one file's rows of the given kind; write nothing if any row is bad.

    `zone` is where a schedule's dates and times are local (the [bot] timezone).
    Imports run one at a time (see _lock_imports), so the counts they report are exact.
    """
    await _lock_imports(session)
    if kind == "units":
        return await import_units(session, rows)
    if kind == "people":
        return await import_people(session, rows, today=today)
    if kind == "sessions":
        return await import_sessions(session, rows, zone=zone)
    return await import_classes(session, rows, shift_days=shift_days, zone=zone)


# -------------------------------------------------------------------------- export


async def registrations_for_export(
    session: AsyncSession, class_code: str | None = None
) -> list[RegistrationRow]:
    """Return registrations of every status, by class start, class code and time.

    Raise RosterError when `class_code` names no class.
    """
    query = (
        select(
            TrainingClass.code,
            TrainingClass.start_date,
            Person.full_name,
            Person.phone,
            Unit.code,
            Unit.name,
            Registration.status,
            Registration.created_at,
        )
        .join(TrainingClass, Registration.class_id == TrainingClass.id)
        .join(Person, Registration.person_id == Person.id)
        .join(Unit, Person.unit_id == Unit.id)
        .order_by(
            TrainingClass.start_date,
            TrainingClass.code,
            Registration.created_at,
            Registration.id,
        )
    )
    if class_code is not None:
        found = await session.scalar(
            select(TrainingClass.id).where(TrainingClass.code == class_code)
        )
        if found is None:
            raise RosterError(f"no class with code {class_code!r}")
        query = query.where(TrainingClass.id == found)
    result = await session.execute(query)
    return [RegistrationRow(*row) for row in result]
