"""Benchmark: a broadcast to a whole province, through the chat, queued in one unit of work.

Seeds the catalog benchmark's province (30,000 people, 400 classes, 100,000
registrations), links 27,000 of the people to a chat account (500 of which blocked the
bot), then, as an admin through the real dispatch: writes an announcement, previews it
to everyone linked (the exact count), sends it (27,000 - 500 notices queued by one
INSERT … SELECT), and times what follows while it goes out: the progress counts, a
delivery claim of one batch among the queued notices, and stopping it (the rest
skipped). Prints the figures on SQLite and, when TRAININGBOT_BENCH_POSTGRES_URL (or
TRAININGBOT_TEST_POSTGRES_URL) is set, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.catalog import NOW, seed
from bench.roster import on_each_database
from db import broadcasts, migrate, outbox
from db.models import ChannelAccount, OutboxMessage, Person
from db.repos import Repos
from db.session import create_engine, create_sessionmaker
from handlers.dispatch import dispatch
from handlers.types import ChatSettings, Incoming

LINKED = 27_000
BLOCKED = 500
ROUNDS = 20
SETTINGS = ChatSettings()
PACE = outbox.Pace(interval={"telegram": 0.04}, per_chat=1.0, lease=dt.timedelta(minutes=1))
TEXT = "Thông báo: lịch học tuần sau thay đổi, đồng chí xem chi tiết trên cổng thông tin. " * 8


async def link_people(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Link LINKED people to Telegram accounts, BLOCKED of them unreachable; make an admin."""
    async with sessionmaker() as session, session.begin():
        # The catalog benchmark's chat "u1" is the admin.
        admin = await session.scalar(
            select(ChannelAccount.person_id).where(ChannelAccount.external_id == "u1")
        )
        await session.execute(update(Person).where(Person.id == admin).values(is_admin=True))
        others = select(Person.id).where(Person.id != admin).order_by(Person.id).limit(LINKED)
        await session.execute(
            insert(ChannelAccount),
            [
                {
                    "person_id": person_id,
                    "channel": "telegram",
                    "external_id": str(1_000_000 + person_id),
                    "reachable": number >= BLOCKED,
                }
                for number, person_id in enumerate((await session.scalars(others)).all())
            ],
        )


async def say(
    sessionmaker: async_sessionmaker[AsyncSession], *, text: str = "", data: str = ""
) -> tuple[float, list[str]]:
    """Send text or press a button as the admin; return the seconds and the buttons shown."""
    incoming = Incoming(
        channel="bench", chat_id="u1", user_id="u1", text=text or None, button=data or None
    )
    started = time.perf_counter()
    async with sessionmaker() as session, session.begin():
        answer = await dispatch(incoming, Repos(session), now=NOW, settings=SETTINGS)
    elapsed = time.perf_counter() - started
    return elapsed, [b.data for reply in answer.replies for row in reply.buttons for b in row]


async def timed(run: Callable[[], Awaitable[object]], rounds: int = ROUNDS) -> str:
    """Run `run` `rounds` times; return its median and 95th percentile."""
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        await run()
        timings.append(time.perf_counter() - started)
    timings.sort()
    median = statistics.median(timings) * 1000
    p95 = timings[max(0, int(len(timings) * 0.95) - 1)] * 1000
    return f"median {median:7.1f} ms   p95 {p95:7.1f} ms"


async def run_on(label: str, url: str) -> None:
    """Seed one database, then write, preview, send and stop a province-wide broadcast."""
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        sessionmaker = create_sessionmaker(engine)
        await seed(sessionmaker)
        await link_people(sessionmaker)
        await say(sessionmaker, text="/broadcast")
        wrote, _ = await say(sessionmaker, text=TEXT)
        print(f"{label:<10} {'write (draft stored)':<34} {wrote * 1000:7.1f} ms")

        async def preview() -> None:
            await say(sessionmaker, data="bk:1:1")

        print(f"{label:<10} {'preview (count everyone linked)':<34} {await timed(preview)}")
        _, buttons = await say(sessionmaker, data="bk:1:1")
        send = next(data for data in buttons if data.startswith("bg:"))
        sent, _ = await say(sessionmaker, data=send)
        async with sessionmaker() as session:
            queued = await session.scalar(select(func.count()).select_from(OutboxMessage))
        print(
            f"{label:<10} {'send (queue, one INSERT … SELECT)':<34} {sent * 1000:7.1f} ms"
            f"   {queued:,} notices ({(queued or 0) / sent:,.0f}/s)"
        )

        async def progress() -> None:
            async with sessionmaker() as session:
                await broadcasts.progress(session, 1)

        print(f"{label:<10} {'progress counts':<34} {await timed(progress)}")
        moment = [NOW]

        async def claim() -> None:
            moment[0] += dt.timedelta(seconds=2)
            async with sessionmaker() as session, session.begin():
                await outbox.claim_batch(session, ["telegram"], now=moment[0], limit=50, pace=PACE)

        print(f"{label:<10} {'delivery claim of 50 among them':<34} {await timed(claim, 10)}")
        started = time.perf_counter()
        async with sessionmaker() as session, session.begin():
            skipped = await broadcasts.stop(session, 1, by_id=1, now=NOW)
        stopped = time.perf_counter() - started
        print(
            f"{label:<10} {'stop (skip the rest)':<34} {stopped * 1000:7.1f} ms"
            f"   {skipped:,} skipped"
        )
    finally:
        await engine.dispose()


async def main() -> None:
    """Run the broadcast benchmark on every configured database."""
    print(
        f"broadcast benchmark: 30,000 people, {LINKED:,} linked ({BLOCKED} blocked the bot); "
        "an admin broadcasts to everyone linked through dispatch"
    )
    await on_each_database(run_on)


if __name__ == "__main__":
    asyncio.run(main())
