"""The service's periodic jobs, in the order `trainingbot jobs run-once` runs them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from db import inbox
from jobs.offers import sweep_offers
from jobs.runner import Job, Tick

# Answered updates are kept this long to recognise a redelivery, then deleted.
INBOX_RETENTION = dt.timedelta(days=7)


async def _sweep_offers(session: AsyncSession, tick: Tick) -> int:
    return await sweep_offers(session, tick.now, tick.settings.chat)


async def _purge_inbox(session: AsyncSession, tick: Tick) -> int:
    return await inbox.purge_answered(session, before=tick.now - INBOX_RETENTION)


JOBS: list[Job] = [
    Job("sweep_offers", dt.timedelta(minutes=1), _sweep_offers),
    Job("purge_inbox", dt.timedelta(hours=1), _purge_inbox),
]
