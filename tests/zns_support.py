"""Settings and rows for the ZNS tests: Telegram (the chat channel) and ZNS, both fake."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import (
    DatabaseSettings,
    NotificationSettings,
    Settings,
    TelegramSettings,
    ZnsSettings,
    ZnsTemplate,
    ZnsTemplates,
)
from db.models import OutboxMessage
from tests.fake_bot_api import FakeBotApi
from tests.fake_zns_api import (
    APP_ID,
    OA_SECRET_KEY,
    REMINDER_TEMPLATE,
    SECRET_KEY,
    FakeZnsApi,
)

REMINDER_FIELDS = {
    "ho_ten": "person.name",
    "ma_lop": "code",
    "ten_lop": "title",
    "thoi_gian": "when",
    "dia_diem": "place",
}


def reminder_template(**changes: Any) -> ZnsTemplate:
    """Return the reminder's template as the fake knows it."""
    values: dict[str, Any] = {"template_id": REMINDER_TEMPLATE, "fields": REMINDER_FIELDS}
    return ZnsTemplate(**(values | changes))


def zns_section(fake: FakeZnsApi, **changes: Any) -> ZnsSettings:
    """Return a [zns] section pointing at the fake, with the reminder's template."""
    values: dict[str, Any] = {
        "enabled": True,
        "app_id": APP_ID,
        "secret_key": SecretStr(SECRET_KEY),
        "oa_secret_key": SecretStr(OA_SECRET_KEY),
        "refresh_token": SecretStr(fake.refresh_token),
        "oauth_base_url": fake.base_url,
        "zns_base_url": fake.base_url,
        "oa_base_url": fake.base_url,
        "rate_per_second": 50,
        "quota_reserve": 0,
        "templates": ZnsTemplates(reminder=reminder_template()),
    }
    return ZnsSettings(**(values | changes))


def zns_settings(
    fake: FakeZnsApi, telegram: FakeBotApi, database_url: str, **changes: Any
) -> Settings:
    """Return settings with Telegram and ZNS, both fake, on the test database."""
    return Settings(
        database=DatabaseSettings(url=SecretStr(database_url)),
        # No quiet hours (the tests run at any hour); retries come quickly.
        notifications=NotificationSettings(quiet_hours="", retry_seconds=0.01),
        telegram=TelegramSettings(
            token=SecretStr(telegram.token), base_url=telegram.base_url, poll_timeout=1
        ),
        zns=zns_section(fake, **changes),
    )


async def rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    """Return every outbox row, oldest first."""
    async with sessionmaker() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


def soon(minutes: int = 90) -> dt.datetime:
    """Return a moment `minutes` from now, to the second (the jobs run on the real clock)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=minutes)
