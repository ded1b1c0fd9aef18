"""Reminders before a class: at each configured offset, only the latest due, never a burst."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import (
    Form,
    OutboxStatus,
    Registration,
    RegistrationStatus,
    TrainingClass,
)
from jobs.timing import parse_offset
from tests.factories import add_class, add_person, add_registration, add_session, add_unit
from tests.jobs_support import SETTINGS, local, queued, run_job

START = dt.date(2026, 12, 10)
# The first session: 07:30 on 10 Dec 2026, school time.
FIRST_SESSION = local(2026, 12, 10, 7, 30)


async def world(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    schedule: bool = True,
    form: Form = Form.FULL_TIME,
) -> dict[str, int]:
    """Insert a class starting 10 Dec with confirmed, pending and waitlisted people."""
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "SNV", "Sở Nội vụ")
        klass = await add_class(
            session,
            "K45",
            "Trung cấp lý luận chính trị K45",
            start=START,
            form=form,
            location="Hội trường A",
        )
        if schedule:
            await add_session(session, klass, FIRST_SESSION)
            await add_session(session, klass, FIRST_SESSION + dt.timedelta(days=1))
        people = {}
        for number, (name, status) in enumerate(
            [
                ("Lan", RegistrationStatus.CONFIRMED),
                ("Minh", RegistrationStatus.CONFIRMED),
                ("Hà", RegistrationStatus.PENDING_APPROVAL),
                ("Tú", RegistrationStatus.WAITLISTED),
                ("Bình", RegistrationStatus.CANCELLED),
            ]
        ):
            person = await add_person(session, f"09120001{number:02d}", name, unit)
            await add_registration(session, person, klass, status)
            people[name] = person.id
        people["class"] = klass.id
    return people


async def reminder_people(sessionmaker: async_sessionmaker[AsyncSession]) -> list[int | None]:
    return [q.row.person_id for q in await queued(sessionmaker, kind="class.reminder")]


async def test_each_offset_reminds_confirmed_seats_once_at_its_time(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await world(sessionmaker)
    confirmed = [people["Lan"], people["Minh"]]
    # 7 days before at 08:00, 1 day before at 08:00, 2 hours before the first session.
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 3, 7, 59))
    assert await reminder_people(sessionmaker) == []
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 3, 8, 0))
    assert await reminder_people(sessionmaker) == confirmed
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 3, 8, 1))
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 8, 8, 0))
    assert await reminder_people(sessionmaker) == confirmed
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 9, 8, 0))
    assert await reminder_people(sessionmaker) == confirmed * 2
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 10, 5, 30))
    rows = await queued(sessionmaker, kind="class.reminder")
    assert [q.row.person_id for q in rows] == confirmed * 3
    # Hours before the first session pass quiet hours (05:30 is in them); days before wait.
    assert [q.row.urgent for q in rows] == [False] * 4 + [True] * 2
    assert all(q.row.expires_at == FIRST_SESSION for q in rows)
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 10, 7, 31))
    assert len(await reminder_people(sessionmaker)) == 6

    text = rows[0].text("vi")
    assert "Nhắc lịch học: lớp K45 «Trung cấp lý luận chính trị K45»" in text
    assert "lúc 07:30 ngày 10/12/2026" in text
    assert "Hội trường A" in text
    english = rows[0].text("en")
    assert "begins at 07:30 on 10 Dec 2026" in english


async def test_after_downtime_only_the_latest_reminder_due_is_sent(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await world(sessionmaker)
    # The service was down from before the 7-day reminder until after the 1-day one:
    # the 1-day reminder is sent late, the 7-day one never.
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 9, 10, 0))
    rows = await queued(sessionmaker, kind="class.reminder")
    assert [q.row.person_id for q in rows] == [people["Lan"], people["Minh"]]
    assert all(q.row.idempotency_key.endswith(local(2026, 12, 9, 8).isoformat()) for q in rows)
    # Down again until the class began: nothing is sent late once it started.
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 10, 8, 0))
    assert len(await queued(sessionmaker, kind="class.reminder")) == 2


async def test_a_person_who_registers_late_gets_the_latest_reminder_due_then_the_next(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await world(sessionmaker)
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 3, 8, 0))
    async with sessionmaker() as session, session.begin():
        # Tú's seat is confirmed five days before: the 7-day reminder came before it.
        await session.execute(
            update(Registration)
            .where(Registration.person_id == people["Tú"])
            .values(status=RegistrationStatus.CONFIRMED)
        )
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 5, 9, 0))
    late = await queued(sessionmaker, kind="class.reminder")
    assert [q.row.person_id for q in late] == [people["Lan"], people["Minh"], people["Tú"]]
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 6, 9, 0))
    assert len(await queued(sessionmaker, kind="class.reminder")) == 3
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 9, 8, 0))
    assert len(await queued(sessionmaker, kind="class.reminder")) == 6


async def test_a_reminder_waiting_out_quiet_hours_is_replaced_by_the_next_not_sent_too(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await world(sessionmaker)
    settings = dataclasses.replace(
        SETTINGS, reminders=(parse_offset("1d 22:00"), parse_offset("2h"))
    )
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 9, 22, 0), settings)
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 10, 5, 30), settings)
    rows = await queued(sessionmaker, kind="class.reminder")
    lan = [q.row for q in rows if q.row.person_id == people["Lan"]]
    assert [(r.status, r.last_error) for r in lan] == [
        (OutboxStatus.SKIPPED, "superseded"),
        (OutboxStatus.QUEUED, None),
    ]


async def test_without_a_schedule_only_reminders_by_days_are_sent(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await world(sessionmaker, schedule=False)
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 9, 8, 0))
    rows = await queued(sessionmaker, kind="class.reminder")
    assert len(rows) == 2
    assert "ngày 10/12/2026 (lịch học chi tiết chưa công bố)" in rows[0].text()
    # No "2 hours before" without a first session's time.
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 9, 23, 0))
    assert len(await queued(sessionmaker, kind="class.reminder")) == 2


async def test_a_cancelled_class_sends_no_reminders(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await world(sessionmaker)
    async with sessionmaker() as session, session.begin():
        klass = await session.get(TrainingClass, people["class"])
        assert klass is not None
        klass.status = klass.status.CANCELLED
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 9, 8, 0))
    assert await queued(sessionmaker, kind="class.reminder") == []


async def test_an_online_class_sends_its_link_the_day_before_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await world(sessionmaker, form=Form.ONLINE)
    async with sessionmaker() as session, session.begin():
        klass = await session.get(TrainingClass, people["class"])
        assert klass is not None
        klass.online_url = "https://meet.example.vn/k45"
    assert await run_job(sessionmaker, "online_links", local(2026, 12, 9, 7, 59))
    assert await queued(sessionmaker, kind="class.online_link") == []
    assert await run_job(sessionmaker, "online_links", local(2026, 12, 9, 8, 0))
    assert await run_job(sessionmaker, "online_links", local(2026, 12, 9, 8, 5))
    rows = await queued(sessionmaker, kind="class.online_link")
    assert [q.row.person_id for q in rows] == [people["Lan"], people["Minh"]]
    assert "https://meet.example.vn/k45" in rows[0].text()
    assert "https://meet.example.vn/k45" in rows[0].text("en")
    assert await run_job(sessionmaker, "reminders", local(2026, 12, 9, 8, 6))
    reminder = (await queued(sessionmaker, kind="class.reminder"))[0]
    assert "trực tuyến" in reminder.text()


async def test_an_online_class_without_a_link_sends_none(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await world(sessionmaker, form=Form.ONLINE)
    assert await run_job(sessionmaker, "online_links", local(2026, 12, 9, 9, 0))
    assert await queued(sessionmaker, kind="class.online_link") == []
