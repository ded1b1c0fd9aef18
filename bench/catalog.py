"""Benchmark: how fast the chat answers catalog questions in a province-sized database.

Seeds 30,000 people in 60 units, 400 classes over five years (about 80 a year, as one
province trains) with unit quotas, and 100,000 registrations, then times one message
through the real dispatch (state read and written, one transaction each) for the
commonest questions. Prints the median and 95th percentile per question on SQLite and,
when TRAININGBOT_BENCH_POSTGRES_URL (or TRAININGBOT_TEST_POSTGRES_URL) is set, on
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import statistics
import time
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.roster import on_each_database
from db import migrate
from db.models import (
    ChannelAccount,
    ClassQuota,
    Form,
    Person,
    Program,
    Registration,
    RegistrationStatus,
    TrainingClass,
    Unit,
    UnitKind,
)
from db.repos import Repos
from db.session import create_engine, create_sessionmaker
from db.text import fold
from handlers.dispatch import dispatch
from handlers.types import ChatSettings, Incoming

PEOPLE = 30_000
UNITS = 60
CLASSES = 400
REGISTRATIONS = 100_000
ROUNDS = 40
TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC)
TITLES = [
    "Trung cấp lý luận chính trị - hành chính",
    "Bồi dưỡng cập nhật kiến thức",
    "Bồi dưỡng kỹ năng lãnh đạo, quản lý cấp phòng",
    "Bồi dưỡng nghiệp vụ công tác tuyên giáo",
    "Bồi dưỡng lý luận chính trị cho đảng viên mới",
    "Chuyên đề chuyển đổi số",
]
QUESTIONS = {
    "/classes (first page)": "/classes",
    "next page (typed 6)": "6",
    "/eligible (rules per class)": "/eligible",
    "/class CODE (detail)": "/class C0330",
    "search 'trung cap ly luan'": "trung cap ly luan",
    "question 'lớp nào sắp mở?'": "lớp nào sắp mở?",
}


async def seed(
    sessionmaker: async_sessionmaker[AsyncSession], *, registrations: int = REGISTRATIONS
) -> None:
    """Fill the database with a synthetic province with this many registrations."""
    rng = random.Random(11)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            insert(Unit),
            [
                {"code": f"U{n:03d}", "name": f"Đơn vị {n}", "kind": UnitKind.DEPARTMENT}
                for n in range(UNITS)
            ],
        )
        unit_ids = list((await session.scalars(select(Unit.id))).all())
        people: list[dict[str, Any]] = [
            {
                "phone": f"09{n:08d}",
                "full_name": f"Cán bộ {n}",
                "unit_id": rng.choice(unit_ids),
                "position": "Chuyên viên",
                "birth_year": rng.randint(1966, 2002),
                "theory_level": rng.choice([None, "so_cap", "trung_cap", "cao_cap"]),
            }
            for n in range(PEOPLE)
        ]
        await session.execute(insert(Person), people)
        classes = []
        for n in range(CLASSES):
            start = TODAY + dt.timedelta(days=(n - 320) * 365 // 80)
            title = f"{TITLES[n % len(TITLES)]} K{n}"
            classes.append(
                {
                    "code": f"C{n:04d}",
                    "title": title,
                    "search_text": fold(f"C{n:04d} {title}"),
                    "program": list(Program)[n % len(Program)],
                    "form": list(Form)[n % len(Form)],
                    "location": "Trường Chính trị tỉnh",
                    "start_date": start,
                    "end_date": start + dt.timedelta(days=4),
                    "registration_deadline": start - dt.timedelta(days=7),
                    "capacity": 300,
                    "max_age": rng.choice([None, 45, 50]),
                }
            )
        await session.execute(insert(TrainingClass), classes)
        class_ids = list((await session.scalars(select(TrainingClass.id))).all())
        await session.execute(
            insert(ClassQuota),
            [
                {"class_id": c, "unit_id": u, "seats": 5}
                for c in class_ids
                for u in rng.sample(unit_ids, 10)
            ],
        )
        person_ids = list((await session.scalars(select(Person.id))).all())
        pairs: set[tuple[int, int]] = set()
        while len(pairs) < registrations:
            pairs.add((rng.choice(person_ids), rng.choice(class_ids)))
        statuses = [RegistrationStatus.CONFIRMED] * 6 + [
            RegistrationStatus.WAITLISTED,
            RegistrationStatus.CANCELLED,
            RegistrationStatus.PENDING_APPROVAL,
            RegistrationStatus.ATTENDED,
        ]
        rows = [{"person_id": p, "class_id": c, "status": rng.choice(statuses)} for p, c in pairs]
        for first in range(0, len(rows), 50_000):
            await session.execute(insert(Registration), rows[first : first + 50_000])
        session.add(ChannelAccount(person_id=person_ids[0], channel="bench", external_id="u1"))


async def ask(
    sessionmaker: async_sessionmaker[AsyncSession], text: str, settings: ChatSettings
) -> float:
    """Send one message through dispatch; return the seconds it took."""
    incoming = Incoming(channel="bench", chat_id="u1", user_id="u1", text=text)
    started = time.perf_counter()
    async with sessionmaker() as session, session.begin():
        await dispatch(incoming, Repos(session), now=NOW, settings=settings)
    return time.perf_counter() - started


async def run_on(label: str, url: str) -> None:
    """Seed one database and time every question."""
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        sessionmaker = create_sessionmaker(engine)
        await seed(sessionmaker)
        settings = ChatSettings()
        for name, text in QUESTIONS.items():
            await ask(sessionmaker, "/classes", settings)  # the page "6" turns
            timings = sorted([await ask(sessionmaker, text, settings) for _ in range(ROUNDS)])
            median = statistics.median(timings) * 1000
            p95 = timings[int(len(timings) * 0.95) - 1] * 1000
            print(f"{label:<10} {name:<30} median {median:6.1f} ms   p95 {p95:6.1f} ms")
    finally:
        await engine.dispose()


async def main() -> None:
    """Run the catalog benchmark on every configured database."""
    print(
        f"catalog benchmark: {PEOPLE:,} people, {CLASSES} classes, {REGISTRATIONS:,} "
        f"registrations; one message through dispatch, {ROUNDS} rounds each"
    )
    await on_each_database(run_on)


if __name__ == "__main__":
    asyncio.run(main())
