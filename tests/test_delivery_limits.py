"""Telegram's limits, measured at the fake Bot API: the global rate and one message a second
per chat, for one engine and for two at once, and a 429 that pauses and slows every engine.

The engines send through the real python-telegram-bot client over HTTP; the times are
when the fake server received each message.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import OutboxStatus
from db.session import create_engine, create_sessionmaker
from tests.delivery_support import (
    add_people,
    assert_rate_kept,
    closest_per_chat,
    delivery_settings,
    key_of,
    queue,
    running_engine,
    telegram_engine,
    wait_rows,
)
from tests.fake_bot_api import FakeBotApi
from tests.telegram_support import fake_bot_api

RATE = 20
# Arrival times at the server jitter by a few milliseconds around the engine's slots.
JITTER = 0.05


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


def assert_within_limits(api: FakeBotApi, rate: float, per_chat: float) -> None:
    """Assert the delivered messages kept the global rate and the per-chat pace."""
    sent = api.delivered()
    assert_rate_kept([call.at for call in sent], rate)
    assert closest_per_chat(sent) >= per_chat - JITTER


async def test_one_engine_keeps_the_global_rate_and_one_message_a_second_per_chat(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await add_people(sessionmaker, 15)
    # 15 people with 3 notices each: 45 notices, each chat paced a second apart.
    keys = await queue(sessionmaker, people, per_person=3)
    async with telegram_engine(sessionmaker, api, database_url) as engine:
        report = await asyncio.wait_for(engine.drain(), timeout=20)
    assert report.sent == len(keys)
    assert sorted(key_of(call) for call in api.delivered()) == sorted(keys)
    assert_within_limits(api, RATE, 1.0)
    await wait_rows(sessionmaker, OutboxStatus.SENT, len(keys), within=0)


async def test_two_engines_share_the_rate_and_the_chats_pace(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await add_people(sessionmaker, 20)
    keys = await queue(sessionmaker, people, per_person=2)
    # The second engine has its own connection pool, as another process would. Small
    # batches: a claim looks at 4 x batch rows, and on PostgreSQL another claim at that
    # moment skips them, so with big ones an engine could find everything taken.
    other_db = create_engine(database_url)
    settings = delivery_settings(batch_size=5)
    try:
        async with (
            telegram_engine(sessionmaker, api, database_url, settings) as one,
            telegram_engine(create_sessionmaker(other_db), api, database_url, settings) as two,
        ):
            reports = await asyncio.wait_for(asyncio.gather(one.drain(), two.drain()), 20)
    finally:
        await other_db.dispose()
    assert all(report.sent > 0 for report in reports), "both engines took a share"
    assert sum(report.sent for report in reports) == len(keys)
    delivered = Counter(key_of(call) for call in api.delivered())
    assert delivered == Counter(keys), "each notice exactly once"
    assert_within_limits(api, RATE, 1.0)


async def test_a_429_pauses_every_engine_for_retry_after_and_slows_them_down(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await add_people(sessionmaker, 60)
    keys = await queue(sessionmaker, people)
    api.fail_flood("sendMessage", retry_after=2)
    other_db = create_engine(database_url)
    try:
        async with (
            telegram_engine(sessionmaker, api, database_url) as one,
            telegram_engine(create_sessionmaker(other_db), api, database_url) as two,
            running_engine(one),
            running_engine(two),
        ):
            await wait_rows(sessionmaker, OutboxStatus.SENT, len(keys), within=20)
    finally:
        await other_db.dispose()
    refused, *_ = api.calls_of("sendMessage")
    assert refused.status == 429
    assert one.report.throttled + two.report.throttled == 1
    delivered = api.delivered()
    assert Counter(key_of(call) for call in delivered) == Counter(keys)
    after = [call.at - refused.at for call in delivered]
    # The refused notice went again after retry_after.
    [again] = [call for call in delivered if key_of(call) == key_of(refused)]
    assert again.at - refused.at >= 2.0
    # The engine that was refused put its batch back. The other one sent the slots it
    # had already reserved (two batches of half a second at 20/s: Telegram would refuse
    # those too, and it would pause on its own), but claimed nothing more before the
    # pause ended: the pause is the channel's, in the database.
    assert [moment for moment in after if 1.0 + JITTER < moment < 2.0] == []
    # After the pause the pace is slower: x1.5, easing back by x0.9 a claim, so the first
    # second holds 14 messages instead of 20.
    assert len([moment for moment in after if 2.0 <= moment < 3.0]) <= RATE * 0.75
