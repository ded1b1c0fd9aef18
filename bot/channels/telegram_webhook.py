"""The webhook server: Telegram (and Zalo) post updates here; each is stored before the 200."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bot.channels.inbox_worker import BadPayload
from bot.channels.telegram_render import CHANNEL

# Handler is re-exported: bot/service.py names the type from here.
from bot.channels.webhook import Handler as Handler
from bot.channels.webhook import Receive, webhook_handler

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# A Telegram update is a few kilobytes; anything much larger is not one.
MAX_BODY = 1024 * 1024
# At a stop, requests in flight get this long (a stuck one is cut: Telegram posts it again).
SHUTDOWN_SECONDS = 5.0


class BadUpdate(BadPayload):
    """A body that does not parse as a Telegram update; `reason` is the error's type only."""

    def __init__(self, update_id: int, reason: str) -> None:
        super().__init__(f"update {update_id} does not parse: {reason}", reason)
        self.update_id = update_id


async def healthz(_request: web.Request) -> web.Response:
    """Answer that the process is up."""
    return web.Response(text="ok")


def update_of(body: Any) -> dict[str, Any]:
    """Return a webhook body that has a Telegram update's id; raise ValueError if not."""
    # `type is int`: a JSON true is a bool, which Python counts as an int.
    if not isinstance(body, dict) or type(body.get("update_id")) is not int:
        raise ValueError("not a Telegram update")
    return body


def telegram_handler(receive: Receive, *, secret_token: str) -> Handler:
    """Return the request handler of Telegram's webhook path."""
    return webhook_handler(
        receive,
        channel=CHANNEL,
        secret_header=SECRET_HEADER,
        secret_token=secret_token,
        update_of=update_of,
    )


def routes_app(routes: Mapping[str, Handler]) -> web.Application:
    """Return the aiohttp app serving each path's webhook and /healthz (one per address)."""
    app = web.Application(client_max_size=MAX_BODY)
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    app.router.add_get("/healthz", healthz)
    return app


def build_web_app(receive: Receive, *, path: str, secret_token: str) -> web.Application:
    """Return the aiohttp app serving `path` (Telegram's updates) and /healthz."""
    return routes_app({path: telegram_handler(receive, secret_token=secret_token)})


class WebhookServer:
    """The aiohttp server of the webhook, started and stopped with the service."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
        self.host = host
        self.port = port

    async def start(self) -> int:
        """Start listening; return the port (the real one when 0 asked for any)."""
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        if self.runner.addresses:
            self.port = int(self.runner.addresses[0][1])
        log.info("webhook server listening on %s:%s", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop listening and finish the requests in flight."""
        await self.runner.cleanup()
