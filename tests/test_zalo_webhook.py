"""Zalo in webhook mode: the secret is checked in constant time, updates stored, then acked.

Zalo's webhook and Telegram's share one aiohttp server when they listen on one address.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings, TelegramSettings
from db.models import InboxStatus
from tests.factories import add_person, add_unit, link
from tests.fake_bot_api import text_update as telegram_text
from tests.fake_zalo_api import FakeZaloApi, fake_zalo_api, post_webhook, text_update
from tests.telegram_support import SECRET, fake_bot_api, free_port, inbox_rows, wait_status
from tests.zalo_support import (
    ZALO_SECRET,
    ZALO_URL,
    running_zalo,
    wait_answered,
    zalo_webhook_settings,
)

USER = "zalo-user-7"


@pytest.fixture
async def api() -> AsyncIterator[FakeZaloApi]:
    async with fake_zalo_api() as api:
        yield api


def webhook_url(settings: Settings) -> str:
    """Return the local address Zalo's posts reach (the reverse proxy forwards them)."""
    host, port = settings.zalo_listen
    return f"http://{host}:{port}{settings.zalo.path}"


async def test_the_webhook_is_registered_with_its_secret_and_polling_is_off(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    settings = zalo_webhook_settings(api, database_url)
    async with running_zalo(sessionmaker, settings, api):
        host, port = settings.zalo_listen
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://{host}:{port}/healthz") as response,
        ):
            assert (response.status, await response.text()) == (200, "ok")
    [registered] = api.calls_of("setWebhook")
    assert registered.params == {"url": ZALO_URL, "secret_token": ZALO_SECRET}
    assert api.calls_of("getUpdates") == []
    assert api.calls_of("deleteWebhook") == []


@pytest.mark.parametrize("envelope", [False, True])
async def test_a_post_with_the_secret_is_stored_answered_and_a_repeat_answered_once(
    api: FakeZaloApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    envelope: bool,
) -> None:
    settings = zalo_webhook_settings(api, database_url)
    update = text_update("/help", user_id=USER, message_id="w1")
    async with running_zalo(sessionmaker, settings, api):
        assert await post_webhook(
            webhook_url(settings), update, ZALO_SECRET, envelope=envelope
        ) == (
            200,
            "ok",
        )
        await wait_answered(sessionmaker, "w1")
        # Zalo posting the same event again: acknowledged, not answered twice.
        assert (await post_webhook(webhook_url(settings), update, ZALO_SECRET))[0] == 200
        second = text_update("/help", user_id=USER, message_id="w2")
        assert (await post_webhook(webhook_url(settings), second, ZALO_SECRET))[0] == 200
        await wait_answered(sessionmaker, "w2")
    assert len(api.texts_to(USER)) == 2
    assert [row.update_key for row in await inbox_rows(sessionmaker)] == ["w1", "w2"]


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", ZALO_SECRET + "x", ZALO_SECRET[:-1]])
async def test_a_post_without_the_right_secret_gets_401_and_nothing_is_stored(
    api: FakeZaloApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    secret: str | None,
) -> None:
    settings = zalo_webhook_settings(api, database_url)
    async with running_zalo(sessionmaker, settings, api):
        status, _text = await post_webhook(
            webhook_url(settings), text_update("/help", user_id=USER), secret
        )
    assert status == 401
    assert await inbox_rows(sessionmaker) == []
    assert api.calls_of("sendMessage") == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"event_name": "message.text.received", "message": {"text": "Ph\\u1ea1m"}}',
    ],
)
async def test_a_body_that_is_not_a_message_update_is_refused_and_the_webhook_goes_on(
    api: FakeZaloApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    body: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = zalo_webhook_settings(api, database_url)
    async with running_zalo(sessionmaker, settings, api):
        assert (await post_webhook(webhook_url(settings), body, ZALO_SECRET))[0] == 400
        update = text_update("/help", user_id=USER, message_id="ok-1")
        assert (await post_webhook(webhook_url(settings), update, ZALO_SECRET))[0] == 200
        await wait_answered(sessionmaker, "ok-1")
    assert [row.update_key for row in await inbox_rows(sessionmaker)] == ["ok-1"]
    assert "Phạm" not in caplog.text


async def test_an_event_without_a_message_is_acknowledged_and_nothing_stored(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    settings = zalo_webhook_settings(api, database_url)
    event = {"event_name": "user.follow", "follower": {"id": USER}}
    async with running_zalo(sessionmaker, settings, api):
        assert await post_webhook(webhook_url(settings), event, ZALO_SECRET) == (200, "ok")
    assert await inbox_rows(sessionmaker) == []
    assert api.calls_of("sendMessage") == []


async def test_telegram_and_zalo_webhooks_share_one_server(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        person = await add_person(session, "0912000178", "Phạm Thu Trang", unit)
        await link(session, person, "telegram", "111")
        await link(session, person, "zalo", USER)
    async with fake_bot_api() as telegram_api:
        zalo_only = zalo_webhook_settings(api, database_url, listen_port=None)
        telegram = TelegramSettings(
            token=SecretStr(telegram_api.token),
            base_url=telegram_api.base_url,
            mode="webhook",
            url="https://bot.example.org/telegram",
            secret_token=SecretStr(SECRET),
            listen_port=free_port(),
        )
        settings = zalo_only.model_copy(update={"telegram": telegram})
        # Unset, Zalo's listening address is Telegram's: one server, two paths.
        assert settings.zalo_listen == (telegram.listen_host, telegram.listen_port)
        async with running_zalo(sessionmaker, settings, api):
            await telegram_api.wait_for("setWebhook")
            base = f"http://127.0.0.1:{telegram.listen_port}"
            update = text_update("/help", user_id=USER, message_id="z1")
            assert (await post_webhook(f"{base}/zalo", update, ZALO_SECRET))[0] == 200
            # The Zalo secret does not open Telegram's path, nor Telegram's Zalo's.
            tg_update = telegram_text(1, "/help", user_id=111)
            assert (await _post_telegram(f"{base}/telegram", tg_update, ZALO_SECRET)) == 401
            assert (await post_webhook(f"{base}/zalo", update, SECRET))[0] == 401
            assert (await _post_telegram(f"{base}/telegram", tg_update, SECRET)) == 200
            await wait_status(sessionmaker, InboxStatus.ANSWERED, 2)
        await telegram_api.wait_for("sendMessage")
    assert len(api.texts_to(USER)) == 1


async def _post_telegram(url: str, body: object, secret: str) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
    async with (
        aiohttp.ClientSession() as client,
        client.post(url, json=body, headers=headers) as response,
    ):
        return response.status
