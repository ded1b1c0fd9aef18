"""The Telegram channel in polling mode: the real PTB Application against a fake Bot API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import InboxStatus
from tests.fake_bot_api import FakeBotApi, text_update
from tests.telegram_support import fake_bot_api, inbox_rows, running, settings_for, wait_status


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def test_start_is_answered_in_vietnamese(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(text_update(api.next_update_id(), "/start"))
        [sent] = await api.wait_for("sendMessage")
    assert sent.params["chat_id"] == 111
    assert "Kính chào đồng chí!" in sent.params["text"]
    assert sent.params["reply_markup"]["inline_keyboard"]
    [row] = await inbox_rows(sessionmaker)
    assert row.status == InboxStatus.ANSWERED
    assert api.calls_of("deleteWebhook")
