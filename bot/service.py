"""The service: the Telegram and Zalo channels in their configured modes, workers and jobs."""

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
from bot.channels.telegram_webhook import Handler, WebhookServer, routes_app, telegram_handler
from bot.channels.zalo import ZaloChannel
from bot.channels.zalo_api import ZaloBot
from bot.channels.zalo_webhook import zalo_handler
from bot.channels.zns import ZnsChannel, api_of
from bot.channels.zns_webhook import zns_handler
from bot.config import Settings
from bot.delivery import DeliveryEngine, DeliverySettings
from bot.web.app import AdminServer, ListenError, build_admin_app
from bot.web.core import Probe
from bot.zns_status import ZnsProbe
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
        # reaching APScheduler's executor (which logs it as a crash). It stays in
        # `_running` until it ends, for `stop` to wait for, even when the tick is gone.
        run = asyncio.create_task(
            run_if_due(self.sessionmaker, job, now_utc(), self.settings.notify)
        )
        self._running.add(run)
        run.add_done_callback(self._running.discard)
        try:
            await asyncio.wait([run])
        except asyncio.CancelledError:
            # APScheduler's shutdown cancels the ticks in progress; the run goes on and
            # `stop` decides how long it may take. Ending quietly keeps a normal stop
            # from being logged as a crash.
            return

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
    """Run the configured channels until SIGTERM/SIGINT (or `stopping`); return the exit status.

    Telegram, Zalo or both, each in its mode; webhooks on one listening address share one
    server. Every loop (workers, notices, jobs, polling) runs until the stop. One that
    ends before (a bug: each retries its own failures) is logged, the service stops
    cleanly and exits 1, so a supervisor restarts it instead of it limping on without,
    say, polling.
    """
    stopping = stopping or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    telegram = settings.telegram
    zalo = settings.zalo
    channel = (
        TelegramChannel(build_application(telegram), sessionmaker, settings)
        if telegram.token is not None
        else None
    )
    zalo_channel = (
        ZaloChannel(_zalo_bot(settings), sessionmaker, settings) if zalo.token is not None else None
    )
    channels: list[TelegramChannel | ZaloChannel] = [
        c for c in (channel, zalo_channel) if c is not None
    ]
    servers: list[WebhookServer] = []
    names: dict[asyncio.Task[None], str] = {}
    scheduler = JobScheduler(sessionmaker, settings, JOBS if jobs is None else jobs)
    zns = _zns_channel(sessionmaker, settings)
    engine = DeliveryEngine(
        sessionmaker, channels, DeliverySettings.of(settings), settings.notify, zns=zns
    )
    delivery_stop = asyncio.Event()
    status = 0
    initialized: list[TelegramChannel | ZaloChannel] = []
    admin: AdminServer | None = None
    try:
        for each in channels:
            await each.initialize()
            initialized.append(each)
        if zns is not None:
            await zns.initialize()
        if settings.web.enabled:
            probes: list[Probe] = [*channels]
            if zns is not None:
                probes.append(ZnsProbe(sessionmaker, settings))
            admin = AdminServer(
                build_admin_app(sessionmaker, settings, probes),
                settings.web.listen_host,
                settings.web.listen_port,
            )
            await admin.start()
        for each in channels:
            for number in range(1, each.workers + 1):
                names[asyncio.create_task(each.work())] = f"{each.channel} inbox worker {number}"
        names[asyncio.create_task(engine.run(delivery_stop))] = "notice delivery"
        monitor = BroadcastMonitor.of(sessionmaker, channels, settings)
        names[asyncio.create_task(monitor.run(delivery_stop))] = "broadcast progress"
        if zns is not None:
            names[asyncio.create_task(zns.answer_messages(delivery_stop))] = "zns answers"
        pollers: list[asyncio.Task[None]] = []
        routes: dict[tuple[str, int], dict[str, Handler]] = {}
        if channel is not None and telegram.mode == "polling":
            pollers.append(asyncio.create_task(channel.poll()))
            names[pollers[-1]] = "telegram polling"
        elif channel is not None:
            # The config refuses webhook mode without a url and a secret.
            assert telegram.secret_token is not None
            secret = telegram.secret_token.get_secret_value()
            address = (telegram.listen_host, telegram.listen_port)
            handler = telegram_handler(channel.receive, secret_token=secret)
            routes.setdefault(address, {})[telegram.path] = handler
        if zalo_channel is not None and zalo.mode == "polling":
            pollers.append(asyncio.create_task(zalo_channel.poll()))
            names[pollers[-1]] = "zalo polling"
        elif zalo_channel is not None:
            assert zalo.secret_token is not None
            secret = zalo.secret_token.get_secret_value()
            handler = zalo_handler(zalo_channel.receive, secret_token=secret)
            routes.setdefault(settings.zalo_listen, {})[zalo.path] = handler
        if zns is not None:
            routes.setdefault(settings.zns_listen, {})[settings.zns.webhook_path] = _zns_route(
                zns, settings
            )
        for (host, port), paths in routes.items():
            server = WebhookServer(routes_app(paths), host, port)
            try:
                await server.start()
            except OSError as exc:
                if list(paths) != [settings.zns.webhook_path]:
                    raise
                raise ListenError(
                    f"cannot listen for the OA's webhook on {host}:{port} "
                    f"({exc.strerror or type(exc).__name__}): check [zns] listen_host and "
                    "listen_port (unset, they are [telegram]'s)"
                ) from None
            servers.append(server)
        if channel is not None and telegram.mode == "webhook":
            assert telegram.url is not None
            assert telegram.secret_token is not None
            await channel.bot.set_webhook(
                telegram.url,
                secret_token=telegram.secret_token.get_secret_value(),
                allowed_updates=list(ALLOWED_UPDATES),
            )
        if zalo_channel is not None and zalo.mode == "webhook":
            assert zalo.url is not None
            assert zalo.secret_token is not None
            await zalo_channel.bot.set_webhook(zalo.url, zalo.secret_token.get_secret_value())
        scheduler.start()
        modes = ", ".join(
            f"{name}, {section.mode} mode"
            for name, section, each in (
                ("telegram", telegram, channel),
                ("zalo", zalo, zalo_channel),
            )
            if each is not None
        )
        if zns is not None:
            modes = ", ".join(filter(None, [modes, "zns"]))
        log.info("trainingbot started (%s)", modes)
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
        # Nothing in a pending getUpdates is acknowledged yet: cancelling loses nothing.
        for poller in pollers:
            poller.cancel()
        await _finish(pollers)
        for server in servers:
            await server.stop()
        servers = []
        if admin is not None:
            await admin.stop()
            admin = None
        for each in channels:
            each.stop()
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
        for server in servers:
            await server.stop()
        if admin is not None:
            await admin.stop()
        for each in channels:
            if each in initialized or isinstance(each, ZaloChannel):
                await each.shutdown()
        if zns is not None:
            await zns.shutdown()
        for signum in signals:
            loop.remove_signal_handler(signum)
    log.info("trainingbot stopped")
    return status


def _zalo_bot(settings: Settings) -> ZaloBot:
    """Return the Zalo Bot API client of the configured bot."""
    assert settings.zalo.token is not None
    return ZaloBot(settings.zalo.token.get_secret_value(), settings.zalo.base_url)


def _zns_channel(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> ZnsChannel | None:
    """Return the ZNS channel when [zns] is on, else None."""
    if not settings.zns.enabled:
        return None
    return ZnsChannel(api_of(settings.zns), sessionmaker, settings)


def _zns_route(zns: ZnsChannel, settings: Settings) -> Handler:
    """Return the handler of the OA's webhook."""
    section = settings.zns
    assert section.app_id is not None
    assert section.oa_secret_key is not None
    return zns_handler(
        zns.receive_event,
        app_id=section.app_id,
        oa_secret_key=section.oa_secret_key.get_secret_value(),
        variant=section.signature,
    )
