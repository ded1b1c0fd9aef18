"""200 people press Confirm in their chats for 30 seats at once: never more than 30 seats held."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import sys
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.models import Registration, RegistrationStatus
from tests.factories import TODAY, add_class, add_person, add_unit, link
from tests.register_storm import CHANNEL, chat_of, storm

PEOPLE = 200
SEATS = 30
REPO = Path(__file__).resolve().parents[1]


async def _setup(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, list[int]]:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        klass = await add_class(
            session, "K", "Lớp", start=TODAY + dt.timedelta(days=20), capacity=SEATS
        )
        people = [
            await add_person(session, f"0912{n:06d}", f"Người {n}", unit) for n in range(PEOPLE)
        ]
        for person in people:
            await link(session, person, CHANNEL, chat_of(person.id))
    return klass.id, [p.id for p in people]


async def _check(sessionmaker: async_sessionmaker[AsyncSession], outcomes: list[str]) -> None:
    kinds = collections.Counter(outcome.split(":")[0] for outcome in outcomes)
    assert kinds == {"confirmed": SEATS, "waitlisted": PEOPLE - SEATS}
    # Each person waitlisted was told a different place, and the places leave no gap.
    positions = sorted(int(o.split(":")[1]) for o in outcomes if o.startswith("waitlisted:"))
    assert positions == list(range(1, PEOPLE - SEATS + 1))
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(Registration.status, func.count()).group_by(Registration.status)
            )
        ).all()
        waitlist = list(
            await session.scalars(
                select(Registration.id)
                .where(Registration.status == RegistrationStatus.WAITLISTED)
                .order_by(Registration.id)
            )
        )
    assert dict(rows) == {
        RegistrationStatus.CONFIRMED: SEATS,
        RegistrationStatus.WAITLISTED: PEOPLE - SEATS,
    }
    assert len(set(waitlist)) == PEOPLE - SEATS


async def test_in_one_process(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    class_id, person_ids = await _setup(sessionmaker)
    await _check(sessionmaker, await storm(sessionmaker, class_id, person_ids))


async def test_in_two_processes(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine, database_url: str
) -> None:
    class_id, person_ids = await _setup(sessionmaker)
    halves = [person_ids[0::2], person_ids[1::2]]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.register_storm",
            database_url,
            str(class_id),
            *map(str, half),
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
            env=env,
        )
        for half in halves
    ]
    outputs = [await p.communicate() for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    outcomes = [word for stdout, _ in outputs for word in stdout.decode().split()]
    await _check(sessionmaker, outcomes)
