"""Notices through Telegram, and `trainingbot run` as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.telegram import now_utc
from db.models import ChannelAccount, Conversation, OutboxMessage, OutboxStatus
from db.repos import Repos
from handlers.notices import notify
from handlers.types import Msg, Reply
from tests.factories import add_person, add_unit
from tests.fake_bot_api import FakeBotApi, text_update
from tests.telegram_support import fake_bot_api, running, settings_for

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def queue_notice(
    sessionmaker: async_sessionmaker[AsyncSession], *, linked: bool, language: str | None = None
) -> None:
    """Add a person (linked on Telegram as 111 or not) and queue a notice for them."""
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        person = await add_person(session, "0912000178", "Phạm Thu Trang", unit)
        if linked:
            session.add(ChannelAccount(person_id=person.id, channel="telegram", external_id="111"))
        if language:
            session.add(Conversation(channel="telegram", chat_id="111", language=language))
        reply = Reply(lines=(Msg("start.intro"),))
        await notify(Repos(session), person.id, "test", "k1", reply, due_at=now_utc())


async def outbox_row(sessionmaker: async_sessionmaker[AsyncSession]) -> OutboxMessage:
    async with sessionmaker() as session:
        return (await session.scalars(select(OutboxMessage))).one()


async def wait_outbox(
    sessionmaker: async_sessionmaker[AsyncSession], status: OutboxStatus
) -> OutboxMessage:
    for _ in range(250):
        row = await outbox_row(sessionmaker)
        if row.status == status:
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"outbox row not {status}")


async def test_a_notice_is_sent_in_the_persons_language_and_marked_sent(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await queue_notice(sessionmaker, linked=True, language="en")
    async with running(sessionmaker, settings_for(api, database_url), api):
        [sent] = await api.wait_for("sendMessage")
        row = await wait_outbox(sessionmaker, OutboxStatus.SENT)
    assert sent.params["chat_id"] == 111
    assert sent.params["text"].startswith("I am the")
    assert (row.channel, row.sent_at is not None) == ("telegram", True)


async def test_a_notice_to_someone_who_blocked_the_bot_fails_and_marks_them(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await queue_notice(sessionmaker, linked=True)
    api.fail_blocked()
    async with running(sessionmaker, settings_for(api, database_url), api):
        row = await wait_outbox(sessionmaker, OutboxStatus.FAILED)
    assert row.last_error is not None
    assert "blocked" in row.last_error
    async with sessionmaker() as session:
        assert await session.scalar(select(ChannelAccount.reachable)) is False


async def test_a_notice_for_someone_not_linked_anywhere_ends_unreachable(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await queue_notice(sessionmaker, linked=False)
    async with running(sessionmaker, settings_for(api, database_url), api):
        row = await wait_outbox(sessionmaker, OutboxStatus.FAILED)
    assert (row.status, row.last_error) == (
        OutboxStatus.FAILED,
        "unreachable: no reachable account",
    )
    assert api.calls_of("sendMessage") == []


async def test_trainingbot_run_answers_and_stops_on_sigterm(
    api: FakeBotApi, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    database = tmp_path / "bot.db"
    config.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{database}"\n'
        f'[telegram]\nbase_url = "{api.base_url}"\npoll_timeout = 1\n',
        encoding="utf-8",
    )
    env = {**os.environ, "TRAININGBOT_TELEGRAM_TOKEN": api.token}
    command = [sys.executable, "-m", "bot.cli", "--config", str(config)]
    upgrade = await asyncio.create_subprocess_exec(*command, "db", "upgrade", cwd=REPO, env=env)
    assert await upgrade.wait() == 0
    process = await asyncio.create_subprocess_exec(
        *command, "run", cwd=REPO, env=env, stderr=subprocess.PIPE
    )
    try:
        await api.wait_for("deleteWebhook", timeout=15)
        await api.inject(text_update(api.next_update_id(), "/help"))
        [sent] = await api.wait_for("sendMessage", timeout=10)
        assert "Tôi có thể giúp" in sent.params["text"]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=5) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    log = (await process.stderr.read()).decode()
    assert "trainingbot started (telegram, polling mode)" in log
    assert "trainingbot stopped" in log
    assert api.token not in log
