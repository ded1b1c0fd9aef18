"""The service: the Telegram channel in its configured mode, its workers and periodic jobs."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
from collections.abc import Sequence
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.broadcast_monitor import BroadcastMonitor
from bot.channels.telegram import ALLOWED_UPDATES, TelegramChannel, build_application, now_utc
from bot.channels.telegram_webhook import WebhookServer, build_web_app
from bot.config import Settings
from bot.delivery import DeliveryEngine, DeliverySettings
from jobs.registry import JOBS
from jobs.runner import Job, run_if_due

log = logging.getLogger(__name__)

# After the stop, the loops get this long to finish what they hold (an update being
# handled); then they are cancelled. A cancelled unit of work is rolled back and its
# lease runs out, so the update is taken again by the next process: nothing is lost.
STOP_GRACE_SECONDS = 10.0


class JobScheduler:
    """APScheduler ticks that run the periodic jobs when the database says they are due.

    Each job ticks every `[notifications] tick_seconds` (or its own period, if shorter);
    a tick runs the job only if its `job_run` row is due (jobs/runner.py). A tick that
    comes while the previous one still runs is dropped (max_instances=1, coalesce), and
    none is ever skipped for being late: the row, not the tick, carries what is due.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        jobs: Sequence[Job],
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.jobs = list(jobs)
        self.scheduler = AsyncIOScheduler(timezone=settings.bot.zone)
        self._running: set[asyncio.Task[Any]] = set()

    async def _tick(self, job: Job) -> None:
        # The run is a task of its own, so `stop` can cancel it without the cancellation
        # reaching APScheduler's executor (which logs it as a crash).
        run = asyncio.create_task(
            run_if_due(self.sessionmaker, job, now_utc(), self.settings.notify)
        )
        self._running.add(run)
        try:
            await asyncio.wait([run])
        finally:
            self._running.discard(run)

    def start(self) -> None:
        """Start ticking: every job's first tick is now."""
        tick = dt.timedelta(seconds=self.settings.notifications.tick_seconds)
        first = dt.datetime.now(self.settings.bot.zone)
        for job in self.jobs:
            every = min(tick, job.every)
            self.scheduler.add_job(
                self._tick,
                IntervalTrigger(seconds=every.total_seconds()),
                args=[job],
                id=job.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=first,
            )
        self.scheduler.start()

    async def stop(self, grace: float) -> None:
        """Stop ticking and give the job runs in progress `grace` seconds, then cancel them."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        running = list(self._running)
        if not running:
            return
        _done, stuck = await asyncio.wait(running, timeout=grace)
        for task in stuck:
            # Cancelled mid-job, its unit of work is rolled back: it runs again next time.
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)


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
    jobs: Sequence[Job] | None = None,
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
    scheduler = JobScheduler(sessionmaker, settings, JOBS if jobs is None else jobs)
    engine = DeliveryEngine(sessionmaker, [channel], DeliverySettings.of(settings), settings.notify)
    delivery_stop = asyncio.Event()
    status = 0
    await channel.initialize()
    try:
        for number in range(1, channel.workers + 1):
            names[asyncio.create_task(channel.work())] = f"inbox worker {number}"
        names[asyncio.create_task(engine.run(delivery_stop))] = "notice delivery"
        monitor = BroadcastMonitor.of(sessionmaker, [channel], settings)
        names[asyncio.create_task(monitor.run(delivery_stop))] = "broadcast progress"
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
        scheduler.start()
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
        delivery_stop.set()
        await scheduler.stop(stop_grace)
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
        await scheduler.stop(0)
        if server is not None:
            await server.stop()
        await channel.shutdown()
        for signum in signals:
            loop.remove_signal_handler(signum)
    log.info("trainingbot stopped")
    return status
