"""The offer sweep: seats held too long for someone on the waitlist pass to the next person."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.ext.asyncio import AsyncSession

from db import registrations
from db.repos import Repos
from handlers.seat_notices import notify_lapsed, notify_offers
from handlers.types import ChatSettings

log = logging.getLogger(__name__)


async def sweep_offers(session: AsyncSession, now: dt.datetime, settings: ChatSettings) -> int:
    """End lapsed offers, offer their seats on and queue the notices; return how many lapsed.

    Run it in one unit of work: the status changes and their notices are committed
    together, so a crash repeats the sweep instead of losing a notice. Safe in several
    processes at once (each class is locked while its offers move).
    """
    repos = Repos(session)
    lapsed = await registrations.expire_offers(
        session, now=now, zone=settings.zone, window=settings.offer_window
    )
    for change in lapsed:
        await notify_lapsed(repos, change.registration, now=now)
        await notify_offers(repos, change.offers, now=now, zone=settings.zone)
    if lapsed:
        log.info("offer sweep: %d offers lapsed", len(lapsed))
    return len(lapsed)
