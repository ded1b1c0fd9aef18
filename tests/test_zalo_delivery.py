"""Notices over Zalo through the delivery engine, against the fake Zalo (and Telegram) Bot API.

A person linked on both channels gets each notice once: on the channel they chose with
/settings, else the one they used last. Zalo's errors map onto the engine's rules; a
used-up quota fails the notice, holds the channel back and tells the admins once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
from collections.abc import AsyncIterator, Sequence

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.telegram import TelegramChannel, build_application
from bot.channels.zalo import ZaloChannel, delivery_error
from bot.channels.zalo_api import ZaloApiError, ZaloBot, ZaloError, ZaloNetworkError
from bot.config import Settings, TelegramSettings
from bot.delivery import DeliveryEngine, DeliverySettings
from bot.jobs_cli import run_once, show_status
from bot.senders import (
    DeliveryError,
    PermanentFailure,
    QuotaExhausted,
    Sender,
    TemporaryFailure,
    Throttled,
    Unreachable,
)
from db.models import ChannelAccount, OutboxMessage, OutboxStatus, Person
from db.repos import Repos
from handlers.callbacks import ListQuery, list_data
from handlers.notices import notify
from handlers.types import Button, Msg, Reply
from tests.factories import NOW, Chat, add_class, add_person, add_unit, link
from tests.fake_bot_api import FakeBotApi
from tests.fake_zalo_api import FakeZaloApi, fake_zalo_api
from tests.telegram_support import fake_bot_api, in_days
from tests.zalo_support import zalo_settings

ZALO_ID = "zl-trang"
TELEGRAM_ID = "111"
REMINDER = Reply(lines=(Msg("start.intro"),))


@pytest.fixture
async def zalo_api() -> AsyncIterator[FakeZaloApi]:
    async with fake_zalo_api() as api:
        yield api


@pytest.fixture
async def telegram_api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


def both_settings(zalo_api: FakeZaloApi, telegram_api: FakeBotApi, database_url: str) -> Settings:
    settings = zalo_settings(zalo_api, database_url)
    telegram = TelegramSettings(token=SecretStr(telegram_api.token), base_url=telegram_api.base_url)
    return settings.model_copy(update={"telegram": telegram})


@contextlib.asynccontextmanager
async def senders(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[list[Sender]]:
    """Yield the senders of the configured channels, connected."""
    found: list[Sender] = []
    async with contextlib.AsyncExitStack() as stack:
        if settings.telegram.token is not None:
            telegram = TelegramChannel(build_application(settings.telegram), sessionmaker, settings)
            await telegram.application.initialize()
            stack.push_async_callback(telegram.shutdown)
            found.append(telegram)
        assert settings.zalo.token is not None
        bot = ZaloBot(settings.zalo.token.get_secret_value(), settings.zalo.base_url)
        zalo = ZaloChannel(bot, sessionmaker, settings)
        await bot.start()
        stack.push_async_callback(zalo.shutdown)
        found.append(zalo)
        yield found


async def drain(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, found: Sequence[Sender]
) -> None:
    engine = DeliveryEngine(sessionmaker, found, DeliverySettings.of(settings), settings.notify)
    await engine.drain()


async def queue(
    sessionmaker: async_sessionmaker[AsyncSession],
    person_id: int,
    key: str,
    reply: Reply = REMINDER,
) -> None:
    """Queue a reminder-like notice for the person, due now."""
    due = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    async with sessionmaker() as s, s.begin():
        await notify(Repos(s), person_id, "reminder.test", key, reply, due_at=due)


async def trang(sessionmaker: async_sessionmaker[AsyncSession], *channels: str) -> int:
    """Insert Phạm Thu Trang, linked on `channels`; return her id."""
    async with sessionmaker() as s, s.begin():
        unit = await add_unit(s, "YTH", "Huyện Yên Thành")
        person = await add_person(s, "0912000178", "Phạm Thu Trang", unit)
        for channel in channels:
            await link(s, person, channel, ZALO_ID if channel == "zalo" else TELEGRAM_ID)
        return person.id


async def statuses(sessionmaker: async_sessionmaker[AsyncSession]) -> list[tuple[str, str | None]]:
    async with sessionmaker() as s:
        rows = (await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
        return [(row.status.value, row.channel) for row in rows]


async def test_a_notice_goes_out_over_zalo_and_typing_1_presses_its_first_button(
    zalo_api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    person_id = await trang(sessionmaker, "zalo")
    async with sessionmaker() as s, s.begin():
        await add_class(s, "KN-01", "Kỹ năng soạn thảo văn bản", start=in_days(30))
    settings = zalo_settings(zalo_api, database_url)
    offer = Reply(
        lines=(Msg("start.intro"),),
        buttons=((Button(Msg("menu.upcoming"), list_data(ListQuery())),),),
    )
    await queue(sessionmaker, person_id, "reminder:1", offer)
    async with senders(sessionmaker, settings) as found:
        await drain(sessionmaker, settings, found)
    [sent] = zalo_api.texts_to(ZALO_ID)
    assert "Tôi là trợ lý của Trường Chính trị tỉnh" in sent
    assert "  1. Lớp sắp mở" in sent
    assert "Trả lời 1 (hoặc gõ tên lựa chọn)." in sent
    assert await statuses(sessionmaker) == [("sent", "zalo")]
    # The notice's buttons are the chat's choices now: "1" opens the list of classes.
    chat = Chat(sessionmaker, user_id=ZALO_ID, channel="zalo", links_by_code=True)
    assert "KN-01" in await chat.say("1")


async def test_linked_on_both_channels_each_notice_goes_once_where_settings_say(
    zalo_api: FakeZaloApi,
    telegram_api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    person_id = await trang(sessionmaker, "zalo", "telegram")
    settings = both_settings(zalo_api, telegram_api, database_url)
    on_telegram = Chat(sessionmaker, user_id=TELEGRAM_ID, channel="telegram")
    shown = await on_telegram.say("/settings")
    assert "• Telegram" in shown
    assert "• Zalo" in shown
    assert on_telegram.data() == ["ch:auto", "ch:telegram", "ch:zalo"]
    # Zalo was used after Telegram: with no choice, notices go there.
    async with sessionmaker() as s, s.begin():
        await s.execute(
            update(ChannelAccount)
            .where(ChannelAccount.channel == "zalo")
            .values(last_seen_at=NOW + dt.timedelta(hours=1))
        )
    async with senders(sessionmaker, settings) as found:
        await queue(sessionmaker, person_id, "reminder:a")
        await drain(sessionmaker, settings, found)
        assert (len(zalo_api.texts_to(ZALO_ID)), len(telegram_api.calls_of("sendMessage"))) == (
            1,
            0,
        )
        # Chosen in /settings (by its words, as typed on Zalo or Telegram): Telegram.
        saved = await on_telegram.say("luon gui qua telegram")
        assert "Đã lưu: thông báo sẽ luôn được gửi qua Telegram." in saved
        async with sessionmaker() as s:
            person = await s.get(Person, person_id)
            assert person is not None
            assert person.preferred_channel == "telegram"
        await queue(sessionmaker, person_id, "reminder:b")
        await drain(sessionmaker, settings, found)
        assert (len(zalo_api.texts_to(ZALO_ID)), len(telegram_api.calls_of("sendMessage"))) == (
            1,
            1,
        )
        # Back to the last used: Zalo again.
        await on_telegram.send(button="ch:auto")
        await queue(sessionmaker, person_id, "reminder:c")
        await drain(sessionmaker, settings, found)
        # The same notice queued twice is one notice.
        await queue(sessionmaker, person_id, "reminder:c")
        await drain(sessionmaker, settings, found)
    assert (len(zalo_api.texts_to(ZALO_ID)), len(telegram_api.calls_of("sendMessage"))) == (2, 1)
    assert await statuses(sessionmaker) == [
        ("sent", "zalo"),
        ("sent", "telegram"),
        ("sent", "zalo"),
    ]


async def test_a_visitor_or_a_channel_not_linked_cannot_be_chosen(
    sessionmaker: async_sessionmaker[AsyncSession], zalo_api: FakeZaloApi
) -> None:
    await trang(sessionmaker, "zalo")
    visitor = Chat(sessionmaker, user_id="someone", channel="zalo", links_by_code=True)
    assert "liên kết số điện thoại trước" in await visitor.say("/settings")
    chat = Chat(sessionmaker, user_id=ZALO_ID, channel="zalo", links_by_code=True)
    shown = await chat.say("/settings")
    assert "Thông báo đang được gửi tới kênh đồng chí dùng gần nhất: Zalo." in shown
    assert "nhắn tin cho bot của Trường trên kênh đó" in shown
    assert "Nút này không còn dùng được nữa" in await chat.press("ch:telegram")
    async with sessionmaker() as s:
        person = (await s.scalars(select(Person))).one()
        assert person.preferred_channel is None


async def test_a_used_up_quota_fails_the_notice_holds_the_rest_and_tells_admins_once(
    zalo_api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    person_id = await trang(sessionmaker, "zalo")
    async with sessionmaker() as s, s.begin():
        school = await add_unit(s, "TCT", "Trường Chính trị tỉnh")
        admin = await add_person(s, "0912000100", "Lê Thị Quản", school)
        admin.is_admin = True
        await link(s, admin, "zalo", "zl-admin")
    settings = zalo_settings(zalo_api, database_url)
    zalo_api.fail("sendMessage", 429, "Monthly message quota exceeded", times=10)
    for number in range(3):
        await queue(sessionmaker, person_id, f"reminder:{number}")
    async with senders(sessionmaker, settings) as found:
        await drain(sessionmaker, settings, found)
        # One refusal: the other notices are held back, not sent into the quota.
        assert len(zalo_api.calls_of("sendMessage")) == 1
        assert [status for status, _ in await statuses(sessionmaker)] == [
            "failed",
            "queued",
            "queued",
            "queued",  # the admins' alert waits too: the admin is on Zalo only
        ]
        # An hour later (the pause over; or another process): one more try, one refusal.
        async with sessionmaker() as s, s.begin():
            await s.execute(update(OutboxMessage).values(lease_until=None))
        await drain(sessionmaker, settings, found)
    assert len(zalo_api.calls_of("sendMessage")) == 2
    async with sessionmaker() as s:
        rows = (await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    alerts = [row for row in rows if row.kind == "channel.quota"]
    # Each try failed its one notice (the admins' urgent alert may be the second).
    assert [row.status for row in rows].count(OutboxStatus.FAILED) == 2
    assert all((row.last_error or "").startswith("quota: 429") for row in rows if row.last_error)
    # Told once, however many notices were refused.
    [alert] = alerts
    assert alert.person_id == admin.id
    assert alert.urgent is True
    out = io.StringIO()
    await show_status(sessionmaker, settings, out)
    assert "zalo: MESSAGE QUOTA USED UP: 2 notices refused" in out.getvalue()


async def test_a_blocked_zalo_account_hands_the_notice_to_telegram(
    zalo_api: FakeZaloApi,
    telegram_api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    person_id = await trang(sessionmaker, "zalo", "telegram")
    async with sessionmaker() as s, s.begin():
        await s.execute(update(Person).values(preferred_channel="zalo"))
    settings = both_settings(zalo_api, telegram_api, database_url)
    zalo_api.fail("sendMessage", 403, "User blocked the bot")
    await queue(sessionmaker, person_id, "reminder:x")
    async with senders(sessionmaker, settings) as found:
        await drain(sessionmaker, settings, found)
    assert len(telegram_api.calls_of("sendMessage")) == 1
    assert await statuses(sessionmaker) == [("sent", "telegram")]
    async with sessionmaker() as s:
        account = (
            await s.scalars(select(ChannelAccount).where(ChannelAccount.channel == "zalo"))
        ).one()
        assert account.reachable is False


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ZaloApiError(429, "Too Many Requests", retry_after=3), Throttled),
        (ZaloApiError(429, "Too Many Requests"), QuotaExhausted),
        (ZaloApiError(403, "Quota exceeded for this month"), QuotaExhausted),
        (ZaloApiError(400, "Vượt quá giới hạn tin nhắn"), QuotaExhausted),
        (ZaloApiError(403, "Forbidden"), Unreachable),
        (ZaloApiError(400, "User not found"), Unreachable),
        (ZaloApiError(400, "text must be 1 to 2000 characters"), PermanentFailure),
        (ZaloApiError(401, "Unauthorized"), PermanentFailure),
        (ZaloApiError(500, "Internal Server Error"), TemporaryFailure),
        (ZaloApiError(502, "answer without a JSON body"), TemporaryFailure),
        (ZaloNetworkError("sendMessage: ClientConnectorError"), TemporaryFailure),
    ],
)
def test_zalo_errors_map_onto_the_engines_rules(
    error: ZaloError, expected: type[DeliveryError]
) -> None:
    mapped = delivery_error(error)
    assert type(mapped) is expected
    if isinstance(mapped, Throttled):
        assert mapped.retry_after == 3


async def test_jobs_run_once_sends_over_zalo_when_only_zalo_is_configured(
    zalo_api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    person_id = await trang(sessionmaker, "zalo")
    await queue(sessionmaker, person_id, "reminder:once")
    out = io.StringIO()
    assert await run_once(sessionmaker, zalo_settings(zalo_api, database_url), out) == 0
    assert "delivery: 1 sent" in out.getvalue()
    assert len(zalo_api.texts_to(ZALO_ID)) == 1
