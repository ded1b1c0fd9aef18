"""A worker whose lease ran out settles nothing: an update is handled and answered once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import bot.channels.telegram as telegram_channel
from bot.channels.telegram import CHANNEL, TelegramChannel, build_application, now_utc
from db import inbox, outbox
from db.leases import LeaseLost
from db.models import ChannelAccount, InboundUpdate, InboxStatus, OutboxMessage, OutboxStatus
from db.repos import Repos
from handlers.notices import notify
from handlers.types import Msg, Reply
from tests.factories import add_person, add_unit
from tests.fake_bot_api import FakeBotApi, text_update
from tests.telegram_support import fake_bot_api, inbox_rows, settings_for, wait_status

LEASE = dt.timedelta(minutes=1)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def test_a_late_worker_can_neither_handle_nor_answer_an_update_taken_again(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    now = now_utc()
    later = now + LEASE + dt.timedelta(seconds=1)
    async with sessionmaker() as session, session.begin():
        await inbox.store(session, CHANNEL, "1", "111", {"update_id": 1})
    async with sessionmaker() as session, session.begin():
        late = await inbox.claim(session, CHANNEL, now=now, lease=LEASE)
    async with sessionmaker() as session, session.begin():
        fresh = await inbox.claim(session, CHANNEL, now=later, lease=LEASE)
    assert late is not None
    assert late.lease_until is not None
    assert fresh is not None
    assert fresh.lease_until is not None
    late_token, fresh_token = late.lease_until, fresh.lease_until
    with pytest.raises(LeaseLost):
        async with sessionmaker() as session, session.begin():
            await inbox.mark_handled(session, late.id, [{"text": "late"}], now, token=late_token)
    with pytest.raises(LeaseLost):
        async with sessionmaker() as session, session.begin():
            await inbox.record_failure(
                session, late.id, "E", token=late_token, now=now, retry_after=LEASE
            )
    async with sessionmaker() as session, session.begin():
        await inbox.mark_handled(session, fresh.id, [{"text": "ok"}], later, token=fresh_token)
        fresh_token = await inbox.renew(session, fresh.id, token=fresh_token, until=later + LEASE)
        await inbox.mark_answered(session, fresh.id, token=fresh_token)
    # The late worker cannot turn ANSWERED back into HANDLED, nor answer it again.
    for settle in (
        lambda s: inbox.mark_handled(s, late.id, [], now, token=late_token),
        lambda s: inbox.mark_answered(s, late.id, token=late_token),
        lambda s: inbox.renew(s, late.id, token=late_token, until=later),
    ):
        with pytest.raises(LeaseLost):
            async with sessionmaker() as session, session.begin():
                await settle(session)
    [row] = await inbox_rows(sessionmaker)
    assert (row.status, row.replies, row.attempts) == (InboxStatus.ANSWERED, [{"text": "ok"}], 0)


async def test_a_late_notice_sender_cannot_settle_a_notice_taken_again(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        person = await add_person(session, "0912000178", "Phạm Thu Trang", unit)
        session.add(ChannelAccount(person_id=person.id, channel=CHANNEL, external_id="111"))
        reply = Reply(lines=(Msg("start.intro"),))
        await notify(Repos(session), person.id, "test", "k1", reply, due_at=now_utc())
    now = now_utc()
    pace = outbox.Pace(interval={CHANNEL: 0.04}, per_chat=1.0, lease=LEASE)
    async with sessionmaker() as session, session.begin():
        [late] = (await outbox.claim_batch(session, [CHANNEL], now=now, limit=5, pace=pace)).notices
    later = now + 2 * LEASE
    async with sessionmaker() as session, session.begin():
        claim = await outbox.claim_batch(session, [CHANNEL], now=later, limit=5, pace=pace)
    [fresh] = claim.notices
    for settle in (
        lambda s: outbox.mark_sent(s, late, now=now, per_chat=1.0),
        lambda s: outbox.mark_failed(s, late, "Forbidden"),
        lambda s: outbox.retry_later(s, late, "E", until=now + LEASE, max_attempts=5),
        lambda s: outbox.postpone(s, late, until=now + LEASE),
    ):
        with pytest.raises(LeaseLost):
            async with sessionmaker() as session, session.begin():
                await settle(session)
    async with sessionmaker() as session, session.begin():
        await outbox.mark_sent(session, fresh, now=later, per_chat=1.0)
    async with sessionmaker() as session:
        row = (await session.scalars(select(OutboxMessage))).one()
    assert (row.status, row.attempts) == (OutboxStatus.SENT, 0)


async def test_an_update_whose_handling_outlives_its_lease_is_answered_once(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On PostgreSQL the second worker takes the update while the first one still handles
    # it; without the lease check both sent the reply. (SQLite's write lock makes the
    # second worker wait for the first one's unit of work.)
    real_dispatch = telegram_channel.dispatch
    slow = [True]

    async def slow_once(*args: Any, **kwargs: Any) -> Any:
        if slow:
            slow.pop()
            await asyncio.sleep(1.0)  # past the lease: another worker takes the update
        return await real_dispatch(*args, **kwargs)

    monkeypatch.setattr(telegram_channel, "dispatch", slow_once)
    settings = settings_for(api, database_url)
    channel = TelegramChannel(
        build_application(settings.telegram),
        sessionmaker,
        settings,
        workers=2,
        lease=dt.timedelta(seconds=0.3),
        idle_seconds=0.05,
    )
    await channel.initialize()
    workers = [asyncio.create_task(channel.work()) for _ in range(2)]
    try:
        await channel.receive([text_update(api.next_update_id(), "/help")])
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)
        await asyncio.sleep(1.5)  # the slow worker is done too
    finally:
        channel.stop()
        await asyncio.gather(*workers)
        await channel.shutdown()
    assert not slow
    assert len(api.calls_of("sendMessage")) == 1
    async with sessionmaker() as session:
        row = (await session.scalars(select(InboundUpdate))).one()
    assert (row.status, row.attempts) == (InboxStatus.ANSWERED, 0)
