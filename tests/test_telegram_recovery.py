"""Nothing acknowledged is lost: stored updates and unsent replies survive a stop or a crash."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import bot.channels.inbox_worker as inbox_worker
import bot.channels.telegram as telegram_channel
from bot.channels.telegram import CHANNEL, TelegramChannel, build_application, now_utc
from db import inbox
from db.models import InboundUpdate, InboxStatus
from tests.fake_bot_api import FakeBotApi, text_update
from tests.telegram_support import fake_bot_api, inbox_rows, running, settings_for, wait_status


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


def offline_channel(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> TelegramChannel:
    """Return a channel whose workers are not running: what a process leaves at a crash."""
    settings = settings_for(api, database_url)
    return TelegramChannel(build_application(settings.telegram), sessionmaker, settings)


async def test_stored_updates_are_handled_after_a_restart_in_each_chats_order(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    channel = offline_channel(api, sessionmaker, database_url)
    texts = ["/help", "/lang en", "/help"]
    stored = [text_update(n, text) for n, text in enumerate(texts, start=1)]
    stored.insert(1, text_update(9, "/help", user_id=222))
    assert await channel.receive(stored) == 4
    assert api.calls == []
    async with running(sessionmaker, settings_for(api, database_url), api):
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 4)
    mine = [c.params["text"] for c in api.calls_of("sendMessage") if c.params["chat_id"] == 111]
    assert len(mine) == 3
    assert "Tôi có thể giúp" in mine[0]
    assert "Here is what I can do" in mine[2]


async def test_replies_handled_but_not_sent_are_sent_after_a_crash(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    channel = offline_channel(api, sessionmaker, database_url)
    await channel.receive([text_update(1, "/help")])
    now = now_utc()
    async with sessionmaker() as session, session.begin():
        row = await inbox.claim(session, CHANNEL, now=now, lease=dt.timedelta(minutes=1))
        assert row is not None
        assert row.lease_until is not None
    async with sessionmaker() as session, session.begin():
        messages = await channel.handle(session, channel.update_of(row.payload), now)
        await inbox.mark_handled(session, row.id, messages, now, token=row.lease_until)
    # The process dies here; its lease runs out.
    async with sessionmaker() as session, session.begin():
        await session.execute(update(InboundUpdate).values(lease_until=now - dt.timedelta(1)))
    async with running(sessionmaker, settings_for(api, database_url), api):
        [sent] = await api.wait_for("sendMessage")
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)
    assert sent.params["text"] == messages[0]["text"]
    assert len(api.calls_of("sendMessage")) == 1


async def test_an_update_under_a_live_lease_waits_for_it(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    now = now_utc()
    lease = dt.timedelta(minutes=1)
    async with sessionmaker() as session, session.begin():
        assert await inbox.store(session, CHANNEL, "1", "111", {"update_id": 1})
        assert not await inbox.store(session, CHANNEL, "1", "111", {"update_id": 1})
        assert await inbox.store(session, CHANNEL, "2", "111", {"update_id": 2})
        assert await inbox.store(session, CHANNEL, "3", "222", {"update_id": 3})
    async with sessionmaker() as session, session.begin():
        first = await inbox.claim(session, CHANNEL, now=now, lease=lease)
        other = await inbox.claim(session, CHANNEL, now=now, lease=lease)
        none = await inbox.claim(session, CHANNEL, now=now, lease=lease)
    assert (first and first.update_key, other and other.update_key, none) == ("1", "3", None)
    later = now + lease + dt.timedelta(seconds=1)
    async with sessionmaker() as session, session.begin():
        again = await inbox.claim(session, CHANNEL, now=later, lease=lease)
        assert again is not None
        assert again.update_key == "1"  # the lease ran out: a crash; taken again, in order
        assert again.lease_until is not None
        await inbox.mark_handled(session, again.id, [], later, token=again.lease_until)
        await inbox.mark_answered(session, again.id, token=again.lease_until)
    async with sessionmaker() as session, session.begin():
        nxt = await inbox.claim(session, CHANNEL, now=later, lease=lease)
    assert nxt is not None
    assert nxt.update_key == "2"


async def test_an_update_that_keeps_failing_ends_with_an_apology_and_the_chat_goes_on(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    real_dispatch = telegram_channel.dispatch

    async def broken(incoming: Any, *args: Any, **kwargs: Any) -> Any:
        if incoming.text == "/classes":
            raise RuntimeError("Phạm Thu Trang 0912000178")  # personal data: never logged
        return await real_dispatch(incoming, *args, **kwargs)

    monkeypatch.setattr(telegram_channel, "dispatch", broken)
    monkeypatch.setattr(inbox_worker, "backoff", lambda _attempts: dt.timedelta(0))
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(text_update(api.next_update_id(), "/classes"))
        await api.inject(text_update(api.next_update_id(), "/help"))
        await api.wait_for("sendMessage", count=2)
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)
    failed, answered = await inbox_rows(sessionmaker)
    assert (failed.status, failed.attempts, failed.last_error) == (
        InboxStatus.FAILED,
        3,
        "RuntimeError",
    )
    assert answered.status == InboxStatus.ANSWERED
    apology, greeting = (c.params["text"] for c in api.calls_of("sendMessage"))
    assert "Tôi có thể giúp" in greeting
    assert "failed: RuntimeError" in caplog.text
    assert "0912000178" not in caplog.text
    assert apology.startswith("Xin lỗi, hệ thống gặp sự cố")
