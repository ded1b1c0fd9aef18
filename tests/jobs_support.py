"""Running the periodic jobs as the service does, and reading what they queued."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import OutboxMessage, OutboxStatus
from handlers.choices import render_numbered
from handlers.notices import decode_reply
from jobs.registry import JOBS
from jobs.runner import run_due_jobs, run_if_due
from jobs.timing import NotifySettings

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SETTINGS = NotifySettings()


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """Return a local time of the school as an aware UTC datetime."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZONE).astimezone(dt.UTC)


async def run_job(
    sessionmaker: async_sessionmaker[AsyncSession],
    name: str,
    now: dt.datetime,
    settings: NotifySettings = SETTINGS,
) -> bool:
    """Run one job of the registry if it is due at `now`, as a scheduler tick would."""
    job = next(job for job in JOBS if job.name == name)
    return await run_if_due(sessionmaker, job, now, settings)


async def run_all(
    sessionmaker: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    settings: NotifySettings = SETTINGS,
) -> list[str]:
    """Run every due job of the registry, in order, as `trainingbot jobs run-once` does."""
    return await run_due_jobs(sessionmaker, JOBS, now, settings)


@dataclass(frozen=True)
class Queued:
    """An outbox row and its text as the person would read it."""

    row: OutboxMessage

    def text(self, language: str = "vi") -> str:
        """Return the notice rendered in `language`, buttons numbered."""
        reply = decode_reply(self.row.payload["reply"])
        return "\n".join(render_numbered([reply], language))

    @property
    def buttons(self) -> list[str]:
        """Return the data of the notice's buttons."""
        reply = decode_reply(self.row.payload["reply"])
        return [button.data for row in reply.buttons for button in row]


async def queued(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    kind: str | None = None,
    status: OutboxStatus | None = None,
) -> list[Queued]:
    """Return the outbox rows (of a kind, in a status), oldest first."""
    stmt = select(OutboxMessage).order_by(OutboxMessage.id)
    if kind is not None:
        stmt = stmt.where(OutboxMessage.kind == kind)
    if status is not None:
        stmt = stmt.where(OutboxMessage.status == status)
    async with sessionmaker() as session:
        return [Queued(row) for row in await session.scalars(stmt)]
