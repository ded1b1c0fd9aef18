"""The web admin's aiohttp application: its routes, templates and the server that runs it."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

import jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.web import (
    auth,
    broadcasts,
    classes,
    health,
    link_codes,
    people,
    registrations,
    reports,
    uploads,
    zns,
)
from bot.web.core import CLOCK, PROBES, SESSIONMAKER, SETTINGS, TEMPLATES, Probe, public

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STYLESHEET = (HERE / "static" / "style.css").read_bytes()
# At a stop, requests in flight get this long.
SHUTDOWN_SECONDS = 5.0


def now_utc() -> dt.datetime:
    """Return the current time in UTC."""
    return dt.datetime.now(dt.UTC)


def templates() -> jinja2.Environment:
    """Return the page templates; autoescape is on for every template, whatever its name."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@public
async def stylesheet(_request: web.Request) -> web.StreamResponse:
    """Serve the one stylesheet."""
    return web.Response(
        body=STYLESHEET,
        content_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )


async def home(_request: web.Request) -> web.StreamResponse:
    """Start at the classes."""
    raise web.HTTPSeeOther("/classes")


def build_admin_app(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    probes: Sequence[Probe] = (),
    *,
    clock: Callable[[], dt.datetime] = now_utc,
) -> web.Application:
    """Return the web admin, with /healthz and /metrics, over the given database."""
    app = web.Application(
        middlewares=[auth.guard],
        client_max_size=int(settings.web.max_upload_mb * 1024 * 1024) + 64 * 1024,
    )
    app[SESSIONMAKER] = sessionmaker
    app[SETTINGS] = settings
    app[TEMPLATES] = templates()
    app[PROBES] = list(probes)
    app[CLOCK] = clock
    router = app.router
    router.add_get("/healthz", health.healthz)
    router.add_get("/metrics", health.metrics_page)
    router.add_get("/static/style.css", stylesheet)
    router.add_get("/login", auth.login_form)
    router.add_post("/login", auth.login)
    router.add_post("/logout", auth.logout)
    router.add_get("/lang/{language}", auth.choose_language)
    router.add_get("/", home)
    router.add_get("/classes", classes.class_list)
    router.add_get("/classes/new", classes.class_new)
    router.add_post("/classes/new", classes.class_create)
    router.add_get(r"/classes/{class_id:\d+}", classes.class_detail)
    router.add_get(r"/classes/{class_id:\d+}/edit", classes.class_edit)
    router.add_post(r"/classes/{class_id:\d+}/edit", classes.class_update)
    router.add_post(r"/classes/{class_id:\d+}/close", classes.class_close)
    router.add_post(r"/classes/{class_id:\d+}/reopen", classes.class_reopen)
    router.add_get(r"/classes/{class_id:\d+}/registrations.xlsx", classes.class_export)
    router.add_post(r"/registrations/{registration_id:\d+}/approve", registrations.approve)
    router.add_post(r"/registrations/{registration_id:\d+}/reject", registrations.reject)
    router.add_post(
        r"/registrations/{registration_id:\d+}/cancel", registrations.cancel_registration
    )
    router.add_get("/units", people.unit_list)
    router.add_get(r"/units/{unit_id:\d+}", people.unit_detail)
    router.add_get("/people", people.people_list)
    router.add_get("/failures", reports.failures)
    router.add_get("/audit", reports.audit_log)
    router.add_get("/zns", zns.zns_page)
    router.add_post("/zns/token", zns.zns_token)
    router.add_get("/uploads", uploads.upload_form)
    router.add_post("/uploads", uploads.upload)
    router.add_get(r"/uploads/{upload_id:\d+}", uploads.preview)
    router.add_post(r"/uploads/{upload_id:\d+}/apply", uploads.apply)
    router.add_get(r"/people/{person_id:\d+}", people.person_detail)
    router.add_post(r"/people/{person_id:\d+}/link-code", link_codes.issue_link_code)
    router.add_get("/broadcasts", broadcasts.broadcast_list)
    router.add_get("/broadcasts/new", broadcasts.broadcast_new)
    router.add_post("/broadcasts/new", broadcasts.broadcast_create)
    router.add_get(r"/broadcasts/{broadcast_id:\d+}", broadcasts.broadcast_page)
    router.add_get(r"/broadcasts/{broadcast_id:\d+}/edit", broadcasts.broadcast_edit)
    router.add_post(r"/broadcasts/{broadcast_id:\d+}/edit", broadcasts.broadcast_update)
    router.add_post(r"/broadcasts/{broadcast_id:\d+}/urgent", broadcasts.broadcast_urgent)
    router.add_post(r"/broadcasts/{broadcast_id:\d+}/send", broadcasts.broadcast_send)
    router.add_post(r"/broadcasts/{broadcast_id:\d+}/drop", broadcasts.broadcast_drop)
    router.add_post(r"/broadcasts/{broadcast_id:\d+}/stop", broadcasts.broadcast_stop)
    return app


class ListenError(Exception):
    """The web admin's address cannot be listened on; the message says which and why."""


class AdminServer:
    """The web admin's HTTP server, started and stopped with the service."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
        self.host = host
        self.port = port

    async def start(self) -> int:
        """Start listening; return the port (the real one when 0 asked for any)."""
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise ListenError(
                f"cannot listen for the web admin on {self.host}:{self.port} "
                f"({exc.strerror or type(exc).__name__}): check [web] listen_host and listen_port"
            ) from None
        if self.runner.addresses:
            self.port = int(self.runner.addresses[0][1])
        log.info("web admin listening on %s:%s", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop listening and finish the requests in flight."""
        await self.runner.cleanup()


async def run_web(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    probes: Sequence[Probe] = (),
    *,
    stopping: asyncio.Event | None = None,
    handle_signals: bool = True,
    started: Callable[[int], None] | None = None,
) -> int:
    """Serve the web admin alone until SIGTERM/SIGINT (or `stopping`); return 0."""
    stopping = stopping or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    server = AdminServer(
        build_admin_app(sessionmaker, settings, probes),
        settings.web.listen_host,
        settings.web.listen_port,
    )
    try:
        port = await server.start()
        print(f"web admin on http://{settings.web.listen_host}:{port}/", flush=True)
        if started is not None:
            started(port)
        await stopping.wait()
    finally:
        await server.stop()
        for signum in signals:
            loop.remove_signal_handler(signum)
    return 0
