"""Zalo's webhook: posts carry the secret; each update is stored before the 200 answer.

Served by the same aiohttp server as Telegram's webhook when both listen on one address
(bot/channels/telegram_webhook.py: `routes_app`); the path's handling is every
platform's (bot/channels/webhook.py).
"""

from __future__ import annotations

import logging
from typing import Any

from bot.channels.webhook import Handler, Receive, webhook_handler
from bot.channels.zalo import CHANNEL
from bot.channels.zalo_api import SECRET_HEADER, unwrap_update

log = logging.getLogger(__name__)


def update_of(body: Any) -> dict[str, Any] | None:
    """Return the message update of a webhook body, bare or in {ok, result}; raise ValueError.

    A body without a message is an event that needs no answer: None.
    """
    update = unwrap_update(body)
    if update is not None:
        return update
    if not isinstance(body, dict):
        raise ValueError("not a Zalo update")
    # An event that is not a message (none is documented): nothing to answer.
    log.info("zalo webhook: event %r without a message ignored", body.get("event_name"))
    return None


def zalo_handler(receive: Receive, *, secret_token: str) -> Handler:
    """Return the request handler of Zalo's webhook path."""
    return webhook_handler(
        receive,
        channel=CHANNEL,
        secret_header=SECRET_HEADER,
        secret_token=secret_token,
        update_of=update_of,
    )
