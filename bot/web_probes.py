"""The chat channels /healthz asks about when the web admin runs alone (`trainingbot web`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bot.config import Settings
from bot.web.core import Probe


@contextlib.asynccontextmanager
async def configured_probes(settings: Settings) -> AsyncIterator[list[Probe]]:
    """Yield a probe per configured chat channel (a Telegram token: Telegram)."""
    if settings.telegram.token is None:
        yield []
        return
    from bot.channels.telegram import TelegramProbe

    probe = TelegramProbe(settings.telegram)
    try:
        yield [probe]
    finally:
        await probe.close()
