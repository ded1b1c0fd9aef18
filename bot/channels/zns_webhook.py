"""The Official Account's webhook: signed events, checked, stored once, then answered 200.

Served by the webhook server of `trainingbot run` (bot/channels/telegram_webhook.py:
`routes_app`), beside the chat webhooks unless [zns] listen_host/listen_port say
otherwise.

The signature (header `X-ZEvent-Signature: mac=<hex>`): sources disagree on its details,
so `[zns] signature` chooses the variant; each is tested (tests/test_zns_webhook.py):
- "sha256" (the default; Zalo's documentation as integrators quote it, assumed): hex
  SHA-256 of app id + raw body + the body's `timestamp` + the OA secret key;
- "sha256_header_timestamp": the same with the timestamp of the `X-ZEvent-Timestamp`
  header instead of the body's;
- "hmac_sha256": hex HMAC-SHA256 of the raw body keyed with the OA secret key.
A post without a valid signature is answered 401 and nothing of it is processed. An
event is stored (with its effect: a receipt marks its notice delivered) before the 200;
one Zalo posts again (it retries for an hour) is recognised by its key and changes
nothing; one that cannot be stored gets 500, so Zalo posts it again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ZEvent-Signature"
TIMESTAMP_HEADER = "X-ZEvent-Timestamp"

Receive = Callable[[dict[str, Any], bytes], Awaitable[bool]]
Handler = Callable[[web.Request], Awaitable[web.Response]]


def expected_signature(
    variant: str, *, app_id: str, oa_secret_key: str, raw: bytes, timestamp: str
) -> str:
    """Return the hex signature Zalo would send for a body, by the configured variant."""
    if variant == "hmac_sha256":
        return hmac.new(oa_secret_key.encode(), raw, hashlib.sha256).hexdigest()
    signed = app_id.encode() + raw + timestamp.encode() + oa_secret_key.encode()
    return hashlib.sha256(signed).hexdigest()


def _timestamp(variant: str, request: web.Request, event: Any) -> str:
    """Return the timestamp the variant signs: the header's, or the body's as written."""
    if variant == "sha256_header_timestamp":
        return request.headers.get(TIMESTAMP_HEADER, "").strip()
    if isinstance(event, dict) and event.get("timestamp") is not None:
        return str(event["timestamp"])
    return ""


def zns_handler(receive: Receive, *, app_id: str, oa_secret_key: str, variant: str) -> Handler:
    """Return the request handler of the OA's webhook path."""

    async def webhook(request: web.Request) -> web.Response:
        """Check the signature, store the event (and its effect), then acknowledge it."""
        raw = await request.read()
        try:
            event = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            event = None
        given = request.headers.get(SIGNATURE_HEADER, "").strip()
        if given.lower().startswith("mac="):
            given = given[4:].strip()
        expected = expected_signature(
            variant,
            app_id=app_id,
            oa_secret_key=oa_secret_key,
            raw=raw,
            timestamp=_timestamp(variant, request, event),
        )
        # Constant time: the comparison must not tell how much of a guess was right.
        if not given or not hmac.compare_digest(given.lower().encode(), expected.encode()):
            log.warning("zns webhook: a post without a valid signature refused")
            return web.Response(status=401, text="unauthorized")
        if not isinstance(event, dict):
            return web.Response(status=400, text="bad request")
        # A failure to store answers 500, so that Zalo posts the event again.
        new = await receive(event, raw)
        if not new:
            log.info("zns webhook: event %s already received", event.get("event_name"))
        return web.Response(text="ok")

    return webhook
