"""What the delivery engine does with each failure the Bot API answers with.

5xx and dropped connections are retried with backoff and jitter up to max_attempts, then
FAILED with the reason; 403 marks the account unreachable and moves the notice to the
person's other channel, else FAILED. Sent through the real Telegram client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.delivery import now_utc
from db.models import ChannelAccount, DeliveryPace, OutboxStatus
from tests.delivery_support import (
    RecordingSender,
    add_people,
    delivery_settings,
    key_of,
    queue,
    rows,
    running_engine,
    telegram_engine,
    wait_rows,
)
from tests.fake_bot_api import FakeBotApi
from tests.telegram_support import fake_bot_api

# How late a retry may come after its due time: the engine looks for due notices every
# 0.1 s, then a claim and a send take their time (0.5 s was seen on a 2-core CI machine).
LATENESS = 0.6


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def test_server_errors_are_retried_with_growing_jittered_waits_then_failed(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    [person] = await add_people(sessionmaker, 1)
    await queue(sessionmaker, [person])
    api.fail("sendMessage", 500, "Internal Server Error", times=100)
    # No per-chat pace here: it would hold each retry for a second after the last try.
    settings = delivery_settings(
        max_attempts=3, retry_base=dt.timedelta(seconds=0.3), per_chat_seconds=0.0
    )
    async with (
        telegram_engine(sessionmaker, api, database_url, settings) as engine,
        running_engine(engine),
    ):
        [row] = await wait_rows(sessionmaker, OutboxStatus.FAILED, 1)
    first, second, third = api.calls_of("sendMessage")
    # base x 2^attempt, +-25 %: the lower bounds alone show the waits grow.
    assert 0.3 * 0.75 <= second.at - first.at <= 0.3 * 1.25 + LATENESS
    assert 0.6 * 0.75 <= third.at - second.at <= 0.6 * 1.25 + LATENESS
    assert (row.attempts, row.last_error) == (3, "NetworkError: Internal Server Error")
    assert (engine.report.retried, engine.report.failed, engine.report.sent) == (2, 1, 0)


async def test_a_bad_gateway_and_a_dropped_connection_are_retried_and_the_notice_sent(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await add_people(sessionmaker, 2)
    await queue(sessionmaker, people)
    api.fail("sendMessage", 502, "Bad Gateway")
    async with (
        telegram_engine(sessionmaker, api, database_url) as engine,
        running_engine(engine),
    ):
        await wait_rows(sessionmaker, OutboxStatus.SENT, 1)
        api.drop("sendMessage")
        [person] = await add_people(sessionmaker, 1)
        await queue(sessionmaker, [person], prefix="late")
        sent = await wait_rows(sessionmaker, OutboxStatus.SENT, 3)
    assert sorted(row.attempts for row in sent) == [0, 1, 1]
    answered = [call.status for call in api.calls_of("sendMessage")]
    assert sorted(answered, key=str) == [200, 200, 200, 502, None]
    assert [key_of(call) for call in api.delivered()].count(f"late{person}-0") == 1


async def test_a_blocked_account_is_marked_and_the_persons_notices_fail_without_more_tries(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    [blocked, other] = await add_people(sessionmaker, 2)
    await queue(sessionmaker, [blocked, other], per_person=3)
    api.fail_blocked(times=1)
    before = now_utc()
    async with telegram_engine(sessionmaker, api, database_url) as engine:
        await engine.drain()
    by_person = {
        person: [r for r in await rows(sessionmaker) if r.person_id == person]
        for person in (blocked, other)
    }
    assert [row.status for row in by_person[other]] == [OutboxStatus.SENT] * 3
    assert [row.status for row in by_person[blocked]] == [OutboxStatus.FAILED] * 3
    assert [row.last_error for row in by_person[blocked]] == [
        "unreachable: 403 Forbidden: bot was blocked by the user",
        "unreachable: no reachable account",
        "unreachable: no reachable account",
    ]
    # One refused message; the blocked chat was not tried again.
    assert len(api.calls_of("sendMessage")) == 4
    async with sessionmaker() as session:
        account = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.person_id == blocked)
        )
    assert account is not None
    assert account.reachable is False
    assert account.unreachable_since is not None
    assert before <= account.unreachable_since <= now_utc()


async def test_a_notice_refused_with_403_goes_to_the_persons_other_channel(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    [person] = await add_people(sessionmaker, 1)
    async with sessionmaker() as session, session.begin():
        session.add(ChannelAccount(person_id=person, channel="zalo", external_id="z-1"))
    [key] = await queue(sessionmaker, [person])
    api.fail_blocked()
    zalo = RecordingSender()
    async with telegram_engine(sessionmaker, api, database_url, also=[zalo]) as engine:
        report = await engine.drain()
    [row] = await rows(sessionmaker)
    assert (row.status, row.channel, row.attempts) == (OutboxStatus.SENT, "zalo", 0)
    [(external_id, reply, _language)] = zalo.sent
    assert external_id == "z-1"
    assert reply.lines[0].params == {"code": key}
    assert (report.sent, report.failed, report.unreachable) == (1, 0, 0)
    async with sessionmaker() as session:
        reachable = dict(
            (await session.execute(select(ChannelAccount.channel, ChannelAccount.reachable))).all()
        )
    assert reachable == {"telegram": False, "zalo": True}


async def test_a_send_without_an_answer_in_time_is_retried_as_a_timeout(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    [person] = await add_people(sessionmaker, 1)
    [key] = await queue(sessionmaker, [person])
    # The server holds the first answer for two seconds; the engine waits 0.3 s at most.
    api.answer_late("sendMessage", 2.0)
    settings = delivery_settings(send_timeout=0.3, per_chat_seconds=0.0)
    async with (
        telegram_engine(sessionmaker, api, database_url, settings) as engine,
        running_engine(engine),
    ):
        [row] = await wait_rows(sessionmaker, OutboxStatus.SENT, 1, within=5)
        first, second = await api.wait_for("sendMessage", count=2)
    assert 0.3 <= second.at - first.at <= 0.3 + 0.2 * 1.25 + LATENESS
    assert (row.attempts, row.last_error) == (1, "no answer within 0.3 s")
    assert key_of(second) == key
    assert engine.report.retried == 1


async def test_a_notice_whose_lease_would_run_out_mid_send_is_not_sent(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await add_people(sessionmaker, 2)
    first_key, second_key = await queue(sessionmaker, people)
    # Two notices half a second apart; the process stalls (a suspended machine) after the
    # first: when it wakes, the second's lease (60 s after its slot) has less than the
    # 20 s a send may take left, and another worker may take it while it is being sent.
    stalled = [dt.timedelta(0)]
    settings = delivery_settings(rate_per_second=2.0, batch_size=2)
    async with telegram_engine(
        sessionmaker, api, database_url, settings, clock=lambda: now_utc() + stalled[0]
    ) as engine:
        batch = asyncio.create_task(engine.round())
        await api.wait_for("sendMessage")
        stalled[0] = dt.timedelta(seconds=45)
        assert await batch == 2
        await engine.finish()
    assert [key_of(call) for call in api.calls_of("sendMessage")] == [first_key]
    assert engine.report.lost_leases == 1
    status = {row.idempotency_key: row.status for row in await rows(sessionmaker)}
    assert status == {first_key: OutboxStatus.SENT, second_key: OutboxStatus.QUEUED}


async def test_a_refused_bot_token_fails_no_notice_the_channel_waits_instead(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    # The token was revoked (@BotFather): every send is refused with 401. That is the
    # bot's problem, not the recipients': their notices must survive until it is fixed.
    people = await add_people(sessionmaker, 3)
    await queue(sessionmaker, people)
    api.fail("sendMessage", 401, "Unauthorized", times=1000)
    async with telegram_engine(sessionmaker, api, database_url) as engine:
        report = await asyncio.wait_for(engine.drain(), timeout=10)
    assert (report.sent, report.failed, report.throttled) == (0, 0, 1)
    assert {(row.status, row.attempts) for row in await rows(sessionmaker)} == {
        (OutboxStatus.QUEUED, 0)
    }
    async with sessionmaker() as session:
        pace = await session.get(DeliveryPace, "telegram")
    assert pace is not None
    assert pace.next_at >= now_utc() + dt.timedelta(seconds=50)
