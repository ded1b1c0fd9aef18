"""Periodic jobs: a few sweeps that read what is due from the database.

The scheduler (APScheduler in the service) only ticks; whether a job is due is the
`job_run` row's `next_run_at`, so the database is the source of truth: a job missed
while the service was down runs at the next tick, and of several processes exactly one
runs it per period. The claim and the job's work share one unit of work: on PostgreSQL
the claimed row stays locked until the commit, and a second process's claim, waiting on
that lock, then finds the job no longer due; on SQLite units of work run one at a time.
A job that fails is rolled back whole (its claim too), so it runs again at the next tick.
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


@dataclass(frozen=True)
class Tick:
    """One run of a job: when, with which settings, and when it last ran."""

    now: dt.datetime
    settings: NotifySettings
    # When the job's previous successful run started (None: never): a daily report covers
    # what happened since then, no more and no less.
    last_run: dt.datetime | None = None


JobFunction = Callable[[AsyncSession, Tick], Awaitable[object]]
# Of a daily job: the local time of day it runs at, read from the settings.
DailyTime = Callable[[NotifySettings], dt.time]


@dataclass(frozen=True)
class Job:
    """A sweep run in its own unit of work; it returns what it did (a count, a summary).

    It runs every `every`, or, with `daily_at`, once a day at that local time (a day
    missed while the service was down is run once, at the next tick).
    """

    name: str
    every: dt.timedelta
    run: JobFunction
    daily_at: DailyTime | None = None

    def first_run(self, now: dt.datetime, settings: NotifySettings) -> dt.datetime:
        """Return when a job never run before is first due."""
        if self.daily_at is None:
            return now
        return _next_local(self.daily_at(settings), now, settings, inclusive=True)

    def next_run(self, now: dt.datetime, settings: NotifySettings) -> dt.datetime:
        """Return when the job is due again after a run at `now`."""
        if self.daily_at is None:
            return now + self.every
        return _next_local(self.daily_at(settings), now, settings, inclusive=False)


def daily(name: str, at: DailyTime, run: JobFunction) -> Job:
    """Return a job run once a day at the local time `at` gives."""
    return Job(name, dt.timedelta(days=1), run, daily_at=at)


def _next_local(
    at: dt.time, now: dt.datetime, settings: NotifySettings, *, inclusive: bool
) -> dt.datetime:
    """Return the first moment at local time `at` from `now` on (after it unless inclusive)."""
    zone = settings.zone
    day = now.astimezone(zone).date()
    for offset in range(3):
        moment = dt.datetime.combine(day + dt.timedelta(days=offset), at, tzinfo=zone)
        moment_utc = moment.astimezone(dt.UTC)
        if moment_utc > now or (inclusive and moment_utc == now):
            return moment_utc
    raise AssertionError("unreachable: a local time recurs within two days")


async def _add_row(
    session: AsyncSession, job: Job, now: dt.datetime, settings: NotifySettings
) -> None:
    """Add the job's row, due at its first run, unless it exists."""
    await session.execute(
        upsert_insert(session, JobRun)
        .values(name=job.name, next_run_at=job.first_run(now, settings))
        .on_conflict_do_nothing(index_elements=["name"])
    )


async def _claim(session: AsyncSession, job: Job, tick: Tick) -> Tick | None:
    """Take this period's run of `job` if it is due; return its tick, or None if not ours.

    The previous start is read before the claiming UPDATE: a concurrent claimer that wins
    moves `next_run_at` past now, so our UPDATE then matches nothing.
    """
    now = tick.now
    await _add_row(session, job, now, tick.settings)
    last_run = await session.scalar(
        select(JobRun.last_started_at).where(JobRun.name == job.name, JobRun.next_run_at <= now)
    )
    claimed = await session.scalar(
        update(JobRun)
        .where(JobRun.name == job.name, JobRun.next_run_at <= now)
        .values(next_run_at=job.next_run(now, tick.settings), last_started_at=now)
        .returning(JobRun.name)
    )
    if claimed is None:
        return None
    return Tick(now, tick.settings, last_run)


async def run_if_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    job: Job,
    now: dt.datetime,
    settings: NotifySettings,
) -> bool:
    """Run `job` if it is due and no other process runs it; return whether it ran."""
    try:
        async with sessionmaker() as session, session.begin():
            tick = await _claim(session, job, Tick(now, settings))
            if tick is None:
                return False
            result = await job.run(session, tick)
            await session.execute(
                update(JobRun)
                .where(JobRun.name == job.name)
                .values(
                    last_finished_at=dt.datetime.now(dt.UTC),
                    last_outcome=f"ok: {result}"[:500],
                )
            )
    except Exception as exc:
        log.error("job %s failed: %s", job.name, type(exc).__name__)
        async with sessionmaker() as session, session.begin():
            await _add_row(session, job, now, settings)
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
