"""A chat platform's webhook path: the secret checked, the update stored, then the 200.

The platform is told an update arrived (200) only once it is stored in the inbox; a
failure to store answers 500, so the platform posts the update again. Each platform's
path is served by the webhook server of bot/channels/telegram_webhook.py (`routes_app`).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from bot.channels.inbox_worker import BadPayload

log = logging.getLogger(__name__)

# A channel's `receive`: store the updates, return how many were new; raise BadPayload.
Receive = Callable[[Sequence[dict[str, Any]]], Awaitable[int]]
Handler = Callable[[web.Request], Awaitable[web.Response]]
# The update a parsed body holds; None for an event with nothing to answer; ValueError
# for a body that is not the platform's.
UpdateOf = Callable[[Any], dict[str, Any] | None]


def webhook_handler(
    receive: Receive, *, channel: str, secret_header: str, secret_token: str, update_of: UpdateOf
) -> Handler:
    """Return the request handler of a platform's webhook path."""
    expected = secret_token.encode()

    async def webhook(request: web.Request) -> web.Response:
        """Check the secret, store the update, then acknowledge it."""
        given = request.headers.get(secret_header, "").encode()
        # Constant time: the comparison must not tell how much of a guess was right.
        if not hmac.compare_digest(given, expected):
            return web.Response(status=401, text="unauthorized")
        try:
            update = update_of(json.loads(await request.read()))
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="bad request")
        if update is None:
            return web.Response(text="ok")
        # A failure to store answers 500, so the platform posts the update again later.
        try:
            await receive([update])
        except BadPayload as exc:
            # Ids and the error's type only: the body may quote what a user wrote.
            log.warning("%s webhook update refused: %s", channel, exc)
            return web.Response(status=400, text="bad request")
        return web.Response(text="ok")

    return webhook
