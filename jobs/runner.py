"""Periodic jobs: a few sweeps that read what is due from the database.

The scheduler (APScheduler in the service) only ticks; whether a job is due is the
`job_run` row's `next_run_at`, so the database is the source of truth: a job missed
while the service was down runs at the next tick, and of several processes exactly one
runs it per period. The claim and the job's work share one unit of work: on PostgreSQL
the claimed row stays locked until the commit, and a second process's claim, waiting on
that lock, then finds the job no longer due; on SQLite units of work run one at a time.
A job that fails is rolled back whole, so it runs again at the next tick.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import JobRun
from db.session import upsert_insert
from jobs.timing import NotifySettings

log = logging.getLogger(__name__)

JobFunction = Callable[[AsyncSession, dt.datetime, NotifySettings], Awaitable[object]]


@dataclass(frozen=True)
class Job:
    """A sweep run every `every` in its own unit of work; it returns what it did (a count)."""

    name: str
    every: dt.timedelta
    run: JobFunction


async def _add_row(session: AsyncSession, job: Job, now: dt.datetime) -> None:
    """Add the job's row, due now, unless it exists."""
    await session.execute(
        upsert_insert(session, JobRun)
        .values(name=job.name, next_run_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )


async def _claim(session: AsyncSession, job: Job, now: dt.datetime) -> bool:
    """Take this period's run of `job` if it is due; return whether this caller runs it."""
    await _add_row(session, job, now)
    claimed = await session.scalar(
        update(JobRun)
        .where(JobRun.name == job.name, JobRun.next_run_at <= now)
        .values(next_run_at=now + job.every, last_started_at=now)
        .returning(JobRun.name)
    )
    return claimed is not None


async def run_if_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    job: Job,
    now: dt.datetime,
    settings: NotifySettings,
) -> bool:
    """Run `job` if it is due and no other process runs it; return whether it ran."""
    try:
        async with sessionmaker() as session, session.begin():
            if not await _claim(session, job, now):
                return False
            result = await job.run(session, now, settings)
            await session.execute(
                update(JobRun)
                .where(JobRun.name == job.name)
                .values(last_finished_at=dt.datetime.now(dt.UTC), last_outcome=f"ok: {result}")
            )
    except Exception as exc:
        log.error("job %s failed: %s", job.name, type(exc).__name__)
        async with sessionmaker() as session, session.begin():
            await _add_row(session, job, now)
            await session.execute(
                update(JobRun)
                .where(JobRun.name == job.name)
                .values(last_outcome=f"failed: {type(exc).__name__}"[:500])
            )
        return False
    return True


async def run_due_jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
    jobs: Sequence[Job],
    now: dt.datetime,
    settings: NotifySettings,
) -> list[str]:
    """Run every due job once, in order; return the names of those that ran."""
    ran = []
    for job in jobs:
        if await run_if_due(sessionmaker, job, now, settings):
            ran.append(job.name)
    return ran


async def job_runs(session: AsyncSession) -> list[JobRun]:
    """Return every job's run record, by name."""
    return list((await session.scalars(select(JobRun).order_by(JobRun.name))).all())
