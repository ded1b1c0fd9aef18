"""Zalo's webhook: posts carry the secret; each update is stored before the 200 answer.

Served by the same aiohttp server as Telegram's webhook when both listen on one address
(bot/channels/telegram_webhook.py: `routes_app`).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from bot.channels.zalo import BadZaloUpdate
from bot.channels.zalo_api import SECRET_HEADER, unwrap_update

log = logging.getLogger(__name__)

Receive = Callable[[Sequence[dict[str, Any]]], Awaitable[int]]
Handler = Callable[[web.Request], Awaitable[web.Response]]


def zalo_handler(receive: Receive, *, secret_token: str) -> Handler:
    """Return the request handler of Zalo's webhook path."""
    expected = secret_token.encode()

    async def webhook(request: web.Request) -> web.Response:
        """Check the secret, store the update, then acknowledge it."""
        given = request.headers.get(SECRET_HEADER, "").encode()
        # Constant time: the comparison must not tell how much of a guess was right.
        if not hmac.compare_digest(given, expected):
            return web.Response(status=401, text="unauthorized")
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="bad request")
        update = unwrap_update(body)
        if update is None:
            if isinstance(body, dict):
                # An event that is not a message (none is documented): nothing to answer.
                log.info("zalo webhook: event %r without a message ignored", body.get("event_name"))
                return web.Response(text="ok")
            return web.Response(status=400, text="bad request")
        # A failure to store answers 500, so that Zalo may post the update again.
        try:
            await receive([update])
        except BadZaloUpdate as exc:
            log.warning("zalo webhook update refused: %s", exc.reason)
            return web.Response(status=400, text="bad request")
        return web.Response(text="ok")

    return webhook
