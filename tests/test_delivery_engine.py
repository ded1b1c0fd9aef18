"""The delivery engine's rounds: quiet hours, expiry, draining and stopping."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import delivery
from bot.delivery import now_utc
from db import outbox
from db.models import DeliveryPace, OutboxStatus
from jobs.timing import NotifySettings, QuietHours
from tests.delivery_support import (
    add_people,
    delivery_settings,
    key_of,
    queue,
    rows,
    statuses,
    telegram_engine,
)
from tests.fake_bot_api import FakeBotApi
from tests.telegram_support import fake_bot_api

ZONE = NotifySettings().zone
PACE = outbox.Pace(interval={"telegram": 0.05}, per_chat=1.0, lease=dt.timedelta(seconds=60))
NIGHTS = NotifySettings(quiet_hours=QuietHours(dt.time(21), dt.time(7)))


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


def next_local(clock: dt.time, after: dt.datetime) -> dt.datetime:
    """Return the first moment after `after` when the school's clock shows `clock`."""
    local = after.astimezone(ZONE)
    moment = dt.datetime.combine(local.date(), clock, tzinfo=ZONE)
    while moment <= local:
        moment += dt.timedelta(days=1)
    return moment.astimezone(dt.UTC)


def clock_at(moment: dt.datetime) -> Callable[[], dt.datetime]:
    """Return a clock that shows `moment` now and runs on from there."""
    offset = moment - now_utc()
    return lambda: now_utc() + offset


async def test_in_quiet_hours_only_urgent_notices_go_the_rest_wait_for_the_morning(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    night = next_local(dt.time(23), now_utc())
    morning = next_local(dt.time(7), night)
    people = await add_people(sessionmaker, 4)
    [urgent] = await queue(sessionmaker, people[:1], prefix="urgent", urgent=True)
    [later] = await queue(sessionmaker, people[1:2], prefix="later")
    # Notices that expired: one urgent, one that would wait for the morning.
    expired = night - dt.timedelta(minutes=1)
    await queue(sessionmaker, people[2:3], prefix="gone", urgent=True, expires_at=expired)
    await queue(
        sessionmaker, people[3:], prefix="stale", expires_at=morning - dt.timedelta(hours=1)
    )

    async with telegram_engine(
        sessionmaker, api, database_url, notify_settings=NIGHTS, clock=clock_at(night)
    ) as engine:
        report = await engine.drain()
    assert [key_of(call) for call in api.delivered()] == [urgent]
    assert (report.sent, report.skipped) == (1, 1)
    status = {row.idempotency_key: row.status for row in await rows(sessionmaker)}
    assert status[later] == OutboxStatus.QUEUED
    assert status[f"gone{people[2]}-0"] == OutboxStatus.SKIPPED

    async with telegram_engine(
        sessionmaker, api, database_url, notify_settings=NIGHTS, clock=clock_at(morning)
    ) as engine:
        report = await engine.drain()
    assert [key_of(call) for call in api.delivered()] == [urgent, later]
    assert (report.sent, report.skipped) == (1, 1)
    status = {row.idempotency_key: row.status for row in await rows(sessionmaker)}
    assert status[later] == OutboxStatus.SENT
    assert status[f"stale{people[3]}-0"] == OutboxStatus.SKIPPED
    [skipped] = [row for row in await rows(sessionmaker) if row.idempotency_key.startswith("stale")]
    assert (skipped.last_error, skipped.sent_at) == ("expired", None)


async def test_a_stop_sends_nothing_more_and_puts_back_the_notices_not_yet_due(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await add_people(sessionmaker, 5)
    keys = await queue(sessionmaker, people)
    # One a second: the batch of five has slots up to four seconds ahead.
    slow = delivery_settings(rate_per_second=1.0, batch_size=5)
    async with telegram_engine(sessionmaker, api, database_url, slow) as engine:
        stopping = asyncio.Event()
        run = asyncio.create_task(engine.run(stopping))
        await api.wait_for("sendMessage")
        stopped_at = time.monotonic()
        stopping.set()
        await asyncio.wait_for(run, timeout=10)
        assert time.monotonic() - stopped_at < 0.5
    assert [key_of(call) for call in api.calls_of("sendMessage")] == keys[:1]
    left = [row for row in await rows(sessionmaker) if row.status == OutboxStatus.QUEUED]
    assert len(left) == 4
    assert {row.lease_until for row in left} == {None}
    # Another worker may take them at once (at the channel's next free slot: the slots
    # the stopped engine had reserved are not given back), not after a minute's lease.
    async with sessionmaker() as session, session.begin():
        pace = await session.get(DeliveryPace, "telegram")
        assert pace is not None
        claim = await outbox.claim_batch(
            session, ["telegram"], now=pace.next_at, limit=5, pace=PACE
        )
    assert sorted(n.id for n in claim.notices) == sorted(row.id for row in left)


async def test_drain_leaves_a_retry_to_its_backoff_instead_of_waiting_for_it(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await add_people(sessionmaker, 2)
    first_key, second_key = await queue(sessionmaker, people)
    api.fail("sendMessage", 502, "Bad Gateway")
    settings = delivery_settings(retry_base=dt.timedelta(seconds=3))
    started = time.monotonic()
    async with telegram_engine(sessionmaker, api, database_url, settings) as engine:
        report = await asyncio.wait_for(engine.drain(), timeout=10)
    assert time.monotonic() - started < 2
    assert (report.sent, report.retried) == (1, 1)
    status = {row.idempotency_key: (row.status, row.attempts) for row in await rows(sessionmaker)}
    assert status == {first_key: (OutboxStatus.QUEUED, 1), second_key: (OutboxStatus.SENT, 0)}


async def test_drain_gives_up_when_the_server_keeps_refusing_with_429(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery, "DRAIN_WAITS_FOR", dt.timedelta(seconds=2))
    people = await add_people(sessionmaker, 3)
    await queue(sessionmaker, people)
    api.fail("sendMessage", 429, "Too Many Requests: retry after 1", times=1000, retry_after=1)
    async with telegram_engine(sessionmaker, api, database_url) as engine:
        report = await asyncio.wait_for(engine.drain(), timeout=10)
    assert report.sent == 0
    assert report.throttled >= 2
    assert await statuses(sessionmaker) == {OutboxStatus.QUEUED: 3}


async def test_drain_does_not_sleep_through_a_long_429_it_leaves_the_rest_queued(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await add_people(sessionmaker, 30)
    await queue(sessionmaker, people)
    api.fail_flood("sendMessage", retry_after=120)
    async with telegram_engine(sessionmaker, api, database_url) as engine:
        report = await asyncio.wait_for(engine.drain(), timeout=10)
    # (The next slot's send may have left before the 429 came back.)
    assert report.throttled == 1
    assert report.sent <= 1
    assert len(api.calls_of("sendMessage")) == 1 + report.sent
    assert await statuses(sessionmaker) == {OutboxStatus.QUEUED: 30 - report.sent} | (
        {OutboxStatus.SENT: 1} if report.sent else {}
    )
    # A worker that runs on (the service) sends them once the pause is over.
    async with sessionmaker() as session, session.begin():
        pace = await session.get(DeliveryPace, "telegram")
        assert pace is not None
        assert pace.next_at >= now_utc() + dt.timedelta(seconds=110)
