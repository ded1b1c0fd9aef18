"""The notification jobs end to end: what they queue reaches the person's Telegram chat,
through `trainingbot jobs run-once` and through the running service, on the real clock."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.jobs_cli import run_once, show_status
from db.models import ClassSession, JobRun, OutboxMessage, OutboxStatus, TrainingClass
from tests.factories import add_class, add_person, add_registration, add_session, add_unit, link
from tests.fake_bot_api import FakeBotApi
from tests.telegram_support import fake_bot_api, in_days, running, settings_for

CHAT = 4242


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as server:
        yield server


async def class_starting_soon(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """A class whose first session starts in 90 minutes, a confirmed seat linked on Telegram."""
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "SNV", "Sở Nội vụ")
        person = await add_person(session, "0912000401", "Phạm Thu Trang", unit)
        await link(session, person, "telegram", str(CHAT))
        starts = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=90)
        klass = await add_class(
            session, "K45", "Kỹ năng lãnh đạo", start=in_days(0), location="Hội trường A"
        )
        klass.start_date = starts.astimezone(dt.timezone(dt.timedelta(hours=7))).date()
        klass.end_date = klass.start_date + dt.timedelta(days=2)
        await add_session(session, klass, starts)
        await add_registration(session, person, klass)
        return klass.id


def texts_to(api: FakeBotApi, chat: int) -> list[str]:
    return [c.params["text"] for c in api.calls_of("sendMessage") if c.params["chat_id"] == chat]


async def test_run_once_delivers_the_due_reminder_and_status_shows_it(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str, api: FakeBotApi
) -> None:
    await class_starting_soon(sessionmaker)
    settings = settings_for(api, database_url)
    out = io.StringIO()
    assert await run_once(sessionmaker, settings, out) == 0
    assert "reminders" in out.getvalue()
    assert "delivery: 1 sent" in out.getvalue()
    (text,) = texts_to(api, CHAT)
    assert text.startswith("⏰ Nhắc lịch học: lớp K45 «Kỹ năng lãnh đạo»")
    assert "Hội trường A" in text
    # Run again: nothing is sent twice.
    assert await run_once(sessionmaker, settings, io.StringIO()) == 0
    assert len(texts_to(api, CHAT)) == 1
    status = io.StringIO()
    assert await show_status(sessionmaker, settings, status) == 0
    assert "1 sent" in status.getvalue()
    assert "reminders" in status.getvalue()


async def test_the_running_service_tells_a_moved_class_at_once(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str, api: FakeBotApi
) -> None:
    class_id = await class_starting_soon(sessionmaker)
    settings = settings_for(api, database_url)
    # Ticks every 0.2 s instead of 15 s; the jobs' own periods still decide what runs.
    quick = settings.notifications.model_copy(update={"tick_seconds": 0.2})
    settings = settings.model_copy(update={"notifications": quick})
    async with running(sessionmaker, settings, api):
        # The first ticks send the reminder and record what the registrant knows.
        await api.wait_for("sendMessage", lambda p: p["text"].startswith("⏰"))
        async with sessionmaker() as session, session.begin():
            for item in await session.scalars(
                select(ClassSession).where(ClassSession.class_id == class_id)
            ):
                item.starts_at += dt.timedelta(days=1)
                item.ends_at += dt.timedelta(days=1)
            await session.execute(
                update(TrainingClass)
                .where(TrainingClass.id == class_id)
                .values(location="Phòng 204")
            )
        # The change sweep runs every minute: make it due now, as a minute passing would.
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(JobRun)
                .where(JobRun.name == "class_changes")
                .values(next_run_at=dt.datetime.now(dt.UTC))
            )
        (call,) = await api.wait_for("sendMessage", lambda p: p["text"].startswith("📢"))
    text = call.params["text"]
    assert "Địa điểm: Phòng 204 (trước đây: Hội trường A)" in text
    assert "Lịch học mới (1 buổi)" in text
    async with sessionmaker() as session:
        statuses = set((await session.scalars(select(OutboxMessage.status))).all())
    assert statuses == {OutboxStatus.SENT}
