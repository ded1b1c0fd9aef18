"""Faults around the channel: the database or the Bot API failing, a loop ending early."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.telegram import TelegramChannel
from bot.service import run_service
from db import inbox
from db.models import InboxStatus
from tests.fake_bot_api import FakeBotApi, text_update
from tests.telegram_support import fake_bot_api, inbox_rows, running, settings_for, wait_status


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def test_polling_goes_on_after_the_database_fails_to_store_a_batch(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_store = inbox.store
    failures = [OperationalError("INSERT", {}, ConnectionRefusedError("Phạm Thu Trang"))]

    async def flaky(*args: Any, **kwargs: Any) -> bool:
        if failures:
            raise failures.pop()
        return await real_store(*args, **kwargs)

    monkeypatch.setattr(inbox, "store", flaky)
    caplog.set_level(logging.INFO)
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(text_update(api.next_update_id(), "/help"))
        # The batch was not stored, so not acknowledged: it comes again and is answered.
        [sent] = await api.wait_for("sendMessage", timeout=10)
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)
        await api.inject(text_update(api.next_update_id(), "/help", user_id=222))
        await api.wait_for("sendMessage", count=2, timeout=5)
    assert "Tôi có thể giúp" in sent.params["text"]
    assert len(await inbox_rows(sessionmaker)) == 2
    assert "telegram polling failed (OperationalError); retrying" in caplog.text
    assert "Phạm Thu Trang" not in caplog.text


async def test_polling_starts_after_delete_webhook_failed(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    api.fail("deleteWebhook", 502, "Bad Gateway")
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(text_update(api.next_update_id(), "/help"))
        await api.wait_for("sendMessage", timeout=10)
    assert len(api.calls_of("deleteWebhook")) == 2


async def test_a_loop_that_ends_early_stops_the_service_cleanly_with_status_1(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(_self: TelegramChannel) -> None:
        await asyncio.sleep(0.5)
        raise RuntimeError("a bug")

    monkeypatch.setattr(TelegramChannel, "deliver_notices", broken)
    caplog.set_level(logging.INFO)
    stopping = asyncio.Event()
    status = await asyncio.wait_for(
        run_service(
            sessionmaker,
            settings_for(api, database_url),
            stopping=stopping,
            handle_signals=False,
        ),
        timeout=10,
    )
    assert status == 1
    assert "notice sender ended unexpectedly (RuntimeError)" in caplog.text
    assert "trainingbot stopped" in caplog.text
    assert not stopping.is_set()
