"""Benchmark: how long the reminder sweep takes to find due reminders among 200,000
registrations, and what the other periodic jobs cost in the same province.

Seeds the catalog benchmark's province (30,000 people in 60 units, 400 classes over five
years) with 200,000 registrations, five sessions a class and a head a unit, then times,
each in its own unit of work as the service runs them:
- the reminder sweep at the moment a class's 7-day reminders fall due (finding them and
  queuing one notice per confirmed seat);
- the same sweep a minute later, when nothing new is due (what every minute costs);
- every job of the registry at once, as `trainingbot jobs run-once` runs them.
Prints the figures on SQLite and, when TRAININGBOT_BENCH_POSTGRES_URL (or
TRAININGBOT_TEST_POSTGRES_URL) is set, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import time
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.catalog import CLASSES, PEOPLE, TODAY, seed
from bench.roster import on_each_database
from db import migrate
from db.models import (
    ClassSession,
    OutboxMessage,
    Person,
    TrainingClass,
)
from db.session import create_engine, create_sessionmaker
from jobs.registry import JOBS
from jobs.reminders import send_reminders
from jobs.runner import Tick, run_due_jobs
from jobs.timing import NotifySettings

REGISTRATIONS = 200_000
ROUNDS = 20
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SETTINGS = NotifySettings()


async def seed_schedules(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Give every class five morning sessions and every unit a head."""
    async with sessionmaker() as session, session.begin():
        class_rows = (
            await session.execute(select(TrainingClass.id, TrainingClass.start_date))
        ).all()
        sessions = []
        for class_id, start in class_rows:
            for day in range(5):
                begins = dt.datetime.combine(
                    start + dt.timedelta(days=day), dt.time(7, 30), tzinfo=ZONE
                ).astimezone(dt.UTC)
                sessions.append(
                    {
                        "class_id": class_id,
                        "starts_at": begins,
                        "ends_at": begins + dt.timedelta(hours=4),
                        "topic": f"Buổi {day + 1}",
                    }
                )
        await session.execute(insert(ClassSession), sessions)
        heads = select(func.min(Person.id)).group_by(Person.unit_id).scalar_subquery()
        await session.execute(update(Person).where(Person.id.in_(heads)).values(is_unit_head=True))


async def reminder_moment(sessionmaker: async_sessionmaker[AsyncSession]) -> dt.datetime:
    """Return 08:00 seven days before the first class starting at least eight days on."""
    async with sessionmaker() as session:
        start = await session.scalar(
            select(func.min(TrainingClass.start_date)).where(
                TrainingClass.start_date >= TODAY + dt.timedelta(days=8)
            )
        )
    assert start is not None
    local = dt.datetime.combine(start - dt.timedelta(days=7), dt.time(8), tzinfo=ZONE)
    return local.astimezone(dt.UTC)


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession], now: dt.datetime
) -> tuple[float, int]:
    """Run the reminder sweep in one unit of work; return its seconds and what it queued."""
    started = time.perf_counter()
    async with sessionmaker() as session, session.begin():
        queued = await send_reminders(session, Tick(now, SETTINGS))
    return time.perf_counter() - started, queued


async def run_on(label: str, url: str) -> None:
    """Seed one database and print the jobs' timings on it."""
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        sessionmaker = create_sessionmaker(engine)
        seeded = time.perf_counter()
        await seed(sessionmaker, registrations=REGISTRATIONS)
        await seed_schedules(sessionmaker)
        print(f"{label}: seeded in {time.perf_counter() - seeded:.1f} s")
        moment = await reminder_moment(sessionmaker)
        # The moment before: the sweep is up to date.
        await sweep(sessionmaker, moment - dt.timedelta(minutes=1))
        seconds, queued = await sweep(sessionmaker, moment)
        print(
            f"{label}: reminder sweep when 7-day reminders fall due: "
            f"{seconds * 1000:7.1f} ms, {queued} reminders queued"
        )
        quiet = []
        for minute in range(1, ROUNDS + 1):
            seconds, queued = await sweep(sessionmaker, moment + dt.timedelta(minutes=minute))
            assert queued == 0
            quiet.append(seconds)
        quiet.sort()
        print(
            f"{label}: reminder sweep with nothing new due: median "
            f"{statistics.median(quiet) * 1000:6.1f} ms   p95 "
            f"{quiet[int(len(quiet) * 0.95) - 1] * 1000:6.1f} ms"
        )
        started = time.perf_counter()
        ran = await run_due_jobs(sessionmaker, JOBS, moment + dt.timedelta(hours=1), SETTINGS)
        print(
            f"{label}: every job at once ({len(ran)} jobs, first run): "
            f"{(time.perf_counter() - started) * 1000:7.1f} ms"
        )
        async with sessionmaker() as session:
            notices = await session.scalar(select(func.count()).select_from(OutboxMessage))
        print(f"{label}: outbox rows after the runs: {notices}")
    finally:
        await engine.dispose()


async def main() -> None:
    """Run the jobs benchmark on every configured database."""
    print(
        f"jobs benchmark: {PEOPLE:,} people, {CLASSES} classes over five years, "
        f"{REGISTRATIONS:,} registrations"
    )
    await on_each_database(run_on)


if __name__ == "__main__":
    asyncio.run(main())
