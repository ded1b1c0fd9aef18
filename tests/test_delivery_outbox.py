"""The outbox as a queue: idempotent enqueue, leases that run out, claims that never overlap."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.delivery import now_utc
from db import outbox
from db.models import DeliveryPace, OutboxMessage, OutboxStatus
from db.repos import Repos
from db.session import create_engine, create_sessionmaker
from handlers.notices import notify
from tests.delivery_support import add_people, notice, queue, rows, statuses

LEASE = dt.timedelta(seconds=60)
PACE = outbox.Pace(interval={"telegram": 0.05}, per_chat=1.0, lease=LEASE)


async def enqueue(sessionmaker: async_sessionmaker[AsyncSession], person: int, text: str) -> bool:
    """Queue a notice keyed "same" in its own unit of work; return whether it was new."""
    async with sessionmaker() as session, session.begin():
        return await notify(Repos(session), person, "test", "same", notice(text), due_at=now_utc())


async def test_a_second_enqueue_of_the_same_key_is_a_no_op(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    [person] = await add_people(sessionmaker, 1)
    assert await enqueue(sessionmaker, person, "first")
    assert not await enqueue(sessionmaker, person, "second")
    [row] = await rows(sessionmaker)
    assert row.payload["reply"]["lines"][0]["params"] == {"code": "first"}
    # Also once the first one was sent.
    async with sessionmaker() as session, session.begin():
        claim = await outbox.claim_batch(session, ["telegram"], now=now_utc(), limit=5, pace=PACE)
        await outbox.mark_sent(session, claim.notices[0], now=now_utc(), per_chat=1.0)
    assert not await enqueue(sessionmaker, person, "third")
    assert await statuses(sessionmaker) == {OutboxStatus.SENT: 1}


async def test_concurrent_enqueues_of_one_key_queue_it_once(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    [person] = await add_people(sessionmaker, 1)
    inserted = asyncio.Event()

    async def first() -> bool:
        """Insert the key and hold the transaction open while the others try."""
        async with sessionmaker() as session, session.begin():
            new = await notify(
                Repos(session), person, "test", "same", notice("first"), due_at=now_utc()
            )
            inserted.set()
            await asyncio.sleep(0.3)
            return new

    async def later(sessions: async_sessionmaker[AsyncSession], n: int) -> bool:
        await inserted.wait()
        return await enqueue(sessions, person, f"later {n}")

    # The others use their own connection pool, as other processes would.
    engine = create_engine(database_url)
    try:
        others = create_sessionmaker(engine)
        results = await asyncio.gather(first(), *(later(others, n) for n in range(5)))
    finally:
        await engine.dispose()
    assert results == [True] + [False] * 5
    [row] = await rows(sessionmaker)
    assert row.payload["reply"]["lines"][0]["params"] == {"code": "first"}


async def test_a_lease_that_runs_out_returns_the_notice_to_the_queue(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    [person] = await add_people(sessionmaker, 1)
    await queue(sessionmaker, [person])
    now = now_utc()

    async def claim(at: dt.datetime) -> list[outbox.Notice]:
        async with sessionmaker() as session, session.begin():
            taken = await outbox.claim_batch(session, ["telegram"], now=at, limit=5, pace=PACE)
        return taken.notices

    [first] = await claim(now)
    assert first.token == first.slot + LEASE
    # Leased: no one else takes it, however long its send takes, until the lease ends.
    assert await claim(now + dt.timedelta(seconds=2)) == []
    assert await claim(first.token) == []
    # The worker that held it crashed: after the lease it is claimed again, with a new
    # token, and the crashed worker's token settles nothing.
    [again] = await claim(first.token + dt.timedelta(microseconds=1))
    assert again.id == first.id
    assert again.token > first.token
    async with sessionmaker() as session, session.begin():
        await outbox.mark_sent(session, again, now=again.slot, per_chat=1.0)
    [row] = await rows(sessionmaker)
    assert (row.status, row.lease_until, row.attempts) == (OutboxStatus.SENT, None, 0)


async def test_many_concurrent_claimers_take_each_notice_once_without_deadlocks(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await add_people(sessionmaker, 50)
    keys = await queue(sessionmaker, people, per_person=4)
    pace = outbox.Pace(interval={"telegram": 0.0005}, per_chat=0.01, lease=LEASE)
    claimed: list[int] = []
    # Eight claimers, each with its own connection, as eight processes would have.
    engine = create_engine(database_url, pool_size=8)
    sessions = create_sessionmaker(engine)

    async def claimer() -> None:
        """Claim and settle batches until nothing is left queued."""
        while True:
            async with sessions() as session, session.begin():
                claim = await outbox.claim_batch(
                    session, ["telegram"], now=now_utc(), limit=10, pace=pace
                )
            claimed.extend(n.id for n in claim.notices)
            for taken in claim.notices:
                async with sessions() as session, session.begin():
                    await outbox.mark_sent(session, taken, now=now_utc(), per_chat=0.01)
            if not claim.notices:
                async with sessions() as session:
                    left = await session.scalar(
                        select(func.count()).where(OutboxMessage.status == OutboxStatus.QUEUED)
                    )
                if not left:
                    return
                await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(asyncio.gather(*(claimer() for _ in range(8))), timeout=60)
    finally:
        await engine.dispose()
    assert len(claimed) == len(keys)
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert await statuses(sessionmaker) == {OutboxStatus.SENT: len(keys)}


async def test_notices_for_people_reachable_only_on_another_channel_wait_for_it(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # 30 people linked only on Zalo, queued first; then one on Telegram, one on nothing.
    on_zalo = await add_people(sessionmaker, 30, channel="zalo")
    [on_telegram] = await add_people(sessionmaker, 1)
    [nowhere] = await add_people(sessionmaker, 1, channel=None)
    await queue(sessionmaker, [*on_zalo, on_telegram, nowhere])
    now = now_utc()
    pace = outbox.Pace(interval={"telegram": 0.05, "zalo": 0.05}, per_chat=1.0, lease=LEASE)
    # A process serving only Telegram (a claim looks at 4 x 5 rows) neither fails the
    # Zalo people's notices nor gets stuck behind them.
    async with sessionmaker() as session, session.begin():
        claim = await outbox.claim_batch(session, ["telegram"], now=now, limit=5, pace=pace)
    assert [n.person_id for n in claim.notices] == [on_telegram]
    assert claim.unreachable == 1
    status = {row.person_id: (row.status, row.last_error) for row in await rows(sessionmaker)}
    assert status[nowhere] == (OutboxStatus.FAILED, "unreachable: no reachable account")
    assert {status[person] for person in on_zalo} == {(OutboxStatus.QUEUED, None)}
    # A process serving Zalo takes them.
    async with sessionmaker() as session, session.begin():
        claim = await outbox.claim_batch(session, ["zalo"], now=now, limit=50, pace=pace)
    assert sorted(n.person_id for n in claim.notices) == on_zalo
    assert {n.channel for n in claim.notices} == {"zalo"}


async def test_a_claim_that_waited_for_a_lock_gets_slots_from_when_it_got_it(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await add_people(sessionmaker, 3)
    await queue(sessionmaker, people)
    async with sessionmaker() as session, session.begin():
        session.add(DeliveryPace(channel="telegram", next_at=now_utc(), slowdown=1.0))
    # Another process's unit of work holds the channel's pace (on SQLite, the database)
    # for 0.3 s while this claim starts.
    engine = create_engine(database_url)
    locked = asyncio.Event()

    async def hold() -> None:
        async with create_sessionmaker(engine)() as session, session.begin():
            await session.execute(select(DeliveryPace).with_for_update())
            locked.set()
            await asyncio.sleep(0.3)

    try:
        holder = asyncio.create_task(hold())
        await locked.wait()
        began = now_utc()
        async with sessionmaker() as session, session.begin():
            claim = await outbox.claim_batch(session, ["telegram"], now=began, limit=5, pace=PACE)
        await holder
    finally:
        await engine.dispose()
    # Not from `began`: those slots were past when the claim got the lock, and three
    # messages would have gone out at once.
    first, second, third = (notice.slot for notice in claim.notices)
    assert first - began >= dt.timedelta(seconds=0.25)
    assert (second - first, third - second) == (dt.timedelta(seconds=0.05),) * 2
