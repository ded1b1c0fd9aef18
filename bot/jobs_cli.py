"""`trainingbot jobs run-once` and `trainingbot jobs status`."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TextIO

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.broadcast_monitor import BroadcastMonitor
from bot.config import Settings
from bot.delivery import DeliveryEngine, DeliverySettings, now_utc
from bot.senders import Sender
from db import outbox
from db.models import OutboxMessage, OutboxStatus
from jobs.registry import JOBS
from jobs.runner import job_runs, run_due_jobs

if TYPE_CHECKING:
    from bot.channels.zns import ZnsChannel

# `jobs status` shows a channel's quota refusals this far back (a quota is monthly).
QUOTA_DAYS = 31


@contextlib.asynccontextmanager
async def configured_senders(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[list[Sender]]:
    """Yield a sender for each chat channel with a token, connected for the time being."""
    senders: list[Sender] = []
    async with contextlib.AsyncExitStack() as stack:
        if settings.telegram.token is not None:
            from bot.channels.telegram import TelegramChannel, build_application

            channel = TelegramChannel(build_application(settings.telegram), sessionmaker, settings)
            await channel.application.initialize()
            stack.push_async_callback(channel.shutdown)
            senders.append(channel)
        if settings.zalo.token is not None:
            from bot.channels.zalo import ZaloChannel
            from bot.channels.zalo_api import ZaloBot

            bot = ZaloBot(settings.zalo.token.get_secret_value(), settings.zalo.base_url)
            zalo = ZaloChannel(bot, sessionmaker, settings)
            stack.push_async_callback(zalo.shutdown)
            await bot.start()
            senders.append(zalo)
        yield senders


@contextlib.asynccontextmanager
async def configured_zns(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[ZnsChannel | None]:
    """Yield the ZNS channel when [zns] is on, connected for the time being; else None."""
    if not settings.zns.enabled:
        yield None
        return
    from bot.channels.zns import ZnsChannel, api_of

    channel = ZnsChannel(api_of(settings.zns), sessionmaker, settings)
    await channel.initialize()
    try:
        yield channel
    finally:
        await channel.shutdown()


async def run_once(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, out: TextIO
) -> int:
    """Run every due job, send every notice due now, and report; return the exit status."""
    ran = await run_due_jobs(sessionmaker, JOBS, now_utc(), settings.notify)
    print(f"jobs run: {', '.join(ran) if ran else 'none was due'}", file=out)
    async with configured_senders(sessionmaker, settings) as senders:
        if not senders and not settings.zns.kinds:
            async with sessionmaker() as session:
                queued = (await outbox.counts(session)).get(OutboxStatus.QUEUED, 0)
            missing = "no chat channel is configured ([telegram] or [zalo] token)"
            if settings.zns.enabled:
                missing += " and no ZNS template is on"
            print(f"delivery: {missing}: {queued} notices stay queued", file=out)
            return 0
        # Without a chat channel, ZNS alone: notices of people linked to a chat wait for it.
        async with configured_zns(sessionmaker, settings) as zns:
            engine = DeliveryEngine(
                sessionmaker, senders, DeliverySettings.of(settings), settings.notify, zns=zns
            )
            report = await engine.drain()
        # Broadcasts' progress and reports in their authors' chats, as the service shows them.
        shown = await BroadcastMonitor.of(sessionmaker, senders, settings).round()
    print(f"delivery: {report.line()}", file=out)
    if shown:
        print(f"broadcasts: progress shown for {shown}", file=out)
    return 0


def _local(moment: dt.datetime | None, zone: dt.tzinfo) -> str:
    return "-" if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


async def show_status(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, out: TextIO
) -> int:
    """Print the outbox's counts, recent failures and every job's next run."""
    now = now_utc()
    zone = settings.bot.zone
    async with sessionmaker() as session:
        counts = await outbox.counts(session)
        due_now = await session.scalar(
            select(func.count()).where(
                OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.due_at <= now
            )
        )
        failures = (
            await session.execute(
                select(OutboxMessage.last_error, func.count())
                .where(
                    OutboxMessage.status == OutboxStatus.FAILED,
                    OutboxMessage.due_at >= now - dt.timedelta(days=1),
                )
                .group_by(OutboxMessage.last_error)
                .order_by(func.count().desc())
            )
        ).all()
        runs = {run.name: run for run in await job_runs(session)}
        quota = (
            await session.execute(
                select(OutboxMessage.channel, func.count(), func.max(OutboxMessage.last_error))
                .where(
                    OutboxMessage.status == OutboxStatus.FAILED,
                    OutboxMessage.last_error.like("quota:%"),
                    OutboxMessage.due_at >= now - dt.timedelta(days=QUOTA_DAYS),
                )
                .group_by(OutboxMessage.channel)
            )
        ).all()
    queued = counts.get(OutboxStatus.QUEUED, 0)
    print(
        f"outbox: {queued} queued ({due_now or 0} due now), "
        f"{counts.get(OutboxStatus.SENT, 0)} sent, {counts.get(OutboxStatus.FAILED, 0)} failed, "
        f"{counts.get(OutboxStatus.SKIPPED, 0)} skipped",
        file=out,
    )
    for reason, count in failures:
        print(f"  failed in the last 24 h: {count} × {reason or 'unknown'}", file=out)
    for channel, count, reason in quota:
        print(
            f"  {channel}: MESSAGE QUOTA USED UP: {count} notices refused in the last "
            f"{QUOTA_DAYS} days ({reason}); the admins were told; see README (Zalo, limits)",
            file=out,
        )
    if settings.zns.enabled:
        from bot.zns_status import status_lines, zns_status

        async with sessionmaker() as session:
            state = await zns_status(session, settings, now)
        for line in status_lines(state, zone):
            print(f"  {line}", file=out)
    print(f"jobs (times in {zone}):", file=out)
    width = max(len(job.name) for job in JOBS)
    for job in JOBS:
        run = runs.get(job.name)
        if run is None:
            first = job.first_run(now, settings.notify)
            when = "due now" if first <= now else _local(first, zone)
            print(f"  {job.name:<{width}}  next: {when} (never run)", file=out)
            continue
        next_run = "due now" if run.next_run_at <= now else _local(run.next_run_at, zone)
        print(
            f"  {job.name:<{width}}  next: {next_run}  last: {_local(run.last_started_at, zone)}"
            f"  {run.last_outcome or ''}".rstrip(),
            file=out,
        )
    return 0
