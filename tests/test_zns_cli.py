"""`trainingbot zns status` and `set-token` (the real-process recovery is in
tests/test_zns_processes.py)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.zns_cli import ZnsCommandError, set_token, show
from db.models import ZnsToken
from tests.fake_bot_api import FakeBotApi
from tests.fake_zns_api import APP_ID, FakeZnsApi, fake_zns_api
from tests.telegram_support import fake_bot_api
from tests.zns_support import zns_settings


@pytest.fixture
async def fake() -> AsyncIterator[FakeZnsApi]:
    async with fake_zns_api() as api:
        yield api


@pytest.fixture
async def telegram() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def test_status_live_asks_zalo_for_the_quota_and_keeps_it(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    settings = zns_settings(fake, telegram, database_url, daily_limit=300)
    fake.remaining = 420
    out = io.StringIO()
    assert await show(sessionmaker, settings, out) == 0
    assert "Zalo's quota today: not known yet" in out.getvalue()
    assert "zns: no tokens yet" in out.getvalue()
    out = io.StringIO()
    assert await show(sessionmaker, settings, out, live=True) == 0
    text = out.getvalue()
    assert "zns: on; templates: reminder 251234" in text
    assert "zns: today 0 sent (0 delivered), this month 0 sent (0 delivered)" in text
    assert "Zalo's quota today: 420 of 500 left" in text
    assert "guard: daily limit 300, 0 kept for urgent notices" in text
    assert "zns: tokens refreshed" in text


async def test_set_token_checks_the_token_with_zalo(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    settings = zns_settings(fake, telegram, database_url)
    with pytest.raises(ZnsCommandError, match="Zalo did not accept it"):
        await set_token(sessionmaker, settings, "R-not-issued", io.StringIO())
    with pytest.raises(ZnsCommandError, match="one word"):
        await set_token(sessionmaker, settings, "  ", io.StringIO())
    out = io.StringIO()
    assert await set_token(sessionmaker, settings, fake.authorize(), out) == 0
    assert "accepted by Zalo" in out.getvalue()
    async with sessionmaker() as session:
        row = await session.get(ZnsToken, APP_ID)
    assert row is not None
    assert (row.refresh_token, row.auth_error) == (fake.refresh_token, None)
