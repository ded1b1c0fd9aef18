"""A fake Zalo OAuth + ZNS + OA API on 127.0.0.1 that the real client talks to over HTTP.

It behaves as the client's module docstring says Zalo does (bot/channels/zns_api.py):
refresh tokens work once and rotate, access tokens are checked on every call, errors are
HTTP 200 with `error` != 0, a template message is checked against its template's
parameters, charged once per tracking_id, and answered with the quota left; a quota used
up is refused. It can lose a refresh answer after rotating (the crash case), fail calls
with given codes, and post signed events to the bot's OA webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

APP_ID = "3799894204854887828"
SECRET_KEY = "app-SECRET-key"
OA_SECRET_KEY = "oa-SECRET-key"
OA_ID = "579745863508352884"
REMINDER_TEMPLATE = "251234"
REMINDER_PARAMS = ("ho_ten", "ma_lop", "ten_lop", "thoi_gian", "dia_diem")


@dataclass
class Sent:
    """A template message the fake accepted (and charged for)."""

    phone: str
    template_id: str
    data: dict[str, str]
    tracking_id: str
    access_token: str
    msg_id: str


@dataclass
class Failure:
    """An error the next `times` calls of a path answer with."""

    code: int
    message: str
    times: int = 1
    status: int = 200


@dataclass
class FakeZnsApi:
    """The fake's state: tokens, templates, quota, what was sent and what to fail."""

    app_id: str = APP_ID
    secret_key: str = SECRET_KEY
    oa_secret_key: str = OA_SECRET_KEY
    templates: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {REMINDER_TEMPLATE: REMINDER_PARAMS}
    )
    daily_quota: int = 500
    remaining: int = 500
    # Phones (84…) with no Zalo account.
    no_zalo: set[str] = field(default_factory=set)
    port: int = 0
    refresh_token: str = ""
    access_tokens: set[str] = field(default_factory=set)
    refresh_calls: list[str] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    # Every template request, accepted or not: (tracking_id, access token, error code).
    template_calls: list[tuple[str, str, int]] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    # Rotate, then drop the connection instead of answering (the answer is lost).
    lose_refresh_answers: int = 0
    # Accept (and charge) a template message, then drop the connection instead of answering.
    lose_template_answers: int = 0
    # Called after a refresh rotated the tokens, before it is answered.
    on_refresh: Callable[[], Awaitable[None]] | None = None
    # Called with each template request before it is answered.
    on_template: Callable[[str], Awaitable[None]] | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _by_tracking: dict[str, Sent] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self.refresh_token = self._token("R")

    def _token(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}-" + "x" * 40

    @property
    def base_url(self) -> str:
        """Return the root URL that stands for every Zalo host."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_post("/v4/oa/access_token", self._refresh)
        app.router.add_post("/message/template", self._template)
        app.router.add_get("/message/quota", self._quota)
        app.router.add_post("/v3.0/oa/message/cs", self._cs)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    def fail(
        self, path: str, code: int, message: str, *, times: int = 1, status: int = 200
    ) -> None:
        """Answer the next `times` calls of `path` with an error."""
        self.failures[path] = Failure(code, message, times, status)

    def _failure(self, path: str) -> web.Response | None:
        failure = self.failures.get(path)
        if failure is None or failure.times <= 0:
            return None
        failure.times -= 1
        body = {"error": failure.code, "message": failure.message}
        return web.json_response(body, status=failure.status)

    @staticmethod
    def _error(code: int, message: str) -> web.Response:
        return web.json_response({"error": code, "message": message})

    async def _refresh(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        given = str(form.get("refresh_token", ""))
        self.refresh_calls.append(given)
        if (failed := self._failure("refresh")) is not None:
            return failed
        if request.headers.get("secret_key") != self.secret_key:
            return web.json_response(
                {"error": -14002, "error_name": "Invalid secret key", "error_description": ""}
            )
        if form.get("app_id") != self.app_id or form.get("grant_type") != "refresh_token":
            return web.json_response({"error": -14001, "error_description": "Invalid params"})
        if given != self.refresh_token:
            return web.json_response(
                {
                    "error": -14014,
                    "error_name": "Invalid refresh token",
                    "error_description": "Refresh token is invalid or expired",
                }
            )
        access = self._token("A")
        self.refresh_token = self._token("R")
        self.access_tokens.add(access)
        if self.on_refresh is not None:
            await self.on_refresh()
        if self.lose_refresh_answers > 0:
            self.lose_refresh_answers -= 1
            # Zalo rotated; the answer never reaches the bot.
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        return web.json_response(
            {"access_token": access, "refresh_token": self.refresh_token, "expires_in": "90000"}
        )

    def authorize(self) -> str:
        """Authorize the app for the OA again (as an admin does): return the new refresh token.

        The tokens of the old authorization stop working.
        """
        self.refresh_token = self._token("R")
        return self.refresh_token

    def revoke_access_tokens(self) -> None:
        """Make every access token issued so far invalid (as if they expired)."""
        self.access_tokens.clear()

    async def _template(self, request: web.Request) -> web.Response:
        token = request.headers.get("access_token", "")
        body = await request.json()
        tracking_id = str(body.get("tracking_id", ""))
        if self.on_template is not None:
            await self.on_template(token)
        answer = self._answer_template(token, body, tracking_id)
        code = json.loads(answer.text or "{}").get("error", 0)
        self.template_calls.append((tracking_id, token, int(code)))
        if code == 0 and self.lose_template_answers > 0:
            self.lose_template_answers -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        return answer

    def _answer_template(self, token: str, body: dict[str, Any], tracking_id: str) -> web.Response:
        if (failed := self._failure("template")) is not None:
            return failed
        if token not in self.access_tokens:
            return self._error(-124, "Access token is invalid")
        phone = str(body.get("phone", ""))
        if not re.fullmatch(r"84[0-9]{9}", phone):
            return self._error(-108, "Phone number invalid")
        params = self.templates.get(str(body.get("template_id", "")))
        if params is None:
            return self._error(-109, "Template ID invalid")
        data = body.get("template_data")
        if not isinstance(data, dict) or set(data) != set(params):
            return self._error(-112, "Template data invalid")
        if not tracking_id or len(tracking_id) > 48:
            return self._error(-112, "tracking_id invalid")
        known = self._by_tracking.get(tracking_id)
        if known is not None:
            # The same message again: accepted as before, not charged twice.
            return self._accepted(known)
        if phone in self.no_zalo:
            return self._error(-118, "Zalo account not existed")
        if self.remaining <= 0:
            return self._error(-144, "OA has exceeded the daily quota of ZNS messages")
        self.remaining -= 1
        sent = Sent(
            phone, str(body["template_id"]), dict(data), tracking_id, token, f"zns{next(self._ids)}"
        )
        self.sent.append(sent)
        self._by_tracking[tracking_id] = sent
        return self._accepted(sent)

    def _accepted(self, sent: Sent) -> web.Response:
        return web.json_response(
            {
                "error": 0,
                "message": "Success",
                "data": {
                    "msg_id": sent.msg_id,
                    "sent_time": "1733000000000",
                    "quota": {
                        "dailyQuota": str(self.daily_quota),
                        "remainingQuota": str(self.remaining),
                    },
                },
            }
        )

    async def _quota(self, request: web.Request) -> web.Response:
        if request.headers.get("access_token", "") not in self.access_tokens:
            return self._error(-124, "Access token is invalid")
        data = {"dailyQuota": str(self.daily_quota), "remainingQuota": str(self.remaining)}
        return web.json_response({"error": 0, "message": "Success", "data": data})

    async def _cs(self, request: web.Request) -> web.Response:
        if (failed := self._failure("cs")) is not None:
            return failed
        if request.headers.get("access_token", "") not in self.access_tokens:
            return self._error(-216, "Access token is invalid")
        body = await request.json()
        user_id = str(body["recipient"]["user_id"])
        self.texts.append((user_id, str(body["message"]["text"])))
        data = {"message_id": f"cs{next(self._ids)}", "user_id": user_id}
        return web.json_response({"error": 0, "message": "Success", "data": data})

    # The OA's webhook -----------------------------------------------------------------

    def sign(self, raw: bytes, timestamp: str, variant: str = "sha256") -> str:
        """Return the X-ZEvent-Signature header of a body, as the variant computes it."""
        if variant == "hmac_sha256":
            digest = hmac.new(self.oa_secret_key.encode(), raw, hashlib.sha256).hexdigest()
        else:
            signed = self.app_id.encode() + raw + timestamp.encode() + self.oa_secret_key.encode()
            digest = hashlib.sha256(signed).hexdigest()
        return f"mac={digest}"

    async def post_event(
        self,
        url: str,
        event: dict[str, Any],
        *,
        variant: str = "sha256",
        signature: str | None = None,
        timestamp_header: str | None = None,
    ) -> tuple[int, str]:
        """Post an event to the bot's OA webhook, signed; return the status and body."""
        raw = json.dumps(event, ensure_ascii=False).encode()
        timestamp = str(event.get("timestamp", ""))
        if variant == "sha256_header_timestamp":
            timestamp = timestamp_header or timestamp
        headers = {"Content-Type": "application/json"}
        if signature is None:
            headers["X-ZEvent-Signature"] = self.sign(raw, timestamp, variant)
        elif signature:
            headers["X-ZEvent-Signature"] = signature
        if timestamp_header is not None:
            headers["X-ZEvent-Timestamp"] = timestamp_header
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=raw, headers=headers) as response,
        ):
            return response.status, await response.text()


def receipt(msg_id: str, tracking_id: str, *, timestamp: str = "1733000005000") -> dict[str, Any]:
    """Return a `user_received_message` event: a ZNS reached the person's phone."""
    return {
        "app_id": APP_ID,
        "event_name": "user_received_message",
        "sender": {"id": OA_ID},
        "recipient": {"id": "8123456789012345678"},
        "message": {"msg_id": msg_id, "delivery_time": timestamp, "tracking_id": tracking_id},
        "timestamp": timestamp,
    }


def user_text(
    user_id: str, text: str, msg_id: str, *, timestamp: str = "1733000010000"
) -> dict[str, Any]:
    """Return a `user_send_text` event: someone wrote to the OA."""
    return {
        "app_id": APP_ID,
        "event_name": "user_send_text",
        "sender": {"id": user_id},
        "recipient": {"id": OA_ID},
        "message": {"msg_id": msg_id, "text": text},
        "timestamp": timestamp,
    }


def follow(user_id: str, *, timestamp: str = "1733000020000") -> dict[str, Any]:
    """Return a `follow` event: someone followed the OA."""
    return {
        "app_id": APP_ID,
        "oa_id": OA_ID,
        "event_name": "follow",
        "follower": {"id": user_id},
        "source": "oa_profile",
        "timestamp": timestamp,
    }


@contextlib.asynccontextmanager
async def fake_zns_api(**kwargs: Any) -> AsyncIterator[FakeZnsApi]:
    """Run a fake Zalo OAuth/ZNS/OA API for the block."""
    api = FakeZnsApi(**kwargs)
    await api.start()
    try:
        yield api
    finally:
        await api.stop()
        await asyncio.sleep(0)
