"""A fake Zalo Bot API on 127.0.0.1 that the real Zalo client talks to over HTTP.

It answers `POST /bot{token}/{method}` as Zalo does (JSON or form bodies), hands out ONE
update per getUpdates and answers 408 when none came before the timeout, refuses texts
over 2,000 characters, records every call, and can be told to fail a method. It also
posts updates to the bot's webhook, bare or in the {ok, result} envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

BOT_ID = "1459232241454765289"
TOKEN = f"{BOT_ID}:TEST-zalo_token"
SECRET_HEADER = "X-Bot-Api-Secret-Token"


@dataclass
class Call:
    """One request the bot made: the method and its parameters (strings as sent)."""

    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


@dataclass
class Failure:
    """An error the next `times` calls of a method answer with."""

    code: int
    description: str
    times: int
    retry_after: int | None = None
    # The HTTP status of the answer; Zalo's error_code is in the body either way.
    status: int | None = None


@dataclass
class FakeZaloApi:
    """The fake server's state: calls made, updates to hand out, failures to answer with."""

    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    port: int = 0
    webhook_url: str = ""
    webhook_secret: str = ""
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """Return the root URL to configure as `[zalo] base_url`."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.json() if request.can_read_body else {}
            params.update(body or {})
        elif request.can_read_body:  # form bodies, urlencoded or multipart
            form = await request.post()
            params.update({key: str(value) for key, value in form.items()})
        return params

    @staticmethod
    def _error(code: int, description: str, *, status: int | None = None, **extra: Any) -> Any:
        body = {"ok": False, "error_code": code, "description": description, **extra}
        return web.json_response(body, status=status or code)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append(Call(method, params))
        async with self._changed:
            self._changed.notify_all()
        failure = self.failures.get(method)
        if failure is not None and failure.times > 0:
            failure.times -= 1
            extra = {}
            if failure.retry_after is not None:
                extra["parameters"] = {"retry_after": failure.retry_after}
            return self._error(failure.code, failure.description, status=failure.status, **extra)
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return self._error(404, "Not Found")
        answer: web.Response = await handler(params)
        return answer

    @staticmethod
    def _ok(result: Any = None) -> web.Response:
        body: dict[str, Any] = {"ok": True}
        if result is not None:
            body["result"] = result
        return web.json_response(body)

    # Methods --------------------------------------------------------------------------

    async def _m_getme(self, _params: dict[str, Any]) -> web.Response:
        return self._ok(
            {
                "id": BOT_ID,
                "account_name": "bot.TruongChinhTri",
                "account_type": "BASIC",
                "can_join_groups": False,
            }
        )

    async def _m_getupdates(self, params: dict[str, Any]) -> web.Response:
        if self.webhook_url:
            return self._error(400, "Webhook is set: delete it to use getUpdates")
        deadline = time.monotonic() + float(params.get("timeout") or 30)
        while True:
            if self._pending:
                # One update per call, not a list; once handed out Zalo forgets it.
                return self._ok(self._pending.pop(0))
            left = deadline - time.monotonic()
            if left <= 0:
                return self._error(408, "Request timeout")
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=left)

    def _sent(self) -> web.Response:
        return self._ok({"message_id": f"{next(self._ids):020x}", "date": int(time.time() * 1000)})

    async def _m_sendmessage(self, params: dict[str, Any]) -> web.Response:
        text = str(params.get("text") or "")
        if not params.get("chat_id"):
            return self._error(400, "chat_id is required")
        if not 1 <= len(text) <= 2000:
            return self._error(400, "text must be 1 to 2000 characters")
        return self._sent()

    async def _m_sendphoto(self, params: dict[str, Any]) -> web.Response:
        if not str(params.get("photo") or "").startswith(("http://", "https://")):
            return self._error(400, "photo must be a URL")
        return self._sent()

    async def _m_sendchataction(self, _params: dict[str, Any]) -> web.Response:
        return self._ok()

    async def _m_setwebhook(self, params: dict[str, Any]) -> web.Response:
        secret = str(params.get("secret_token") or "")
        if not str(params.get("url") or "").startswith("https://"):
            return self._error(400, "url must be https")
        if not 8 <= len(secret) <= 256:
            return self._error(400, "secret_token must be 8 to 256 characters")
        self.webhook_url, self.webhook_secret = str(params["url"]), secret
        return self._ok({"url": self.webhook_url, "updated_at": int(time.time() * 1000)})

    async def _m_deletewebhook(self, _params: dict[str, Any]) -> web.Response:
        self.webhook_url = self.webhook_secret = ""
        return self._ok({"url": "", "updated_at": int(time.time() * 1000)})

    async def _m_getwebhookinfo(self, _params: dict[str, Any]) -> web.Response:
        return self._ok({"url": self.webhook_url, "updated_at": int(time.time() * 1000)})

    # Test controls --------------------------------------------------------------------

    def fail(
        self,
        method: str,
        code: int,
        description: str,
        *,
        times: int = 1,
        retry_after: int | None = None,
        status: int | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` with an error."""
        self.failures[method] = Failure(code, description, times, retry_after, status)

    def next_message_id(self) -> str:
        """Return a fresh message id, a hex string as Zalo's are."""
        return f"{next(self._ids):020x}"

    async def inject(self, update: dict[str, Any]) -> None:
        """Queue an update for getUpdates."""
        self._pending.append(update)
        async with self._changed:
            self._changed.notify_all()

    def calls_of(self, method: str) -> list[Call]:
        """Return the calls of one method, in order."""
        return [call for call in self.calls if call.method == method]

    def texts_to(self, chat_id: str, since: int = 0) -> list[str]:
        """Return the texts sent to `chat_id` by calls after the first `since`."""
        return [
            str(call.params["text"])
            for call in self.calls[since:]
            if call.method == "sendMessage" and call.params.get("chat_id") == chat_id
        ]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _params: True,
        within: float = 5.0,
        *,
        count: int = 1,
    ) -> list[Call]:
        """Wait until `count` calls of `method` match `predicate`; return them."""
        deadline = time.monotonic() + within
        while True:
            found = [c for c in self.calls_of(method) if predicate(c.params)]
            if len(found) >= count:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                made = [c.method for c in self.calls]
                raise AssertionError(f"no {count} x {method} within {within}s; calls: {made}")
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(left, 0.2))


@contextlib.asynccontextmanager
async def fake_zalo_api() -> AsyncIterator[FakeZaloApi]:
    """Run the fake Zalo Bot API on a free port."""
    api = FakeZaloApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


def text_update(
    text: str,
    *,
    user_id: str = "u111",
    message_id: str = "m1",
    chat_type: str = "PRIVATE",
    chat_id: str | None = None,
    event: str = "message.text.received",
    name: str = "Phạm Thu Trang",
) -> dict[str, Any]:
    """Return a bare Zalo update: a message from a user."""
    message: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time() * 1000),
        "from": {"id": user_id, "display_name": name, "is_bot": False},
        "chat": {"id": chat_id or user_id, "chat_type": chat_type},
    }
    if event == "message.text.received":
        message["text"] = text
    return {"event_name": event, "message": message}


async def post_webhook(
    url: str, body: Any, secret: str | None, *, envelope: bool = False
) -> tuple[int, str]:
    """POST `body` to the bot's webhook as Zalo would; return the status and text."""
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    if envelope:
        body = {"ok": True, "result": body}
    data = body if isinstance(body, bytes) else None
    async with (
        aiohttp.ClientSession() as client,
        client.post(url, json=None if data else body, data=data, headers=headers) as response,
    ):
        return response.status, await response.text()
