"""Run the real Zalo channel against the fake Zalo Bot API, in this test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import DatabaseSettings, NotificationSettings, Settings, WebSettings, ZaloSettings
from bot.service import run_service
from db.models import InboundUpdate, InboxStatus
from tests.fake_zalo_api import FakeZaloApi, text_update
from tests.telegram_support import free_port

ZALO_SECRET = "zalo-Secret_123"
ZALO_URL = "https://bot.example.org/zalo"


def zalo_settings(api: FakeZaloApi, database_url: str, **zalo: Any) -> Settings:
    """Return settings with only Zalo configured, pointing at the fake and the test database."""
    return Settings(
        database=DatabaseSettings(url=SecretStr(database_url)),
        # No quiet hours: the tests must pass at any hour of the night too.
        notifications=NotificationSettings(quiet_hours=""),
        zalo=ZaloSettings(
            token=SecretStr(api.token), base_url=api.base_url, poll_timeout=1, **zalo
        ),
        # The web admin on any free port (as tests.telegram_support does): not the default
        # 8090, which another test run on the machine may hold.
        web=WebSettings(listen_port=0),
    )


def zalo_webhook_settings(api: FakeZaloApi, database_url: str, **zalo: Any) -> Settings:
    """Return settings for Zalo in webhook mode on a free local port."""
    return zalo_settings(
        api,
        database_url,
        mode="webhook",
        url=ZALO_URL,
        secret_token=SecretStr(ZALO_SECRET),
        listen_port=zalo.pop("listen_port", free_port()),
        **zalo,
    )


@contextlib.asynccontextmanager
async def running_zalo(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, api: FakeZaloApi
) -> AsyncIterator[asyncio.Task[int]]:
    """Run the service until the block ends; Zalo is ready once polling or the webhook is."""
    stopping = asyncio.Event()
    ready = "getUpdates" if settings.zalo.mode == "polling" else "setWebhook"
    before = len(api.calls_of(ready))
    task = asyncio.create_task(
        run_service(sessionmaker, settings, stopping=stopping, handle_signals=False)
    )
    try:
        await api.wait_for(ready, count=before + 1)
        yield task
    finally:
        stopping.set()
        assert await asyncio.wait_for(task, timeout=10) == 0


async def inbox_status(
    sessionmaker: async_sessionmaker[AsyncSession], message_id: str
) -> InboxStatus | None:
    """Return the status of the stored Zalo update with this message id, if stored."""
    async with sessionmaker() as session:
        status: InboxStatus | None = await session.scalar(
            select(InboundUpdate.status).where(
                InboundUpdate.channel == "zalo", InboundUpdate.update_key == message_id
            )
        )
        return status


async def wait_answered(
    sessionmaker: async_sessionmaker[AsyncSession], message_id: str, within: float = 5.0
) -> None:
    """Wait until the update with `message_id` is answered (its replies sent)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while await inbox_status(sessionmaker, message_id) != InboxStatus.ANSWERED:
        if loop.time() > deadline:
            status = await inbox_status(sessionmaker, message_id)
            raise AssertionError(f"zalo message {message_id} not answered ({status})")
        await asyncio.sleep(0.01)


@dataclass
class ZaloUser:
    """One Zalo user talking to the running bot (polling)."""

    api: FakeZaloApi
    sessionmaker: async_sessionmaker[AsyncSession]
    user_id: str = "u111"

    async def say(self, text: str) -> str:
        """Send a message, wait until it is answered; return the texts sent back, joined."""
        before = len(self.api.calls)
        message_id = self.api.next_message_id()
        await self.api.inject(text_update(text, user_id=self.user_id, message_id=message_id))
        await wait_answered(self.sessionmaker, message_id)
        return "\n\n".join(self.api.texts_to(self.user_id, before))
