"""Run the real Telegram channel against the fake Bot API, in this test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
from collections.abc import AsyncIterator
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import (
    DatabaseSettings,
    NotificationSettings,
    Settings,
    TelegramSettings,
    WebSettings,
)
from bot.service import run_service
from db.models import InboundUpdate, InboxStatus
from tests.fake_bot_api import FakeBotApi

SECRET = "s3cret-Token_1"


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def in_days(days: int) -> dt.date:
    """Return a date `days` from today: the channel runs on the real clock."""
    return dt.date.today() + dt.timedelta(days=days)


def settings_for(api: FakeBotApi, database_url: str, **telegram: Any) -> Settings:
    """Return settings pointing the bot at the fake Bot API and the test database."""
    return Settings(
        database=DatabaseSettings(url=SecretStr(database_url)),
        # No quiet hours: the tests must pass at any hour of the night too.
        notifications=NotificationSettings(quiet_hours=""),
        telegram=TelegramSettings(
            token=SecretStr(api.token), base_url=api.base_url, poll_timeout=1, **telegram
        ),
        # The web admin on any free port: tests run side by side.
        web=WebSettings(listen_port=0),
    )


def webhook_settings(api: FakeBotApi, database_url: str) -> Settings:
    """Return settings for webhook mode on a free local port."""
    return settings_for(
        api,
        database_url,
        mode="webhook",
        url="https://bot.example.org/telegram",
        secret_token=SecretStr(SECRET),
        listen_port=free_port(),
    )


@contextlib.asynccontextmanager
async def fake_bot_api() -> AsyncIterator[FakeBotApi]:
    """Run the fake Bot API on a free port."""
    api = FakeBotApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


@contextlib.asynccontextmanager
async def running(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, api: FakeBotApi
) -> AsyncIterator[asyncio.Task[int]]:
    """Run the service until the block ends; it has started when the menu is published."""
    stopping = asyncio.Event()
    started = len(api.calls_of("setMyCommands"))
    before = {method: len(api.calls_of(method)) for method in ("deleteWebhook", "setWebhook")}
    task = asyncio.create_task(
        run_service(sessionmaker, settings, stopping=stopping, handle_signals=False)
    )
    try:
        await api.wait_for("setMyCommands", count=started + 2)
        ready = "deleteWebhook" if settings.telegram.mode == "polling" else "setWebhook"
        await api.wait_for(ready, count=before[ready] + 1)
        yield task
    finally:
        stopping.set()
        assert await asyncio.wait_for(task, timeout=10) == 0


async def inbox_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[InboundUpdate]:
    """Return every stored update, oldest first."""
    async with sessionmaker() as session:
        return list((await session.scalars(select(InboundUpdate).order_by(InboundUpdate.id))).all())


async def wait_status(
    sessionmaker: async_sessionmaker[AsyncSession],
    status: InboxStatus,
    count: int,
    within: float = 5.0,
) -> list[InboundUpdate]:
    """Wait until `count` stored updates have `status`; return them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        rows = [row for row in await inbox_rows(sessionmaker) if row.status == status]
        if len(rows) >= count:
            return rows
        if loop.time() > deadline:
            raise AssertionError(f"not {count} updates {status} within {within}s")
        await asyncio.sleep(0.02)
