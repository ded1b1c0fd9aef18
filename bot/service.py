"""The service: the Telegram channel in its configured mode, its workers and periodic jobs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.telegram import ALLOWED_UPDATES, TelegramChannel, build_application, now_utc
from bot.channels.telegram_webhook import WebhookServer, build_web_app
from bot.config import Settings
from db import inbox
from jobs.offers import sweep_offers

log = logging.getLogger(__name__)

# After the stop, the loops get this long to finish what they hold (an update being
# handled); then they are cancelled. A cancelled unit of work is rolled back and its
# lease runs out, so the update is taken again by the next process: nothing is lost.
STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class PeriodicJob:
    """A sweep run every `every` in its own unit of work, e.g. expiring seat offers."""

    name: str
    every: dt.timedelta
    run: Callable[[AsyncSession, dt.datetime, Settings], Awaitable[object]]


async def _sweep_offers(session: AsyncSession, now: dt.datetime, settings: Settings) -> int:
    return await sweep_offers(session, now, settings.chat)


# Answered updates are kept this long to recognise a redelivery, then deleted.
INBOX_RETENTION = dt.timedelta(days=7)


async def _purge_inbox(session: AsyncSession, now: dt.datetime, _settings: Settings) -> int:
    return await inbox.purge_answered(session, before=now - INBOX_RETENTION)


# The periodic jobs of the service: sweeps that read what is due from the database.
PERIODIC_JOBS: list[PeriodicJob] = [
    PeriodicJob("sweep_offers", dt.timedelta(minutes=1), _sweep_offers),
    PeriodicJob("purge_inbox", dt.timedelta(hours=1), _purge_inbox),
]


async def run_periodic(
    job: PeriodicJob,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    stopping: asyncio.Event,
) -> None:
    """Run `job` every `job.every` until `stopping` is set; a failed run is logged and retried."""
    while not stopping.is_set():
        try:
            async with sessionmaker() as session, session.begin():
                await job.run(session, now_utc(), settings)
        except Exception as exc:
            log.error("periodic job %s failed: %s", job.name, type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=job.every.total_seconds())


def _ending(task: asyncio.Task[None]) -> str:
    """Return how a task that should have run until the stop ended: its error's type."""
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return "returned" if exc is None else type(exc).__name__


async def _finish(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for `tasks` to end, without raising what they raised (they log their own)."""
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_service(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    stopping: asyncio.Event | None = None,
    jobs: list[PeriodicJob] | None = None,
    handle_signals: bool = True,
    stop_grace: float = STOP_GRACE_SECONDS,
) -> int:
    """Run the Telegram channel until SIGTERM/SIGINT (or `stopping`); return the exit status.

    Every loop (workers, notices, jobs, polling) runs until the stop. One that ends before
    (a bug: each retries its own failures) is logged, the service stops cleanly and exits
    1, so a supervisor restarts it instead of it limping on without, say, polling.
    """
    stopping = stopping or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    telegram = settings.telegram
    channel = TelegramChannel(build_application(telegram), sessionmaker, settings)
    server: WebhookServer | None = None
    names: dict[asyncio.Task[None], str] = {}
    job_stop = asyncio.Event()
    status = 0
    await channel.initialize()
    try:
        for number in range(1, channel.workers + 1):
            names[asyncio.create_task(channel.work())] = f"inbox worker {number}"
        names[asyncio.create_task(channel.deliver_notices())] = "notice sender"
        for job in PERIODIC_JOBS if jobs is None else jobs:
            task = asyncio.create_task(run_periodic(job, sessionmaker, settings, job_stop))
            names[task] = f"periodic job {job.name}"
        poller: asyncio.Task[None] | None = None
        if telegram.mode == "polling":
            poller = asyncio.create_task(channel.poll())
            names[poller] = "telegram polling"
        else:
            # The config refuses webhook mode without both.
            assert telegram.url is not None
            assert telegram.secret_token is not None
            secret = telegram.secret_token.get_secret_value()
            app = build_web_app(channel.receive, path=telegram.path, secret_token=secret)
            server = WebhookServer(app, telegram.listen_host, telegram.listen_port)
            await server.start()
            await channel.bot.set_webhook(
                telegram.url, secret_token=secret, allowed_updates=list(ALLOWED_UPDATES)
            )
        log.info("trainingbot started (telegram, %s mode)", telegram.mode)
        stop_asked: asyncio.Task[Any] = asyncio.create_task(stopping.wait())
        done, _running = await asyncio.wait(
            [stop_asked, *names], return_when=asyncio.FIRST_COMPLETED
        )
        stop_asked.cancel()
        for task in names:
            if task in done:
                log.error("%s ended unexpectedly (%s)", names[task], _ending(task))
                status = 1
        log.info("trainingbot stopping")
        if poller is not None:
            # Nothing in a pending getUpdates is acknowledged yet: cancelling loses nothing.
            poller.cancel()
            await _finish([poller])
        if server is not None:
            await server.stop()
            server = None
        channel.stop()
        job_stop.set()
        # Workers finish the update in hand, then return; one stuck (a database that does
        # not answer) is cancelled after the grace period, in `finally`.
        _done, stuck = await asyncio.wait(names, timeout=stop_grace)
        if stuck:
            log.warning("%s loops still busy %ss after the stop: cancelled", len(stuck), stop_grace)
    finally:
        # After a failed start (setWebhook refused), the loops started so far end here.
        left = [task for task in names if not task.done()]
        for task in left:
            task.cancel()
        await _finish(left)
        if server is not None:
            await server.stop()
        await channel.shutdown()
        for signum in signals:
            loop.remove_signal_handler(signum)
    log.info("trainingbot stopped")
    return status
