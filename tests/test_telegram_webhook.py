"""The Telegram channel in webhook mode: the secret is checked, updates stored, then acked."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from db.models import InboxStatus
from tests.fake_bot_api import FakeBotApi, text_update
from tests.telegram_support import (
    SECRET,
    fake_bot_api,
    inbox_rows,
    running,
    wait_status,
    webhook_settings,
)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def post(settings: Settings, body: Any, secret: str | None = SECRET) -> int:
    """POST `body` to the webhook as Telegram would; return the HTTP status."""
    telegram = settings.telegram
    url = f"http://127.0.0.1:{telegram.listen_port}{telegram.path}"
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    data = body if isinstance(body, bytes) else None
    async with (
        aiohttp.ClientSession() as client,
        client.post(url, json=None if data else body, data=data, headers=headers) as response,
    ):
        return response.status


async def test_webhook_is_registered_with_its_secret(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    settings = webhook_settings(api, database_url)
    async with running(sessionmaker, settings, api):
        port = settings.telegram.listen_port
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            assert (response.status, await response.text()) == (200, "ok")
    [registered] = api.calls_of("setWebhook")
    assert registered.params["url"] == "https://bot.example.org/telegram"
    assert registered.params["secret_token"] == SECRET
    assert registered.params["allowed_updates"] == ["message", "callback_query", "my_chat_member"]
    assert api.calls_of("getUpdates") == []


@pytest.mark.parametrize("secret", [None, "wrong", SECRET + "x", ""])
async def test_a_post_without_the_right_secret_is_refused_and_not_stored(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    secret: str | None,
) -> None:
    settings = webhook_settings(api, database_url)
    async with running(sessionmaker, settings, api):
        status = await post(settings, text_update(1, "/help"), secret=secret)
    assert status == 401
    assert await inbox_rows(sessionmaker) == []
    assert api.calls_of("sendMessage") == []


async def test_a_post_with_the_secret_is_stored_and_answered_once(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    settings = webhook_settings(api, database_url)
    update = text_update(1, "/help")
    async with running(sessionmaker, settings, api):
        assert await post(settings, update) == 200
        [sent] = await api.wait_for("sendMessage")
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)
        assert await post(settings, update) == 200
        assert await post(settings, text_update(2, "/help")) == 200
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 2)
    assert "Tôi có thể giúp" in sent.params["text"]
    assert len(api.calls_of("sendMessage")) == 2
    assert len(await inbox_rows(sessionmaker)) == 2


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"no_update_id": 1}', b"\xff"])
async def test_a_malformed_body_is_refused(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    body: bytes,
) -> None:
    settings = webhook_settings(api, database_url)
    async with running(sessionmaker, settings, api):
        assert await post(settings, body) == 400
    assert await inbox_rows(sessionmaker) == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"update_id": true}',
        b'{"update_id": false, "message": {}}',
        b'{"update_id": 7, "message": "Ph\\u1ea1m Thu Trang"}',
        b'{"update_id": 8, "message": {}}',
        b'{"update_id": 9, "callback_query": [1]}',
    ],
)
async def test_a_body_that_is_not_an_update_is_refused_without_a_traceback(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    body: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = webhook_settings(api, database_url)
    async with running(sessionmaker, settings, api):
        assert await post(settings, body) == 400
        # The webhook still works.
        assert await post(settings, text_update(1, "/help")) == 200
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)
    assert [row.update_key for row in await inbox_rows(sessionmaker)] == ["1"]
    assert "Traceback" not in caplog.text
    assert all(record.exc_info is None for record in caplog.records)
    assert "Phạm" not in caplog.text
