"""Benchmark: registering through the chat in a province-sized database, alone and in a rush.

Seeds the catalog benchmark's province (30,000 people, 400 classes, 100,000
registrations), then times, through the real dispatch:
- one person pressing Register and then Confirm (each step its own transaction), and /my;
- 200 people pressing Confirm for a 30-seat class at the same instant (one process), as
  the wall time until all are answered and the answers per second.
Prints the figures on SQLite and, when TRAININGBOT_BENCH_POSTGRES_URL (or
TRAININGBOT_TEST_POSTGRES_URL) is set, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import time

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.catalog import NOW, TODAY, seed
from bench.roster import on_each_database
from db import migrate
from db.models import ChannelAccount, Person, Registration, TrainingClass
from db.repos import Repos
from db.session import create_engine, create_sessionmaker
from handlers.dispatch import dispatch
from handlers.registration_buttons import Do, button_data
from handlers.types import ChatSettings, Incoming

ROUNDS = 40
RUSH = 200
SEATS = 30
SETTINGS = ChatSettings()


async def press(
    sessionmaker: async_sessionmaker[AsyncSession], user: str, *, text: str = "", data: str = ""
) -> float:
    """Send one message or button press through dispatch; return the seconds it took."""
    incoming = Incoming(
        channel="bench", chat_id=user, user_id=user, text=text or None, button=data or None
    )
    started = time.perf_counter()
    async with sessionmaker() as session, session.begin():
        await dispatch(incoming, Repos(session), now=NOW, settings=SETTINGS)
    return time.perf_counter() - started


def figures(timings: list[float]) -> str:
    """Return the median and 95th percentile in milliseconds."""
    timings = sorted(timings)
    median = statistics.median(timings) * 1000
    p95 = timings[int(len(timings) * 0.95) - 1] * 1000
    return f"median {median:6.1f} ms   p95 {p95:6.1f} ms"


async def new_class(sessionmaker: async_sessionmaker[AsyncSession], code: str, seats: int) -> int:
    """Add an open class starting in a month with `seats` seats; return its id."""
    start = TODAY + dt.timedelta(days=30)
    async with sessionmaker() as session, session.begin():
        result = await session.execute(
            insert(TrainingClass).returning(TrainingClass.id),
            [
                {
                    "code": code,
                    "title": f"Lớp {code}",
                    "search_text": code.lower(),
                    "program": "ky_nang",
                    "form": "full_time",
                    "start_date": start,
                    "end_date": start + dt.timedelta(days=2),
                    "registration_deadline": start - dt.timedelta(days=7),
                    "capacity": seats,
                }
            ],
        )
        return int(result.scalar_one())


async def link_people(sessionmaker: async_sessionmaker[AsyncSession], count: int) -> list[str]:
    """Link the first `count` people to bench chats named after their ids; return the ids."""
    async with sessionmaker() as session, session.begin():
        ids = list(await session.scalars(select(Person.id).order_by(Person.id).limit(count)))
        await session.execute(delete(ChannelAccount).where(ChannelAccount.channel == "bench"))
        await session.execute(
            insert(ChannelAccount),
            [{"person_id": i, "channel": "bench", "external_id": f"p{i}"} for i in ids],
        )
    return [f"p{i}" for i in ids]


async def run_on(label: str, url: str) -> None:
    """Seed one database and time registering, alone and in a rush."""
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        sessionmaker = create_sessionmaker(engine)
        await seed(sessionmaker)
        users = await link_people(sessionmaker, RUSH)
        solo = await new_class(sessionmaker, "SOLO", 1000)
        asks, confirms, mine = [], [], []
        for user in users[:ROUNDS]:
            asks.append(await press(sessionmaker, user, data=button_data(Do.REGISTER, solo)))
            confirms.append(await press(sessionmaker, user, data=button_data(Do.CONFIRM, solo)))
            mine.append(await press(sessionmaker, user, text="/my"))
        print(f"{label:<10} {'Register (checks, confirmation)':<34} {figures(asks)}")
        print(f"{label:<10} {'Confirm (seat taken)':<34} {figures(confirms)}")
        print(f"{label:<10} {'/my':<34} {figures(mine)}")

        rush = await new_class(sessionmaker, "RUSH", SEATS)
        data = button_data(Do.CONFIRM, rush)
        started = time.perf_counter()
        await asyncio.gather(*(press(sessionmaker, user, data=data) for user in users))
        seconds = time.perf_counter() - started
        async with sessionmaker() as session:
            held = len(
                list(
                    await session.scalars(
                        select(Registration.id).where(
                            Registration.class_id == rush, Registration.status == "confirmed"
                        )
                    )
                )
            )
        print(
            f"{label:<10} {f'{RUSH} confirm at once, {SEATS} seats':<34} "
            f"{seconds:6.2f} s ({RUSH / seconds:5.0f} answers/s), {held} seats confirmed"
        )
    finally:
        await engine.dispose()


async def main() -> None:
    """Run the registration benchmark on every configured database."""
    print(f"registration benchmark: the catalog's province; {ROUNDS} rounds each")
    await on_each_database(run_on)


if __name__ == "__main__":
    asyncio.run(main())
