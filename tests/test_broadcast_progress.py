"""What the author of a broadcast is shown, and when: an edited message or milestones, a report."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.broadcast_monitor import BroadcastMonitor
from bot.channels.telegram import TelegramChannel, build_application
from db import broadcasts
from db.broadcasts import Audience, AudienceKind, Progress
from db.models import BroadcastStatus, OutboxMessage, OutboxStatus
from handlers.broadcast_progress import milestone, progress_update
from handlers.choices import reply_text
from handlers.types import Reply
from tests.factories import NOW, TODAY, add_person, add_unit, link
from tests.fake_bot_api import FakeBotApi
from tests.telegram_support import fake_bot_api, settings_for

SENDING = BroadcastStatus.SENDING


def progress(sent: int, left: int, *, failed: int = 0, recipients: int = 8) -> Progress:
    return Progress(recipients=recipients, sent=sent, failed=failed, left=left)


def text_of(reply: Reply | None) -> str:
    assert reply is not None
    return reply_text(reply, "en")


def test_a_channel_that_edits_is_shown_every_change_then_the_end_and_a_report() -> None:
    first = progress_update(1, "Họp", SENDING, progress(0, 8), None, edits=True)
    assert first is not None
    assert first.report is None
    assert "Sent 0/8 · left 8 · failed 0" in text_of(first.progress)
    assert first.progress is not None
    assert [b.data for row in first.progress.buttons for b in row] == ["bs:1"]
    # Nothing changed: nothing to edit.
    assert progress_update(1, "Họp", SENDING, progress(0, 8), first.shown, edits=True) is None
    changed = progress_update(1, "Họp", SENDING, progress(1, 7), first.shown, edits=True)
    assert changed is not None
    assert "Sent 1/8 · left 7" in text_of(changed.progress)
    done = progress_update(
        1, "Họp", BroadcastStatus.DONE, progress(7, 0, failed=1), changed.shown, edits=True
    )
    assert done is not None
    assert done.progress is not None
    assert "“Họp” has gone out" in text_of(done.progress)
    assert done.progress.buttons == ()  # no Stop once over
    assert "• Delivered: 7" in text_of(done.report)
    assert "• Failed: 1" in text_of(done.report)


def test_a_channel_without_edits_is_told_at_the_start_each_quarter_and_the_end() -> None:
    start = progress_update(1, "Họp", SENDING, progress(0, 8), None, edits=False)
    assert start is not None
    assert start.report is None
    assert progress_update(1, "Họp", SENDING, progress(1, 7), start.shown, edits=False) is None
    quarter = progress_update(1, "Họp", SENDING, progress(2, 6), start.shown, edits=False)
    assert quarter is not None
    assert "Sent 2/8" in text_of(quarter.progress)
    assert progress_update(1, "Họp", SENDING, progress(3, 5), quarter.shown, edits=False) is None
    end = progress_update(
        1, "Họp", BroadcastStatus.DONE, progress(8, 0), quarter.shown, edits=False
    )
    assert end is not None
    assert end.progress is None  # the report says it all
    assert "• Delivered: 8" in text_of(end.report)


@pytest.mark.parametrize(
    ("done", "expected"), [(0, 0), (1, 0), (2, 1), (5, 2), (6, 3), (7, 3), (8, 4)]
)
def test_milestones_are_quarters_of_the_recipients(done: int, expected: int) -> None:
    assert milestone(progress(done, 8 - done)) == expected


@dataclass
class TextOnlySender:
    """A channel that sends messages but cannot edit them, as Zalo (2,000 characters, no
    edits) and the console are: the shape a non-Telegram Sender has."""

    channel: str = "zalo"
    sent: list[str] = field(default_factory=list)

    async def send_notice(self, external_id: str, reply: Reply, language: str) -> str | None:
        """Record the message as its author would read it."""
        self.sent.append(f"{external_id}: {reply_text(reply, language)}")
        return None


async def started_broadcast(
    sessionmaker: async_sessionmaker[AsyncSession], channel: str, recipients: int
) -> int:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        author = await add_person(session, "0912000100", "Nguyễn Văn Quản", unit)
        author.is_admin = True
        await link(session, author, channel, "100")
        for number in range(recipients - 1):
            person = await add_person(session, f"09120002{number:02d}", f"Người {number}", unit)
            await link(session, person, channel, str(200 + number))
        draft = await broadcasts.create_draft(
            session,
            author_id=author.id,
            scope_unit_id=None,
            text="Họp giao ban",
            message={"lines": [], "buttons": []},
            origin_channel=channel,
            origin_chat_id="100",
            now=NOW,
        )
        draft.audience = Audience(AudienceKind.EVERYONE).as_json()
        await session.flush()
        await broadcasts.start(
            session, draft.id, author_id=author.id, scope_unit_id=None, now=NOW, today=TODAY
        )
        return draft.id


async def settle(sessionmaker: async_sessionmaker[AsyncSession], count: int) -> None:
    """Mark `count` more of the broadcast's notices sent, as the delivery engine would."""
    async with sessionmaker() as session, session.begin():
        ids = (
            await session.scalars(
                select(OutboxMessage.id)
                .where(OutboxMessage.status == OutboxStatus.QUEUED)
                .order_by(OutboxMessage.id)
                .limit(count)
            )
        ).all()
        await session.execute(
            update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(status=OutboxStatus.SENT)
        )


class Clock:
    """A clock the test moves on."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now

    def tick(self) -> None:
        self.now += dt.timedelta(seconds=10)


async def test_a_channel_without_edits_gets_a_message_at_milestones_only(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await started_broadcast(sessionmaker, "zalo", 8)
    sender = TextOnlySender()
    clock = Clock()
    monitor = BroadcastMonitor(sessionmaker, [sender], every=dt.timedelta(seconds=5), clock=clock)
    for sent_now in (0, 1, 1, 0, 2, 4):
        await settle(sessionmaker, sent_now)
        await monitor.round()
        clock.tick()
    await monitor.round()  # reported: nothing more
    texts = [text.split("\n")[1] if "\n" in text else text for text in sender.sent]
    assert texts == [
        "Đã gửi 0/8 · còn lại 8 · lỗi 0",
        "Đã gửi 2/8 · còn lại 6 · lỗi 0",
        "Đã gửi 4/8 · còn lại 4 · lỗi 0",
        "• Đã nhận: 8",
    ]
    assert all(text.startswith("100: ") for text in sender.sent)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def test_a_progress_message_that_cannot_be_edited_any_more_is_sent_anew(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    broadcast_id = await started_broadcast(sessionmaker, "telegram", 4)
    settings = settings_for(api, database_url)
    channel = TelegramChannel(build_application(settings.telegram), sessionmaker, settings)
    await channel.application.initialize()
    clock = Clock()
    monitor = BroadcastMonitor(sessionmaker, [channel], every=dt.timedelta(seconds=5), clock=clock)
    try:
        await monitor.round()
        [first] = api.calls_of("sendMessage")
        async with sessionmaker() as session:
            shown = await broadcasts.get(session, broadcast_id)
        assert shown is not None
        first_id = shown.progress_message_id
        assert first_id is not None
        await settle(sessionmaker, 1)
        clock.tick()
        await monitor.round()
        [edit] = api.calls_of("editMessageText")
        assert (edit.params["message_id"], edit.params["chat_id"]) == (int(first_id), 100)
        assert "Đã gửi 1/4" in edit.params["text"]
        # The author deleted the progress message: the next change comes as a new one.
        api.fail("editMessageText", 400, "Bad Request: message to edit not found")
        await settle(sessionmaker, 1)
        clock.tick()
        await monitor.round()
    finally:
        await channel.shutdown()
    first_text, second_text = (c.params["text"] for c in api.calls_of("sendMessage"))
    assert "Đã gửi 0/4" in first_text
    assert "Đã gửi 2/4" in second_text
    assert first.params["chat_id"] == 100
    async with sessionmaker() as session:
        moved = await broadcasts.get(session, broadcast_id)
    assert moved is not None
    assert moved.progress_message_id not in (None, first_id)
