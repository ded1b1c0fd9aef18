"""Units of work are transactions from their first statement, on SQLite as on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db import migrate
from db.models import Conversation, Unit, UnitKind
from db.repos import Repos
from db.session import create_engine
from tests.factories import TODAY, Chat, add_class


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


# ------------------------------------------------------------- one chat, many messages


async def test_first_messages_of_a_new_chat_at_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Messages racing to create a chat's conversation row all get answered; one row."""
    chat = Chat(sessionmaker, user_id="same")
    texts = await asyncio.gather(*(chat.say("/help") for _ in range(10)))
    assert len(set(texts)) == 1
    async with sessionmaker() as session:
        rows = (await session.scalars(select(Conversation))).all()
    assert [(row.channel, row.chat_id) for row in rows] == [(chat.channel, "same")]


async def test_messages_of_one_chat_run_one_after_another(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """`/lang en` among many `/classes` of the same chat is never undone by one of them.

    A `/classes` that read the chat's state before `/lang en` saved it, and saved its own
    afterwards, would put the old language back.
    """
    async with sessionmaker() as session, session.begin():
        await add_class(session, "K1", "Kỹ năng lãnh đạo", start=TODAY + dt.timedelta(days=20))
    # The replies each message gives and the buttons it leaves pressable, from a chat that
    # sends them one at a time.
    alone = Chat(sessionmaker, user_id="alone")
    classes_replies = await alone.send("/classes")
    lang_replies = await alone.send("/lang en")
    after_lang = await _buttons(sessionmaker, alone)
    assert await alone.send("/classes") == classes_replies
    after_classes = await _buttons(sessionmaker, alone)

    for round_ in range(3):
        chat = Chat(sessionmaker, user_id=f"chat{round_}")
        await chat.send("/classes")  # the chat exists, in Vietnamese
        sends = [chat.send("/classes") for _ in range(8)]
        sends.insert(round_ * 4, chat.send("/lang en"))
        answers = await asyncio.gather(*sends)
        assert answers.count(lang_replies) == 1
        assert answers.count(classes_replies) == 8
        async with sessionmaker() as session:
            row = await session.get(Conversation, (chat.channel, chat.user_id))
        assert row is not None
        assert (row.language, row.step) == ("en", None)
        # The buttons last shown, and their words in the chat's language.
        assert (row.choices, row.data) in (after_lang, after_classes)


async def _buttons(
    sessionmaker: async_sessionmaker[AsyncSession], chat: Chat
) -> tuple[list[str], dict[str, Any]]:
    async with sessionmaker() as session:
        row = await session.get(Conversation, (chat.channel, chat.user_id))
    assert row is not None
    return row.choices, row.data


async def test_a_chats_row_is_locked_until_its_unit_of_work_ends(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A second message of a chat reads its state only once the first one has saved it."""
    async with sessionmaker() as session, session.begin():
        await Repos(session).conversations.get_or_create("test", "c1")

    async def first() -> None:
        async with sessionmaker() as session, session.begin():
            conversation = await Repos(session).conversations.get_or_create("test", "c1")
            await asyncio.sleep(0.2)  # a slow answer
            conversation.language = "en"

    async def second() -> str | None:
        await asyncio.sleep(0.05)
        async with sessionmaker() as session, session.begin():
            conversation = await Repos(session).conversations.get_or_create("test", "c1")
            return conversation.language

    _none, seen = await asyncio.gather(first(), second())
    assert seen == "en"
