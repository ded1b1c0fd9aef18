"""Schedule import: sessions validated with line numbers, local times stored in UTC, a file
replaces the schedules of the classes it names and counts what changed."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.cli import main
from bot.roster_cli import import_command, read_roster_file
from db import migrate
from db.models import ClassSession, Form, Program, TrainingClass
from db.roster import REQUIRED_COLUMNS, import_rows, parse_time, validate_sessions
from db.session import create_engine, create_sessionmaker
from tests.factories import add_class, add_session
from tests.test_roster_import import CLASSES_HEADER, UNITS_HEADER, messages, rows, write

HEADER = "class_code,date,start_time,end_time,topic,location"
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
CLASS_DATES = {
    "K1": (dt.date(2027, 1, 11), dt.date(2027, 1, 15)),
    "TC-K45": (dt.date(2027, 1, 11), dt.date(2027, 6, 30)),
}


def utc(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """Return a moment of January 2027 in UTC."""
    return dt.datetime(2027, 1, day, hour, minute, tzinfo=dt.UTC)


# ------------------------------------------------------------------- pure validation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("07:30", dt.time(7, 30)),
        ("7:30", dt.time(7, 30)),
        ("07h30", dt.time(7, 30)),
        ("7H05", dt.time(7, 5)),
        ("7h", dt.time(7, 0)),
        ("13g30", dt.time(13, 30)),
        ("07:30:00", dt.time(7, 30)),  # an Excel time cell read as text
        ("0:00", dt.time(0, 0)),
    ],
)
def test_time_formats(text: str, expected: dt.time) -> None:
    assert parse_time("start_time", text) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (",2027-01-11,07:30,11:30,,", "class_code is empty"),
        ("K9,2027-01-11,07:30,11:30,,", "class_code 'K9' is not a known class"),
        (
            "k1,2027-01-11,07:30,11:30,,",
            "class_code 'k1' is not a known class (did you mean 'K1'?)",
        ),
        ("K1,,07:30,11:30,,", "date is empty"),
        ("K1,31/02/2027,07:30,11:30,,", "date '31/02/2027' is not a valid date"),
        (
            "K1,thứ hai,07:30,11:30,,",
            "date 'thứ hai' is not a date (use YYYY-MM-DD or DD/MM/YYYY)",
        ),
        ("K1,2027-01-11,,11:30,,", "start_time is empty"),
        ("K1,2027-01-11,07:30,,,", "end_time is empty"),
        ("K1,2027-01-11,7.30,11:30,,", "start_time '7.30' is not a time (use HH:MM, e.g. 07:30)"),
        ("K1,2027-01-11,sáng,11:30,,", "start_time 'sáng' is not a time (use HH:MM, e.g. 07:30)"),
        ("K1,2027-01-11,24:00,11:30,,", "start_time '24:00' is not a valid time of day"),
        ("K1,2027-01-11,07:30,11:60,,", "end_time '11:60' is not a valid time of day"),
        ("K1,2027-01-11,11:30,07:30,,", "end_time 07:30 is not after start_time 11:30"),
        ("K1,2027-01-11,07:30,7h30,,", "end_time 07:30 is not after start_time 07:30"),
        (
            "K1,2027-01-10,07:30,11:30,,",
            "date 2027-01-10 is outside the dates of class K1 (2027-01-11 to 2027-01-15)",
        ),
        (
            "K1,16/01/2027,07:30,11:30,,",
            "date 2027-01-16 is outside the dates of class K1 (2027-01-11 to 2027-01-15)",
        ),
        ("K1,2027-01-11,07:30,11:30," + "x" * 501 + ",", "topic is longer than 500 characters"),
    ],
)
def test_bad_sessions_rows(line: str, expected: str) -> None:
    records, errors = validate_sessions(rows(HEADER, line), CLASS_DATES, zone=ZONE)
    assert messages(errors) == [(2, expected)]
    assert records == []


def test_every_problem_of_every_row_is_reported_by_line() -> None:
    _records, errors = validate_sessions(
        rows(HEADER, "K1,2027-01-11,07:30,11:30,,", ",someday,late,,,", "K9,2027-02-01,9h,8h,,"),
        CLASS_DATES,
        zone=ZONE,
    )
    assert messages(errors) == [
        (3, "class_code is empty"),
        (3, "date 'someday' is not a date (use YYYY-MM-DD or DD/MM/YYYY)"),
        (3, "start_time 'late' is not a time (use HH:MM, e.g. 07:30)"),
        (3, "end_time is empty"),
        (4, "class_code 'K9' is not a known class"),
        (4, "end_time 08:00 is not after start_time 09:00"),
    ]


def test_overlapping_sessions_of_one_class_are_reported() -> None:
    _records, errors = validate_sessions(
        rows(
            HEADER,
            "K1,2027-01-11,07:30,11:30,,",  # 2
            "K1,2027-01-11,13:30,16:30,,",  # 3
            "K1,2027-01-11,11:00,12:00,,",  # 4: overlaps 2
            "TC-K45,2027-01-11,07:30,11:30,,",  # 5: another class at the same time is fine
            "K1,2027-01-11,16:30,17:30,,",  # 6: starts as 3 ends: fine
            "K1,11/01/2027,13h30,16h30,,",  # 7: the same session as 3, written otherwise
            "K1,2027-01-12,09:00,10:00,,",  # 8
            "K1,2027-01-12,08:00,11:00,,",  # 9: starts earlier but wraps 8
        ),
        CLASS_DATES,
        zone=ZONE,
    )
    assert messages(errors) == [
        (4, "overlaps the session of class K1 on line 2 (2027-01-11 07:30–11:30)"),
        (7, "overlaps the session of class K1 on line 3 (2027-01-11 13:30–16:30)"),
        (9, "overlaps the session of class K1 on line 8 (2027-01-12 09:00–10:00)"),
    ]


def test_local_times_become_utc_and_empty_cells_mean_defaults() -> None:
    records, errors = validate_sessions(
        rows(
            HEADER,
            "K1,11/01/2027,7:30,11h30,Khai giảng,Hội trường A",
            "K1,2027-01-12,13g30,16:30,,",
        ),
        CLASS_DATES,
        zone=ZONE,
    )
    assert errors == []
    first, second = records
    # 07:30 in Vietnam (UTC+7) is 00:30 UTC.
    assert (first.starts_at, first.ends_at) == (utc(11, 0, 30), utc(11, 4, 30))
    assert (first.topic, first.location) == ("Khai giảng", "Hội trường A")
    assert (second.starts_at, second.ends_at) == (utc(12, 6, 30), utc(12, 9, 30))
    # No topic; no location: the class's own.
    assert (second.topic, second.location) == ("", None)
    # The zone given is the one used.
    utc_records, _errors = validate_sessions(
        rows(HEADER, "K1,2027-01-11,07:30,11:30,,"), CLASS_DATES, zone=ZoneInfo("UTC")
    )
    assert utc_records[0].starts_at == utc(11, 7, 30)


def test_topic_and_location_columns_are_optional() -> None:
    assert REQUIRED_COLUMNS["sessions"] == ("class_code", "date", "start_time", "end_time")
    records, errors = validate_sessions(
        rows("class_code,date,start_time,end_time", "K1,2027-01-11,07:30,11:30"),
        CLASS_DATES,
        zone=ZONE,
    )
    assert errors == []
    assert (records[0].topic, records[0].location) == ("", None)


# ----------------------------------------------------------------------- database


@pytest.fixture
async def classes(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Insert classes K1 (11–15 Jan 2027) and K2 (same days), K2 with a session."""
    async with sessionmaker() as s, s.begin():
        k1 = await add_class(s, "K1", "Lớp một", start=dt.date(2027, 1, 11))
        k2 = await add_class(s, "K2", "Lớp hai", start=dt.date(2027, 1, 11))
        await add_session(s, k2, utc(11, 1), topic="Lớp hai, buổi một")
        return {"K1": k1.id, "K2": k2.id}


async def import_file(
    sessionmaker: async_sessionmaker[AsyncSession], path: Path
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = await import_command(sessionmaker, "sessions", path, out, stderr=err, zone=ZONE)
    return status, out.getvalue(), err.getvalue()


async def schedule(
    sessionmaker: async_sessionmaker[AsyncSession], class_id: int
) -> list[tuple[dt.datetime, dt.datetime, str, str | None]]:
    async with sessionmaker() as session:
        result = await session.execute(
            select(
                ClassSession.starts_at,
                ClassSession.ends_at,
                ClassSession.topic,
                ClassSession.location,
            )
            .where(ClassSession.class_id == class_id)
            .order_by(ClassSession.starts_at)
        )
        return [(row[0], row[1], row[2], row[3]) for row in result]


FIRST_SCHEDULE = (
    "K1,2027-01-11,07:30,11:30,Khai giảng,",
    "K1,2027-01-11,13:30,16:30,Chủ nghĩa Mác - Lênin,",
    "K1,12/01/2027,07h30,11h30,Tư tưởng Hồ Chí Minh,Hội trường B",
    "K1,2027-01-13,07:30,11:30,Kỹ năng,",
)


async def test_import_reimport_and_replace_a_schedule(
    sessionmaker: async_sessionmaker[AsyncSession], classes: dict[str, int], tmp_path: Path
) -> None:
    path = write(tmp_path / "sessions.csv", HEADER, *FIRST_SCHEDULE)
    assert await import_file(sessionmaker, path) == (
        0,
        "sessions: 4 rows — 4 added, 0 updated, 0 unchanged, 0 removed\n",
        "",
    )
    assert await schedule(sessionmaker, classes["K1"]) == [
        (utc(11, 0, 30), utc(11, 4, 30), "Khai giảng", None),
        (utc(11, 6, 30), utc(11, 9, 30), "Chủ nghĩa Mác - Lênin", None),
        (utc(12, 0, 30), utc(12, 4, 30), "Tư tưởng Hồ Chí Minh", "Hội trường B"),
        (utc(13, 0, 30), utc(13, 4, 30), "Kỹ năng", None),
    ]

    # The same file again changes nothing.
    assert (await import_file(sessionmaker, path))[1] == (
        "sessions: 4 rows — 0 added, 0 updated, 4 unchanged, 0 removed\n"
    )

    # A new version of K1's schedule: one kept, one moved room, one new, two dropped.
    changed = write(
        tmp_path / "sessions2.csv",
        HEADER,
        "K1,2027-01-11,07:30,11:30,Khai giảng,",  # unchanged
        "K1,2027-01-12,07:30,11:00,Tư tưởng Hồ Chí Minh,",  # same start: ends earlier, room
        "K1,2027-01-15,07:30,11:30,Bế giảng,",  # new
    )
    assert (await import_file(sessionmaker, changed))[1] == (
        "sessions: 3 rows — 1 added, 1 updated, 1 unchanged, 2 removed\n"
    )
    assert await schedule(sessionmaker, classes["K1"]) == [
        (utc(11, 0, 30), utc(11, 4, 30), "Khai giảng", None),
        (utc(12, 0, 30), utc(12, 4), "Tư tưởng Hồ Chí Minh", None),
        (utc(15, 0, 30), utc(15, 4, 30), "Bế giảng", None),
    ]
    # K2 is not in the file: its schedule stays.
    assert await schedule(sessionmaker, classes["K2"]) == [
        (utc(11, 1), utc(11, 5), "Lớp hai, buổi một", None)
    ]


async def test_a_bad_row_imports_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], classes: dict[str, int], tmp_path: Path
) -> None:
    path = write(
        tmp_path / "sessions.csv",
        HEADER,
        "K1,2027-01-11,07:30,11:30,Khai giảng,",
        "K2,2027-01-11,07:30,11:30,,",
        "K1,2027-01-11,09:00,10:00,,",
        "K3,2027-01-11,07:30,11:30,,",
        "K2,2027-01-20,07:30,11:30,,",
    )
    status, out, err = await import_file(sessionmaker, path)
    assert (status, err) == (1, "")
    assert out.splitlines() == [
        "sessions.csv line 4: overlaps the session of class K1 on line 2 (2027-01-11 07:30–11:30)",
        "sessions.csv line 5: class_code 'K3' is not a known class",
        "sessions.csv line 6: date 2027-01-20 is outside the dates of class K2 "
        "(2027-01-11 to 2027-01-15)",
        "nothing imported: 3 bad rows",
    ]
    assert await schedule(sessionmaker, classes["K1"]) == []
    assert len(await schedule(sessionmaker, classes["K2"])) == 1


async def test_xlsx_with_date_and_time_cells(
    sessionmaker: async_sessionmaker[AsyncSession], classes: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "lich-hoc.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Class_Code", "Date", "Start_Time", "End_Time", "Topic", "Location"])
    sheet.append(["K1", dt.date(2027, 1, 11), dt.time(7, 30), dt.time(11, 30), "Khai giảng", None])
    sheet.append(["K1", dt.datetime(2027, 1, 11), dt.time(13, 30), "16h30", None, "Phòng 302"])
    sheet.append(["K1", "12/01/2027", "7:30", dt.time(11, 0), None, None])
    for row in sheet.iter_rows(min_row=2, min_col=3, max_col=4):
        for cell in row:
            if isinstance(cell.value, dt.time):
                cell.number_format = "h:mm"
    workbook.save(path)

    status, out, _err = await import_file(sessionmaker, path)
    assert (status, out) == (0, "sessions: 3 rows — 3 added, 0 updated, 0 unchanged, 0 removed\n")
    assert await schedule(sessionmaker, classes["K1"]) == [
        (utc(11, 0, 30), utc(11, 4, 30), "Khai giảng", None),
        (utc(11, 6, 30), utc(11, 9, 30), "", "Phòng 302"),
        (utc(12, 0, 30), utc(12, 4), "", None),
    ]


async def test_missing_columns_exit_2(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = write(tmp_path / "sessions.csv", "class_code,date,start", "K1,2027-01-11,07:30")
    status, out, err = await import_file(sessionmaker, path)
    assert (status, out) == (2, "")
    assert err == (
        "trainingbot: sessions.csv: missing column(s) start_time, end_time; a sessions file "
        "has columns class_code,date,start_time,end_time\n"
    )


async def test_concurrent_imports_of_one_schedule_do_not_duplicate(
    sessionmaker: async_sessionmaker[AsyncSession],
    classes: dict[str, int],
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "sessions.csv", HEADER, *FIRST_SCHEDULE)
    _table, file_rows = read_roster_file("sessions", path)

    async def one_import() -> int:
        async with sessionmaker() as session, session.begin():
            result = await import_rows(session, "sessions", file_rows, today=dt.date.today())
            await asyncio.sleep(0.05)  # hold the transaction so the two overlap
            return result.added

    added = await asyncio.gather(one_import(), one_import())
    assert sorted(added) == [0, 4]
    assert len(await schedule(sessionmaker, classes["K1"])) == 4


async def test_moving_a_classs_dates_warns_about_sessions_left_outside(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    out, err = io.StringIO(), io.StringIO()

    async def run(kind: str, path: Path) -> list[str]:
        out.seek(0)
        out.truncate()
        assert await import_command(sessionmaker, kind, path, out, stderr=err, zone=ZONE) == 0
        return out.getvalue().splitlines()

    def classes(k1: str, k2: str, k3: str) -> Path:
        line = "{},Lớp,ky_nang,full_time,,{},2027-01-04,20,0,,"
        return write(
            tmp_path / "classes.csv",
            CLASSES_HEADER,
            line.format("K1", k1),
            line.format("K2", k2),
            line.format("K3", k3),
        )

    await run("units", write(tmp_path / "units.csv", UNITS_HEADER, "TCT,Trường,school,"))
    first = "2027-01-11,2027-01-15"
    await run("classes", classes(first, first, first))
    await run(
        "sessions",
        write(
            tmp_path / "sessions.csv",
            HEADER,
            "K1,2027-01-11,07:30,11:30,,",
            "K1,2027-01-12,06:00,11:30,,",  # 11 Jan 23:00 UTC: the 12th where it is held
            "K1,2027-01-14,07:30,11:30,,",
            "K1,2027-01-15,07:30,11:30,,",
            "K2,2027-01-11,07:30,11:30,,",
        ),
    )
    # K1 loses its first and last days, K2 its first, K3 (no sessions) moves a week.
    assert await run(
        "classes", classes("2027-01-12,2027-01-14", first, "2027-01-18,2027-01-22")
    ) == [
        "classes: 3 rows — 0 added, 2 updated, 1 unchanged",
        "warning: K1: 2 scheduled sessions fall outside the new dates; import its schedule again",
    ]
    assert await run("classes", classes(first, "2027-01-12,2027-01-15", first)) == [
        "classes: 3 rows — 0 added, 3 updated, 0 unchanged",
        "warning: K2: 1 scheduled session falls outside the new dates; import its schedule again",
    ]
    assert err.getvalue() == ""


async def test_a_class_has_one_session_per_start(
    sessionmaker: async_sessionmaker[AsyncSession], classes: dict[str, int]
) -> None:
    async with sessionmaker() as session:
        session.add_all(
            ClassSession(class_id=classes["K1"], starts_at=utc(11, 1), ends_at=utc(11, end))
            for end in (3, 5)
        )
        with pytest.raises(IntegrityError):
            await session.flush()


async def test_the_migration_keeps_the_first_of_two_sessions_with_one_start(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await migrate.downgrade(engine, "0001")
    # Core inserts of the columns revision 0001 has (the models have more by now).
    async with sessionmaker() as session, session.begin():
        k1_id = await session.scalar(
            insert(TrainingClass.__table__)
            .values(
                code="K1",
                title="Lớp một",
                program=Program.KY_NANG,
                form=Form.FULL_TIME,
                start_date=dt.date(2027, 1, 11),
                end_date=dt.date(2027, 1, 15),
                registration_deadline=dt.date(2027, 1, 4),
                capacity=30,
            )
            .returning(TrainingClass.__table__.c.id)
        )
        sessions = [
            (utc(11, 1), utc(11, end), topic)
            for end, topic in ((3, "first"), (5, "second"), (9, "third"))
        ]
        sessions.append((utc(12, 1), utc(12, 5), "other day"))
        await session.execute(
            insert(ClassSession.__table__),
            [
                {"class_id": k1_id, "starts_at": start, "ends_at": end, "topic": topic}
                for start, end, topic in sessions
            ],
        )
    await migrate.upgrade(engine)
    assert await schedule(sessionmaker, k1_id) == [
        (utc(11, 1), utc(11, 3), "first", None),
        (utc(12, 1), utc(12, 5), "other day", None),
    ]


# ---------------------------------------------------------------------------- CLI


async def _stored_starts(url: str, code: str) -> list[dt.datetime]:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            result = await session.scalars(
                select(ClassSession.starts_at)
                .join(TrainingClass, TrainingClass.id == ClassSession.class_id)
                .where(TrainingClass.code == code)
                .order_by(ClassSession.starts_at)
            )
            return list(result)
    finally:
        await engine.dispose()


def test_cli_imports_sessions_in_the_configured_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    config = tmp_path / "config.toml"
    # Tokyo is UTC+9: 07:30 there is 22:30 UTC the day before.
    config.write_text(
        f'[database]\nurl = "{url}"\n\n[bot]\ntimezone = "Asia/Tokyo"\n', encoding="utf-8"
    )
    units = write(tmp_path / "units.csv", UNITS_HEADER, "TCT,Trường Chính trị tỉnh,school,")
    class_rows = write(
        tmp_path / "classes.csv",
        CLASSES_HEADER,
        "K1,Lớp một,ky_nang,full_time,Phòng 302,2027-01-11,2027-01-15,2027-01-04,20,0,,",
    )
    sessions = write(tmp_path / "sessions.csv", HEADER, "K1,2027-01-11,07:30,11:30,,")
    for argv in (
        ["db", "upgrade"],
        ["import", "units", str(units)],
        ["import", "classes", str(class_rows)],
    ):
        assert main(["--config", str(config), *argv]) == 0
    capsys.readouterr()

    assert main(["--config", str(config), "import", "sessions", str(sessions)]) == 0
    assert capsys.readouterr().out == (
        "sessions: 1 rows — 1 added, 0 updated, 0 unchanged, 0 removed\n"
    )
    assert asyncio.run(_stored_starts(url, "K1")) == [
        dt.datetime(2027, 1, 10, 22, 30, tzinfo=dt.UTC)
    ]

    bad = write(tmp_path / "bad.csv", HEADER, "K1,2027-01-11,11:30,07:30,,")
    assert main(["--config", str(config), "import", "sessions", str(bad)]) == 1
    assert capsys.readouterr().out == (
        "bad.csv line 2: end_time 07:30 is not after start_time 11:30\n"
        "nothing imported: 1 bad row\n"
    )
