"""Class changes: registrants are told at once, once, of new dates, schedule, place or link,
and of a cancelled class, however the class was changed (here: the roster import)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import OutboxStatus, RegistrationStatus, TrainingClass, Unit
from db.roster import import_rows
from tests.factories import add_person, add_registration
from tests.jobs_support import local, queued, run_all, run_job
from tests.test_roster_import import CLASSES_HEADER, UNITS_HEADER, rows

TODAY = dt.date(2026, 12, 1)
NOW = local(2026, 12, 1, 9)
HEADER = CLASSES_HEADER + ",status,online_url"


def class_line(
    start: str = "2026-12-14",
    end: str = "2026-12-18",
    location: str = "Hội trường A",
    status: str = "open",
    url: str = "",
) -> str:
    return (
        f"K7,Kỹ năng soạn thảo văn bản,ky_nang,full_time,{location},{start},{end},"
        f"2026-12-07,30,0,,,{status},{url}"
    )


async def import_classes(sessionmaker: async_sessionmaker[AsyncSession], line: str) -> None:
    async with sessionmaker() as session, session.begin():
        result = await import_rows(session, "classes", rows(HEADER, line), today=TODAY)
        assert not result.errors, result.errors


async def import_schedule(sessionmaker: async_sessionmaker[AsyncSession], *lines: str) -> None:
    header = "class_code,date,start_time,end_time,topic,location"
    async with sessionmaker() as session, session.begin():
        result = await import_rows(session, "sessions", rows(header, *lines), today=TODAY)
        assert not result.errors, result.errors


async def world(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessionmaker() as session, session.begin():
        await import_rows(
            session, "units", rows(UNITS_HEADER, "SNV,Sở Nội vụ,department,"), today=TODAY
        )
    await import_classes(sessionmaker, class_line())
    people: dict[str, int] = {}
    async with sessionmaker() as session, session.begin():
        training_class = (await session.scalars(select(TrainingClass))).one()
        unit = (await session.scalars(select(Unit))).one()
        for number, (name, status) in enumerate(
            [
                ("Lan", RegistrationStatus.CONFIRMED),
                ("Hà", RegistrationStatus.PENDING_APPROVAL),
                ("Tú", RegistrationStatus.WAITLISTED),
                ("Bình", RegistrationStatus.CANCELLED),
            ]
        ):
            person = await add_person(session, f"09120002{number:02d}", name, unit)
            await add_registration(session, person, training_class, status)
            people[name] = person.id
        people["class"] = training_class.id
    # The first sweep records what the registrants know; nobody is told anything.
    await run_job(sessionmaker, "class_changes", NOW)
    assert await queued(sessionmaker) == []
    return people


async def test_new_dates_reach_every_live_registrant_once_and_at_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await world(sessionmaker)
    await import_classes(sessionmaker, class_line(start="2026-12-21", end="2026-12-25"))
    assert await run_job(sessionmaker, "class_changes", NOW + dt.timedelta(minutes=1))
    assert await run_job(sessionmaker, "class_changes", NOW + dt.timedelta(minutes=2))
    notices = await queued(sessionmaker, kind="class.changed")
    assert [q.row.person_id for q in notices] == [people["Lan"], people["Hà"], people["Tú"]]
    assert all(q.row.urgent for q in notices)
    text = notices[0].text()
    assert "Lớp K7 «Kỹ năng soạn thảo văn bản» mà đồng chí đăng ký có thay đổi" in text
    assert "Thời gian học: 21/12/2026 – 25/12/2026 (trước đây: 14/12/2026 – 18/12/2026)" in text
    assert "Dates: 21 Dec 2026 – 25 Dec 2026" in notices[0].text("en")


async def test_a_new_place_and_a_new_schedule_are_told(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await world(sessionmaker)
    await import_classes(sessionmaker, class_line(location='"Phòng 204, nhà B"'))
    await import_schedule(
        sessionmaker,
        "K7,2026-12-14,07:30,11:00,Khai giảng,",
        "K7,2026-12-15,13:30,17:00,Thực hành,",
    )
    assert await run_job(sessionmaker, "class_changes", NOW + dt.timedelta(minutes=1))
    notices = await queued(sessionmaker, kind="class.changed")
    assert len(notices) == 3
    text = notices[0].text()
    assert "Địa điểm: Phòng 204, nhà B (trước đây: Hội trường A)" in text
    assert "Lịch học mới (2 buổi); buổi đầu tiên lúc 07:30 ngày 14/12/2026" in text
    # A topic changed: nothing registrants are told of.
    await import_schedule(
        sessionmaker,
        "K7,2026-12-14,07:30,11:00,Khai giảng lớp học,",
        "K7,2026-12-15,13:30,17:00,Thực hành,",
    )
    assert await run_job(sessionmaker, "class_changes", NOW + dt.timedelta(minutes=2))
    assert len(await queued(sessionmaker, kind="class.changed")) == 3
    assert people


async def test_a_cancelled_class_is_told_and_its_waiting_reminders_are_dropped(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await world(sessionmaker)
    # The 7-day reminder is queued, not yet sent.
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 7, 8, 0))
    assert len(await queued(sessionmaker, kind="class.reminder")) == 1
    await import_classes(sessionmaker, class_line(status="cancelled"))
    assert await run_job(sessionmaker, "class_changes", local(2026, 12, 7, 8, 1))
    cancelled = await queued(sessionmaker, kind="class.cancelled")
    assert [q.row.person_id for q in cancelled] == [people["Lan"], people["Hà"], people["Tú"]]
    assert "đã bị huỷ" in cancelled[0].text()
    assert "has been cancelled" in cancelled[0].text("en")
    reminder = (await queued(sessionmaker, kind="class.reminder"))[0]
    assert (reminder.row.status, reminder.row.last_error) == (OutboxStatus.SKIPPED, "class changed")
    # No reminder for a cancelled class; reopening it is told.
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 13, 8, 0))
    assert len(await queued(sessionmaker, kind="class.reminder")) == 1
    await import_classes(sessionmaker, class_line(status="open"))
    assert await run_job(sessionmaker, "class_changes", local(2026, 12, 13, 8, 1))
    reopened = await queued(sessionmaker, kind="class.changed")
    assert len(reopened) == 3
    assert "đã được mở lại" in reopened[0].text()


async def test_a_new_link_of_an_online_class_is_told(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await world(sessionmaker)
    await import_classes(sessionmaker, class_line(url="https://meet.example.vn/k7"))
    assert await run_all(sessionmaker, NOW + dt.timedelta(minutes=1))
    notices = await queued(sessionmaker, kind="class.changed")
    assert len(notices) == 3
    assert "https://meet.example.vn/k7" in notices[0].text()


async def test_an_import_that_changes_nothing_tells_nobody(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await world(sessionmaker)
    await import_classes(sessionmaker, class_line())
    assert await run_job(sessionmaker, "class_changes", NOW + dt.timedelta(minutes=1))
    assert await queued(sessionmaker) == []


async def test_a_bad_link_in_the_import_is_a_bad_row(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await world(sessionmaker)
    async with sessionmaker() as session, session.begin():
        result = await import_rows(
            session, "classes", rows(HEADER, class_line(url="meet example")), today=TODAY
        )
    assert [error.line for error in result.errors] == [2]
    assert "online_url 'meet example' is not a web address" in result.errors[0].message
