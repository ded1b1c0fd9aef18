"""Periodic jobs: the job_run row decides when a job runs, and one caller of many runs it."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import NotificationSettings, Settings
from bot.service import JobScheduler
from db.models import JobRun, Unit, UnitKind
from jobs.runner import Job, Tick, run_due_jobs, run_if_due
from jobs.timing import NotifySettings

NOW = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
SETTINGS = NotifySettings()


def counting_job(name: str, every: dt.timedelta, runs: list[str]) -> Job:
    """Return a job that adds a unit (a write that a rollback would undo) and counts runs."""

    async def run(session: AsyncSession, _tick: Tick) -> int:
        runs.append(name)
        session.add(Unit(code=f"{name}{len(runs)}", name=name, kind=UnitKind.OTHER))
        # Holds the unit of work open, so concurrent callers really overlap.
        await asyncio.sleep(0.05)
        return len(runs)

    return Job(name, every, run)


async def units(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Unit)) or 0)


async def test_a_job_runs_once_per_period(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    runs: list[str] = []
    job = counting_job("sweep", dt.timedelta(minutes=5), runs)
    assert await run_if_due(sessionmaker, job, NOW, SETTINGS)
    assert not await run_if_due(sessionmaker, job, NOW + dt.timedelta(minutes=4), SETTINGS)
    assert await run_if_due(sessionmaker, job, NOW + dt.timedelta(minutes=5), SETTINGS)
    assert runs == ["sweep", "sweep"]
    async with sessionmaker() as session:
        row = await session.get(JobRun, "sweep")
    assert row is not None
    assert row.next_run_at == NOW + dt.timedelta(minutes=10)
    assert row.last_outcome == "ok: 2"


async def test_of_callers_at_once_exactly_one_runs_the_job(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    runs: list[str] = []
    job = counting_job("digest", dt.timedelta(minutes=5), runs)
    # The row exists before the race, as it does after the first run of a deployment.
    assert await run_if_due(sessionmaker, job, NOW - dt.timedelta(minutes=5), SETTINGS)
    ran = await asyncio.gather(*(run_if_due(sessionmaker, job, NOW, SETTINGS) for _ in range(6)))
    assert sorted(ran) == [False] * 5 + [True]
    assert len(runs) == 2
    assert await units(sessionmaker) == 2


async def test_a_failed_job_is_rolled_back_and_runs_again_next_tick(
    sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []

    async def flaky(session: AsyncSession, _tick: Tick) -> int:
        attempts.append(1)
        session.add(Unit(code=f"F{len(attempts)}", name="half done", kind=UnitKind.OTHER))
        await session.flush()
        if len(attempts) == 1:
            raise RuntimeError("database hiccup")
        return 1

    job = Job("flaky", dt.timedelta(hours=1), flaky)
    assert not await run_if_due(sessionmaker, job, NOW, SETTINGS)
    assert "job flaky failed: RuntimeError" in caplog.text
    assert await units(sessionmaker) == 0
    async with sessionmaker() as session:
        row = await session.get(JobRun, "flaky")
    assert row is not None
    assert row.last_outcome == "failed: RuntimeError"
    # Still due: the next tick, a second later, runs it.
    assert await run_if_due(sessionmaker, job, NOW + dt.timedelta(seconds=1), SETTINGS)
    assert await units(sessionmaker) == 1


async def test_run_due_jobs_runs_each_due_job_in_order(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    runs: list[str] = []
    jobs = [
        counting_job("a", dt.timedelta(minutes=1), runs),
        counting_job("b", dt.timedelta(hours=1), runs),
    ]
    assert await run_due_jobs(sessionmaker, jobs, NOW, SETTINGS) == ["a", "b"]
    later = NOW + dt.timedelta(minutes=2)
    assert await run_due_jobs(sessionmaker, jobs, later, SETTINGS) == ["a"]
    assert runs == ["a", "b", "a"]


async def test_scheduler_ticks_often_but_the_row_decides(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    runs: list[str] = []
    job = counting_job("tick", dt.timedelta(seconds=1), runs)
    settings = Settings(notifications=NotificationSettings(tick_seconds=0.1))
    scheduler = JobScheduler(sessionmaker, settings, [job])
    scheduler.start()
    try:
        await asyncio.sleep(1.6)
    finally:
        await scheduler.stop(grace=2)
    # Ticked ~16 times; due at 0 s and 1 s only.
    assert runs == ["tick", "tick"]
