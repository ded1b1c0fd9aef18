"""Broadcasts over Telegram: the real PTB Application, the delivery engine and the progress
message against the fake Bot API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.telegram import TelegramChannel, build_application, now_utc
from bot.config import BroadcastSettings, NotificationSettings, Settings
from bot.delivery import DeliveryEngine, DeliverySettings
from db import broadcasts, units
from db.broadcasts import Audience, AudienceKind
from db.models import (
    Broadcast,
    BroadcastStatus,
    ChannelAccount,
    Conversation,
    OutboxMessage,
    OutboxStatus,
)
from handlers.broadcast import announcement
from handlers.notices import encode_reply
from tests.factories import add_person, add_unit, link
from tests.fake_bot_api import (
    Call,
    FakeBotApi,
    callback_update,
    document_update,
    photo_update,
)
from tests.telegram_support import fake_bot_api, running, settings_for
from tests.test_telegram_journeys import User, data_with, only

ADMIN = 100
LEARNERS = (201, 202, 203, 204, 205)
BLOCKED = 206
PHOTO = "AgACAgIAAxkBAAIBQ2-lich-hoc"


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def seed(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[int, int]:
    """Seed an admin and learners linked on Telegram (one blocked the bot); return person ids."""
    people: dict[int, int] = {}
    async with sessionmaker() as session, session.begin():
        school = await add_unit(session, "TCT", "Trường Chính trị tỉnh")
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        admin = await add_person(session, "0912000100", "Nguyễn Văn Quản", school)
        admin.is_admin = True
        await link(session, admin, "telegram", str(ADMIN))
        session.add(Conversation(channel="telegram", chat_id=str(ADMIN), language="en"))
        people[ADMIN] = admin.id
        for number, user_id in enumerate((*LEARNERS, BLOCKED)):
            person = await add_person(session, f"09120002{number:02d}", f"Học viên {number}", unit)
            account = ChannelAccount(
                person_id=person.id, channel="telegram", external_id=str(user_id)
            )
            account.reachable = user_id != BLOCKED
            session.add(account)
            people[user_id] = person.id
    return people


def broadcast_settings(
    api: FakeBotApi, database_url: str, *, rate: float = 25, quiet_hours: str = ""
) -> Settings:
    """Return the test service's settings: a fast progress message, a chosen send rate."""
    settings = settings_for(api, database_url)
    return settings.model_copy(
        update={
            "notifications": NotificationSettings(
                quiet_hours=quiet_hours, rate_per_second=rate, per_chat_seconds=0.2
            ),
            "broadcast": BroadcastSettings(progress_seconds=0.3),
        }
    )


def to(chat: int) -> Any:
    """Return a predicate of calls to one chat."""
    return lambda params: params.get("chat_id") == chat


async def wait_until(check: Any, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait until the async `check` returns true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def statuses(sessionmaker: async_sessionmaker[AsyncSession]) -> list[OutboxStatus]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(OutboxMessage.status))).all())


async def compose_and_send(admin: User, update: Callable[[int], dict[str, Any]]) -> list[Call]:
    """Write an announcement (a photo or document update of an id), choose everyone, send it."""
    asked = only(await admin.say("/broadcast"), "sendMessage")
    assert "New announcement" in asked.params["text"]
    shown = await admin._answered(update(admin.api.next_update_id()))
    question = only(shown, "sendMessage")
    assert "Who should get announcement #1?" in question.params["text"]
    preview = only(await admin.press(data_with([question], "bk:1:1"), 4500), "editMessageText")
    assert "In all: 7. Can get it on chat: 6" in preview.params["text"]
    assert "blocked the bot or cannot be reached: 1" in preview.params["text"]
    started = await admin.press(data_with([preview], "bg:1:"), 4500)
    assert (
        "Announcement #1 is going out (recipients: 6)"
        in only(started, "editMessageText").params["text"]
    )
    return shown


async def test_a_photo_announcement_goes_out_with_one_progress_message_edited_then_a_report(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await seed(sessionmaker)
    admin = User(api, sessionmaker, ADMIN)
    # Two a second: the progress message has time to change while it goes out.
    settings = broadcast_settings(api, database_url, rate=2)
    async with running(sessionmaker, settings, api):
        # The first recipient to be sent it has just blocked the bot.
        caption = "Lịch học tuần sau\nThứ Hai: phòng 201"
        shown = await compose_and_send(
            admin, lambda update_id: photo_update(update_id, PHOTO, caption=caption, user_id=ADMIN)
        )
        # The author sees it as recipients will: the photo (its largest size) with the text.
        preview = only(shown, "sendPhoto").params
        assert preview["photo"] == PHOTO
        assert preview["caption"].endswith(caption)
        api.fail_blocked("sendPhoto", times=1)
        report = await api.wait_for(
            "sendMessage", lambda p: "Report of announcement #1" in p["text"], timeout=15
        )
    [progress] = [
        call
        for call in api.calls_of("sendMessage")
        if call.params["chat_id"] == ADMIN and "is going out:" in call.params["text"]
    ]
    assert progress.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "bs:1"
    progress_id = next(
        int(c.params["message_id"])
        for c in api.calls_of("editMessageText")
        if c.params["chat_id"] == ADMIN and "Sent" in c.params["text"]
    )
    edits = [
        c.params["text"]
        for c in api.calls_of("editMessageText")
        if c.params["chat_id"] == ADMIN and int(c.params["message_id"]) == progress_id
    ]
    # One message kept up to date: counts changed while it went out, then the end.
    assert len(edits) >= 2, edits
    assert "has gone out" in edits[-1]
    assert "Sent 5/6 · left 0 · failed 1" in edits[-1]
    assert "Sent 5/6" not in edits[0]
    text = report[-1].params["text"]
    assert "• Delivered: 5" in text
    assert "• Blocked the bot or unreachable: 2" in text  # one blocked before, one during
    assert "• Failed: 0" in text
    assert "• Never linked a chat account: 0" in text
    # Every reachable recipient got the photo by its file id, with the header and text, once.
    photos = [c for c in api.calls_of("sendPhoto") if c.params["chat_id"] != ADMIN]
    assert sorted(c.params["chat_id"] for c in photos) == sorted(LEARNERS)
    assert all(c.params["photo"] == PHOTO for c in photos)
    assert all(
        c.params["caption"]
        == f"📣 Thông báo của Trường Chính trị tỉnh (Nguyễn Văn Quản):\n\n{caption}"
        for c in photos
    )
    assert not [c for c in api.calls_of("sendMessage") if c.params["chat_id"] == BLOCKED]
    async with sessionmaker() as session:
        broadcast = (await session.scalars(select(Broadcast))).one()
    assert broadcast.status == BroadcastStatus.DONE
    assert broadcast.reported_at is not None


async def test_stop_on_the_progress_message_sends_nothing_more(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await seed(sessionmaker)
    admin = User(api, sessionmaker, ADMIN)
    settings = broadcast_settings(api, database_url, rate=1)
    async with running(sessionmaker, settings, api):
        await compose_and_send(
            admin,
            lambda update_id: document_update(
                update_id, "BQACAgIAA-ke-hoach", "ke-hoach.pdf", caption="Kế hoạch", user_id=ADMIN
            ),
        )
        started = len(api.calls)

        def delivered() -> int:
            """Return how many copies went out since the start (the author's own included)."""
            return len([c for c in api.calls[started:] if c.method == "sendDocument"])

        [progress] = await api.wait_for(
            "sendMessage", lambda p: p["chat_id"] == ADMIN and "is going out:" in p["text"]
        )
        await api.wait_for("sendDocument", lambda p: p["chat_id"] in LEARNERS, count=2)

        async def progress_id() -> str | None:
            async with sessionmaker() as session:
                broadcast = await broadcasts.get(session, 1)
            return broadcast.progress_message_id if broadcast else None

        await wait_until(progress_id)
        # The Stop button of the progress message: its answer replaces that message.
        message_id = int(await progress_id() or 0)
        stopped = await admin.press("bs:1", message_id=message_id)
        # (The progress updater edits the same message too, before or after.)
        [answer] = [
            c.params["text"]
            for c in stopped
            if c.method == "editMessageText"
            and c.params["message_id"] == message_id
            and "is stopped" in c.params["text"]
        ]
        assert "Announcement #1 is stopped; what was not yet sent" in answer
        assert "“Kế hoạch” was stopped" in answer
        report = await api.wait_for(
            "sendMessage", lambda p: "Report of announcement #1" in p["text"], timeout=10
        )
        sent_then = delivered()
        await asyncio.sleep(2.5)  # two more slots of the 1-a-second pace
        sent_later = delivered()
    assert progress.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "bs:1"
    assert sent_later == sent_then
    rows = await statuses(sessionmaker)
    assert rows.count(OutboxStatus.SENT) == sent_then
    assert rows.count(OutboxStatus.SKIPPED) == 6 - sent_then > 0
    assert f"• Not sent (stopped): {6 - sent_then}" in report[-1].params["text"]
    assert f"• Delivered: {sent_then}" in report[-1].params["text"]


async def test_a_double_tap_on_send_starts_one_broadcast(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await seed(sessionmaker)
    admin = User(api, sessionmaker, ADMIN)
    async with running(sessionmaker, broadcast_settings(api, database_url), api):
        await admin.say("/broadcast")
        announced, question = await admin.say("Họp lúc 8 giờ")
        assert announced.params["text"] == (
            "📣 Announcement from Trường Chính trị tỉnh (Nguyễn Văn Quản):\nHọp lúc 8 giờ"
        )
        preview = only(await admin.press(data_with([question], "bk:1:1"), 4600), "editMessageText")
        send = data_with([preview], "bg:1:")
        started = len(api.calls)
        for _ in range(2):  # two presses, two update_ids, before either is handled
            update = callback_update(api.next_update_id(), send, user_id=ADMIN, message_id=4600)
            await api.inject(update)
        edits = await api.wait_for("editMessageText", lambda p: p["message_id"] == 4600, count=3)
        await api.wait_for("sendMessage", lambda p: "Report of announcement #1" in p["text"])
    first, second = (call.params["text"] for call in edits[1:3])
    assert "Announcement #1 is going out (recipients: 6)" in first
    assert "Announcement #1 is already on its way; it is not sent again." in second
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Broadcast)) == 1
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 6
    copies = [
        c.params["chat_id"]
        for c in api.calls[started:]
        if c.method == "sendMessage" and c.params["text"].startswith("📣 ")
    ]
    assert sorted(copies) == sorted((ADMIN, *LEARNERS))


async def test_someone_who_is_not_an_admin_is_told_broadcast_is_not_for_them(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await seed(sessionmaker)
    learner = User(api, sessionmaker, LEARNERS[0])
    async with running(sessionmaker, broadcast_settings(api, database_url), api):
        answer = only(await learner.say("/broadcast"), "sendMessage")
        assert "Broadcasting is for the school's admins" in answer.params["text"]
        forged = only(await learner.press("bg:1:1", 4700), "editMessageText")
        assert "Broadcasting is for the school's admins" in forged.params["text"]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Broadcast)) == 0


async def start_broadcast(
    sessionmaker: async_sessionmaker[AsyncSession], author: int, *, urgent: bool, text: str
) -> int:
    """Start a broadcast to everyone linked, as the chat flow does; return its id."""
    async with sessionmaker() as session, session.begin():
        person = await units.person(session, author)
        assert person is not None
        reply = announcement(person, text, None)
        draft = await broadcasts.create_draft(
            session,
            author_id=author,
            scope_unit_id=None,
            text=text,
            message=encode_reply(reply),
            now=now_utc(),
        )
        draft.audience = Audience(AudienceKind.EVERYONE).as_json()
        draft.urgent = urgent
        await session.flush()
        await broadcasts.start(
            session,
            draft.id,
            author_id=author,
            scope_unit_id=None,
            now=now_utc(),
            today=dt.date.today(),
        )
        return draft.id


def quiet_now() -> str:
    """Return quiet hours that hold right now, wherever the clock is."""
    local = dt.datetime.now(dt.UTC).astimezone(Settings().bot.zone)
    start = (local - dt.timedelta(hours=1)).strftime("%H:00")
    end = (local + dt.timedelta(hours=2)).strftime("%H:00")
    return f"{start}-{end}"


async def engine_for(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, **kw: Any
) -> tuple[TelegramChannel, DeliveryEngine]:
    channel = TelegramChannel(build_application(settings.telegram), sessionmaker, settings)
    await channel.application.initialize()
    delivery = DeliverySettings.of(settings)
    return channel, DeliveryEngine(sessionmaker, [channel], delivery, settings.notify, **kw)


async def test_in_quiet_hours_only_an_urgent_broadcast_goes_out(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await seed(sessionmaker)
    await start_broadcast(sessionmaker, people[ADMIN], urgent=False, text="Tin thường")
    await start_broadcast(sessionmaker, people[ADMIN], urgent=True, text="Tin khẩn")
    settings = broadcast_settings(api, database_url, quiet_hours=quiet_now())
    channel, engine = await engine_for(api, sessionmaker, settings)
    try:
        await engine.drain()
    finally:
        await channel.shutdown()
    texts = [c.params["text"] for c in api.calls_of("sendMessage")]
    assert sum("Tin khẩn" in text for text in texts) == 6
    assert not [text for text in texts if "Tin thường" in text]
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(Broadcast.urgent, OutboxMessage.status).join(
                    Broadcast, Broadcast.id == OutboxMessage.broadcast_id
                )
            )
        ).all()
    assert {(urgent, status) for urgent, status in rows} == {
        (True, OutboxStatus.SENT),
        (False, OutboxStatus.QUEUED),
    }


async def test_after_a_crash_the_lease_runs_out_and_each_person_gets_it_once(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await seed(sessionmaker)
    await start_broadcast(sessionmaker, people[ADMIN], urgent=False, text="Nghỉ học chiều nay")
    settings = broadcast_settings(api, database_url)
    lease = dt.timedelta(seconds=60)
    # A worker claims a batch and dies before sending any of it (kill -9).
    crashed_channel, crashed = await engine_for(api, sessionmaker, settings)
    stale = await crashed.claim()
    assert len(stale) == 6
    # Another process, once the leases ran out, claims them again and sends them.
    later = lambda: now_utc() + lease + dt.timedelta(seconds=1)  # noqa: E731
    channel, engine = await engine_for(api, sessionmaker, settings, clock=later)
    try:
        report = await engine.drain()
        # The dead worker's claims come back to life (a process that was only frozen):
        # none of them is sent, since the rows are no longer queued under its leases.
        for notice in stale:
            await crashed._send(notice)
    finally:
        await channel.shutdown()
        await crashed_channel.shutdown()
    assert report.sent == 6
    for user_id in (ADMIN, *LEARNERS):
        told = [c for c in api.calls_of("sendMessage") if c.params["chat_id"] == user_id]
        assert len(told) == 1, user_id
    assert await statuses(sessionmaker) == [OutboxStatus.SENT] * 6
    # Starting it again (a retried Send) queues nobody a second time.
    with pytest.raises(broadcasts.BroadcastError):
        async with sessionmaker() as session, session.begin():
            await broadcasts.start(
                session,
                1,
                author_id=people[ADMIN],
                scope_unit_id=None,
                now=now_utc(),
                today=dt.date.today(),
            )
    assert len(await statuses(sessionmaker)) == 6
