"""The channels /healthz asks about when the web admin runs alone (`trainingbot web`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.web.core import Probe


@contextlib.asynccontextmanager
async def configured_probes(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession] | None = None
) -> AsyncIterator[list[Probe]]:
    """Yield a probe per configured channel.

    A Telegram token: Telegram (a getMe now and then); `[zns]` on: ZNS's tokens and quota,
    read from the database through `sessionmaker` (Zalo is not asked).
    """
    probes: list[Probe] = []
    async with contextlib.AsyncExitStack() as stack:
        if settings.telegram.token is not None:
            from bot.channels.telegram import TelegramProbe

            probe = TelegramProbe(settings.telegram)
            stack.push_async_callback(probe.close)
            probes.append(probe)
        if settings.zns.enabled and sessionmaker is not None:
            from bot.zns_status import ZnsProbe

            probes.append(ZnsProbe(sessionmaker, settings))
        yield probes
