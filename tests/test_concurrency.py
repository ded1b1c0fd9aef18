"""Units of work are transactions from their first statement, on SQLite as on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db import migrate
from db.models import Unit, UnitKind
from db.session import create_engine


async def _raw_connection(session: AsyncSession) -> Any:
    """Return the driver's own connection under the session (aiosqlite's or asyncpg's)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def test_sqlite_pragmas_still_apply(engine: AsyncEngine) -> None:
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as connection:
        foreign_keys = await connection.scalar(text("PRAGMA foreign_keys"))
        journal_mode = await connection.scalar(text("PRAGMA journal_mode"))
        busy_timeout = await connection.scalar(text("PRAGMA busy_timeout"))
    assert (foreign_keys, journal_mode, busy_timeout) == (1, "wal", 30000)


async def test_a_read_opens_the_transaction(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.scalar(select(func.count()).select_from(Unit))
        if engine.dialect.name == "sqlite":
            # The driver alone would still be in autocommit here: no BEGIN before a read.
            assert (await _raw_connection(session)).in_transaction


async def test_sqlite_check_then_insert_runs_one_unit_of_work_at_a_time(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    """Two units of work that each add a unit only to an empty roster: one adds it.

    Without BEGIN IMMEDIATE both reads ran before either insert and both added one.
    (PostgreSQL's READ COMMITTED makes no such promise; its code locks rows instead.)
    """
    if engine.dialect.name != "sqlite":
        return

    async def add_if_empty(code: str) -> bool:
        async with sessionmaker() as session, session.begin():
            count = await session.scalar(select(func.count()).select_from(Unit))
            await asyncio.sleep(0.05)  # let the other unit of work run its check now
            if count:
                return False
            session.add(Unit(code=code, name=code, kind=UnitKind.OTHER))
            return True

    assert sorted(await asyncio.gather(add_if_empty("A"), add_if_empty("B"))) == [False, True]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Unit)) == 1


async def test_a_sqlite_unit_of_work_waits_for_the_one_holding_the_lock(tmp_path: Path) -> None:
    """Its first statement waits (busy timeout) until the other commits, then goes on."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'wait.db'}")
    try:
        await migrate.upgrade(engine)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        order: list[str] = []

        async def slow() -> None:
            async with sessions() as session, session.begin():
                session.add(Unit(code="A", name="A", kind=UnitKind.OTHER))
                await session.flush()
                order.append("slow wrote")
                await asyncio.sleep(0.2)
                order.append("slow done")

        async def quick() -> None:
            await asyncio.sleep(0.05)
            async with sessions() as session, session.begin():
                await session.scalar(select(func.count()).select_from(Unit))
                order.append("quick read")
                session.add(Unit(code="B", name="B", kind=UnitKind.OTHER))

        start = dt.datetime.now(dt.UTC)
        await asyncio.gather(slow(), quick())
        assert order == ["slow wrote", "slow done", "quick read"]
        assert dt.datetime.now(dt.UTC) - start < dt.timedelta(seconds=5)
    finally:
        await engine.dispose()
