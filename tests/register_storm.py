"""Press Register for many people at once: `python -m tests.register_storm URL CLASS_ID IDS…`.

Run by tests/test_seat_concurrency.py, once in-process and as two processes at a time, to
show that seats hold when 200 people register for 30 seats at the same instant.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import registrations as regs
from db.models import Person
from db.session import create_engine, create_sessionmaker
from tests.factories import TODAY


async def register_one(
    sessionmaker: async_sessionmaker[AsyncSession], person_id: int, class_id: int
) -> str:
    """Register one person in their own unit of work; return the outcome's name."""
    async with sessionmaker() as session, session.begin():
        person = await session.get(Person, person_id)
        assert person is not None
        result = await regs.register(session, person, class_id, today=TODAY)
    if isinstance(result, regs.Registered):
        return result.registration.status.value
    return "refused" if result is not None else "gone"


async def storm(
    sessionmaker: async_sessionmaker[AsyncSession], class_id: int, person_ids: Sequence[int]
) -> list[str]:
    """Register everyone at once; return each outcome."""
    return list(
        await asyncio.gather(*(register_one(sessionmaker, pid, class_id) for pid in person_ids))
    )


async def _main(url: str, class_id: int, person_ids: list[int]) -> None:
    engine = create_engine(url)
    try:
        outcomes = await storm(create_sessionmaker(engine), class_id, person_ids)
    finally:
        await engine.dispose()
    print(" ".join(outcomes))


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2]), [int(a) for a in sys.argv[3:]]))
