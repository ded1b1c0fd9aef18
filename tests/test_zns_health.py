"""/healthz with ZNS on: its tokens and today's quota, read from the database (Zalo is never
asked by a probe); tokens Zalo refused, or none at all, fail the check until an admin gives a
new authorization; a used-up quota is reported, not failing."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.zns import ZnsChannel, api_of
from bot.channels.zns_tokens import TokenUnavailable
from bot.config import Settings
from bot.web_probes import configured_probes
from bot.zns_cli import set_token
from bot.zns_status import ZnsProbe
from db.models import ZnsToken
from tests.fake_bot_api import FakeBotApi
from tests.fake_zns_api import APP_ID, FakeZnsApi, fake_zns_api
from tests.telegram_support import fake_bot_api
from tests.test_zns_delivery import drain, queue, school
from tests.web_support import Site, admin_site
from tests.zns_support import zns_settings


@pytest.fixture
async def fake() -> AsyncIterator[FakeZnsApi]:
    async with fake_zns_api() as api:
        yield api


@pytest.fixture
async def telegram() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def health(site: Site) -> tuple[int, dict[str, Any]]:
    response = await site.client.get("/healthz")
    return response.status, json.loads(await response.text())


async def test_healthz_shows_the_tokens_and_quota_from_the_database_without_asking_zalo(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    settings = zns_settings(fake, telegram, database_url, daily_limit=300)
    async with admin_site(sessionmaker, probes=[ZnsProbe(sessionmaker, settings)]) as site:
        status, body = await health(site)
        assert (status, body["status"], body["zns"]) == (200, "ok", "ok")
        # The configured refresh token seeds the tokens at the first send.
        assert body["details"]["zns"] == {
            "token": "not_used_yet",
            "quota_left_today": None,
            "daily_quota": None,
            "daily_limit": 300,
            "taken_today": 0,
        }
        await queue(sessionmaker, people["lan"], "reminder:lan")
        await drain(sessionmaker, settings)
        calls = (len(fake.refresh_calls), len(fake.template_calls))
        status, body = await health(site)
        await health(site)
        zns = body["details"]["zns"]
        assert (status, zns["token"]) == (200, "valid")
        assert zns["access_token_valid_until"].endswith("+00:00")
        assert (zns["quota_left_today"], zns["daily_quota"], zns["taken_today"]) == (499, 500, 1)
        # Probing asked Zalo nothing.
        assert (len(fake.refresh_calls), len(fake.template_calls)) == calls
        # Zalo's quota used up: ZNS waits for tomorrow; the service is healthy.
        fake.remaining = 0
        await queue(sessionmaker, people["lan"], "reminder:lan:2")
        await drain(sessionmaker, settings)
        status, body = await health(site)
        zns = body["details"]["zns"]
        assert (status, body["zns"], zns["quota_left_today"]) == (200, "ok", 0)
        assert zns["held_reason"].startswith("zns quota")
        assert zns["held_until"].endswith("+00:00")


async def test_healthz_fails_while_zalo_refuses_the_tokens_until_a_new_authorization(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    settings = zns_settings(fake, telegram, database_url)
    channel = ZnsChannel(api_of(settings.zns), sessionmaker, settings)
    await channel.initialize()
    try:
        await channel.tokens.access_token()
        # The authorization is lost (refresh token dead) and the access token expires.
        fake.authorize()
        async with sessionmaker() as s, s.begin():
            await s.execute(update(ZnsToken).values(access_expires_at=None))
        channel.tokens._cached = None
        with pytest.raises(TokenUnavailable):
            await channel.tokens.access_token()
    finally:
        await channel.shutdown()
    async with admin_site(sessionmaker, probes=[ZnsProbe(sessionmaker, settings)]) as site:
        status, body = await health(site)
        assert (status, body["status"], body["zns"]) == (503, "failing", "authorization_needed")
        assert body["details"]["zns"]["token"] == "refused"
        assert await set_token(sessionmaker, settings, fake.authorize(), io.StringIO()) == 0
        status, body = await health(site)
        assert (status, body["zns"], body["details"]["zns"]["token"]) == (200, "ok", "valid")


async def test_healthz_fails_when_zns_has_no_refresh_token_at_all(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    settings = zns_settings(fake, telegram, database_url, refresh_token=None)
    async with admin_site(sessionmaker, probes=[ZnsProbe(sessionmaker, settings)]) as site:
        status, body = await health(site)
    assert (status, body["zns"], body["details"]["zns"]["token"]) == (
        503,
        "authorization_needed",
        "missing",
    )
    async with sessionmaker() as session:
        assert await session.get(ZnsToken, APP_ID) is None


async def test_trainingbot_web_probes_zns_when_it_is_on(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    settings = zns_settings(fake, telegram, database_url)
    async with configured_probes(settings, sessionmaker) as probes:
        assert [probe.channel for probe in probes] == ["telegram", "zns"]
    off = settings.model_copy(update={"zns": settings.zns.model_copy(update={"enabled": False})})
    assert isinstance(off, Settings)
    async with configured_probes(off, sessionmaker) as probes:
        assert [probe.channel for probe in probes] == ["telegram"]
