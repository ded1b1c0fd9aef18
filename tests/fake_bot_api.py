"""A fake Telegram Bot API on 127.0.0.1 that the real PTB Application talks to over HTTP.

It answers `/bot{token}/{method}` as Telegram does for the methods the bot uses, records
every call (when it came, and the HTTP status it was answered with), long-polls
getUpdates for injected updates, and can be told to fail a method, to answer it late
(past the client's timeout), to drop the connection, or to enforce Telegram's global
rate limit with 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

BOT_ID = 7000000001
BOT_USERNAME = "truong_chinh_tri_bot"
# Parameters PTB sends JSON-encoded; every other value is a plain string.
_JSON_KEYS = {
    "reply_markup",
    "allowed_updates",
    "commands",
    "entities",
    "scope",
    "link_preview_options",
    "reply_parameters",
}
_INT_KEYS = {"chat_id", "message_id", "offset", "timeout", "limit", "user_id"}
_BOOL_KEYS = {"drop_pending_updates", "one_time_keyboard", "show_alert", "disable_notification"}


@dataclass
class Call:
    """One request the bot made: the method and its decoded parameters."""

    method: str
    params: dict[str, Any]
    # When the call arrived (time.monotonic()).
    at: float = field(default_factory=time.monotonic)
    # The HTTP status it was answered with; None while unanswered (or never answered:
    # the connection was dropped or the client gave up).
    status: int | None = None


@dataclass
class Failure:
    """An error the next `times` calls of a method answer with."""

    code: int
    description: str
    times: int
    retry_after: int | None = None


@dataclass
class Slowness:
    """The next `times` calls of a method are answered only after `seconds`."""

    seconds: float
    times: int


@dataclass
class RateLimit:
    """Telegram's global limit: at most `per_second` messages in any second, else 429.

    A refused call does not count; its `retry_after` is the whole seconds until the
    window has room, at least 1, as Telegram gives it.
    """

    per_second: int
    methods: frozenset[str]
    accepted: deque[float] = field(default_factory=deque)
    refused: int = 0

    def retry_after(self, now: float) -> int | None:
        """Count a call arriving at `now`; return None if it may pass, else the wait."""
        while self.accepted and self.accepted[0] <= now - 1.0:
            self.accepted.popleft()
        if len(self.accepted) < self.per_second:
            self.accepted.append(now)
            return None
        self.refused += 1
        return max(1, math.ceil(self.accepted[0] + 1.0 - now))


@dataclass
class _Pending:
    update: dict[str, Any]
    # A redelivery ignores the offset, as Telegram does for an update it was not sure of.
    redelivery: bool = False


def _decode(key: str, value: str) -> Any:
    if key in _JSON_KEYS:
        return json.loads(value)
    if key in _INT_KEYS:
        try:
            return int(value)
        except ValueError:
            return value
    if key in _BOOL_KEYS:
        return value == "true"
    return value


@dataclass
class FakeBotApi:
    """The fake server's state: calls made, updates to deliver, failures to answer with."""

    token: str = "123456:TEST-token"
    calls: list[Call] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    port: int = 0
    # Methods whose calls are held (recorded, then left unanswered) until released.
    held: dict[str, asyncio.Event] = field(default_factory=dict)
    slow: dict[str, Slowness] = field(default_factory=dict)
    # Methods whose next calls get their connection closed without an answer.
    dropping: dict[str, int] = field(default_factory=dict)
    rate_limit: RateLimit | None = None
    _pending: list[_Pending] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(500))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """Return the root URL to configure as `[telegram] base_url`."""
        return f"http://127.0.0.1:{self.port}"

    # Server ---------------------------------------------------------------------------

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
        self.release_all()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _params(self, request: web.Request) -> dict[str, Any]:
        content_type = request.content_type
        params: dict[str, Any] = dict(request.query)
        if content_type == "application/json":
            body = await request.json() if request.can_read_body else {}
            params.update(body or {})
            return params
        if content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                name = part.name or ""
                data = await part.read()
                if part.filename:
                    params[name] = {"filename": part.filename, "content": bytes(data)}
                else:
                    params[name] = _decode(name, data.decode())
            return params
        form = await request.post()
        params.update({key: _decode(key, str(value)) for key, value in form.items()})
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        method = request.match_info["method"]
        params = await self._params(request)
        # Files attached by name (attach://) are resolved to the part they name.
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                params[key] = params.get(value.removeprefix("attach://"), value)
        call = Call(method, params)
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()
        response = await self._answer(request, method, params)
        call.status = response.status
        async with self._changed:
            self._changed.notify_all()
        return response

    async def _answer(
        self, request: web.Request, method: str, params: dict[str, Any]
    ) -> web.Response:
        gate = self.held.get(method)
        if gate is not None:
            await gate.wait()
        slowness = self.slow.get(method)
        if slowness is not None and slowness.times > 0:
            slowness.times -= 1
            await asyncio.sleep(slowness.seconds)
        if self.dropping.get(method, 0) > 0:
            self.dropping[method] -= 1
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("dropped by the fake Bot API")
        failure = self.failures.get(method)
        if failure is not None and failure.times > 0:
            failure.times -= 1
            return _error(failure.code, failure.description, failure.retry_after)
        limit = self.rate_limit
        if limit is not None and method in limit.methods:
            retry_after = limit.retry_after(time.monotonic())
            if retry_after is not None:
                return _error(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return _error(404, "Not Found")
        result = await handler(params)
        return web.json_response({"ok": True, "result": result})

    # Methods --------------------------------------------------------------------------

    async def _m_getme(self, _params: dict[str, Any]) -> Any:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Trường Chính trị",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _m_getupdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + timeout
        while True:
            self._pending = [
                p for p in self._pending if p.redelivery or p.update["update_id"] >= offset
            ]
            if self._pending:
                batch = self._pending[:100]
                # An update stays pending until an offset past it acknowledges it; a
                # redelivery is sent once.
                self._pending = [p for p in self._pending if not (p.redelivery and p in batch)]
                return [p.update for p in batch]
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=left)
                except TimeoutError:
                    return []

    def _message(self, chat_id: Any, text: str | None, **extra: Any) -> dict[str, Any]:
        chat_id = int(chat_id)
        message = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Trường Chính trị"},
            **extra,
        }
        if text is not None:
            message["text"] = text
        return message

    async def _m_sendmessage(self, params: dict[str, Any]) -> Any:
        # Telegram echoes only an inline keyboard in the sent Message; a reply keyboard
        # (the contact button) is not part of it.
        markup = params.get("reply_markup")
        extra = {"reply_markup": markup} if markup and "inline_keyboard" in markup else {}
        return self._message(params["chat_id"], params["text"], **extra)

    async def _m_editmessagetext(self, params: dict[str, Any]) -> Any:
        message = self._message(params["chat_id"], params["text"])
        message["message_id"] = params["message_id"]
        return message

    async def _m_senddocument(self, params: dict[str, Any]) -> Any:
        # A document uploaded (a file part) or sent again by its file_id (a string).
        document = params.get("document") or {}
        name = document.get("filename") if isinstance(document, dict) else None
        file_id = document if isinstance(document, str) else "doc1"
        return self._message(
            params["chat_id"],
            None,
            document={"file_id": file_id, "file_unique_id": f"{file_id}u", "file_name": name},
            **({"caption": params["caption"]} if params.get("caption") else {}),
        )

    async def _m_sendphoto(self, params: dict[str, Any]) -> Any:
        photo = params.get("photo")
        file_id = photo if isinstance(photo, str) else "photo1"
        size = {"file_id": file_id, "file_unique_id": f"{file_id}u", "width": 800, "height": 600}
        return self._message(
            params["chat_id"],
            None,
            photo=[size],
            **({"caption": params["caption"]} if params.get("caption") else {}),
        )

    async def _m_answercallbackquery(self, _params: dict[str, Any]) -> Any:
        return True

    async def _m_setmycommands(self, _params: dict[str, Any]) -> Any:
        return True

    async def _m_deletewebhook(self, _params: dict[str, Any]) -> Any:
        return True

    async def _m_setwebhook(self, _params: dict[str, Any]) -> Any:
        return True

    async def _m_getwebhookinfo(self, _params: dict[str, Any]) -> Any:
        url = next(
            (c.params.get("url", "") for c in reversed(self.calls) if c.method == "setWebhook"),
            "",
        )
        return {"url": url, "has_custom_certificate": False, "pending_update_count": 0}

    async def _m_close(self, _params: dict[str, Any]) -> Any:
        return True

    async def _m_logout(self, _params: dict[str, Any]) -> Any:
        return True

    # Test controls --------------------------------------------------------------------

    def fail(
        self,
        method: str,
        code: int,
        description: str,
        *,
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` with an error."""
        self.failures[method] = Failure(code, description, times, retry_after)

    def fail_blocked(self, method: str = "sendMessage", times: int = 1) -> None:
        """Answer as Telegram does when the user blocked the bot."""
        self.fail(method, 403, "Forbidden: bot was blocked by the user", times=times)

    def fail_not_modified(self, times: int = 1) -> None:
        """Answer an edit as Telegram does when the text is the same."""
        self.fail(
            "editMessageText",
            400,
            "Bad Request: message is not modified: specified new message content and reply "
            "markup are exactly the same as a current content and reply markup of the message",
            times=times,
        )

    def fail_flood(self, method: str = "sendMessage", retry_after: int = 1) -> None:
        """Answer as Telegram does over its rate limit."""
        self.fail(
            method,
            429,
            f"Too Many Requests: retry after {retry_after}",
            retry_after=retry_after,
        )

    def answer_late(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Answer the next `times` calls of `method` only after `seconds` (a slow server)."""
        self.slow[method] = Slowness(seconds, times)

    def drop(self, method: str, *, times: int = 1) -> None:
        """Close the connection of the next `times` calls of `method` without answering."""
        self.dropping[method] = times

    def limit_rate(
        self, per_second: int, methods: tuple[str, ...] = ("sendMessage", "sendDocument")
    ) -> RateLimit:
        """Refuse messages over `per_second` in any second with 429, as Telegram does."""
        self.rate_limit = RateLimit(per_second, frozenset(methods))
        return self.rate_limit

    def delivered(self, method: str = "sendMessage") -> list[Call]:
        """Return the calls of `method` answered with success, in order of arrival."""
        return [call for call in self.calls_of(method) if call.status == 200]

    def hold(self, method: str) -> None:
        """Leave calls of `method` unanswered (a hung connection) until released."""
        self.held[method] = asyncio.Event()

    def release_all(self) -> None:
        """Answer every held call and stop holding."""
        for gate in self.held.values():
            gate.set()
        self.held.clear()

    def next_update_id(self) -> int:
        """Return a fresh update_id."""
        return next(self._update_ids)

    async def inject(self, update: dict[str, Any], *, redelivery: bool = False) -> None:
        """Queue an update for getUpdates; a redelivery is returned even below the offset."""
        self._pending.append(_Pending(update, redelivery))
        async with self._changed:
            self._changed.notify_all()

    def calls_of(self, method: str) -> list[Call]:
        """Return the calls of one method, in order."""
        return [call for call in self.calls if call.method == method]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _params: True,
        timeout: float = 5.0,  # noqa: ASYNC109 (the brief's signature; asyncio.timeout inside)
        *,
        count: int = 1,
    ) -> list[Call]:
        """Wait until `count` calls of `method` match `predicate`; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls_of(method) if predicate(c.params)]
            if len(found) >= count:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                made = [c.method for c in self.calls]
                raise AssertionError(f"no {count} x {method} within {timeout}s; calls: {made}")
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(left, 0.2))


def _error(code: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=code)


def user(user_id: int = 111, *, language_code: str | None = "vi", name: str = "Trang") -> Any:
    """Return a Telegram User object."""
    data: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": name}
    if language_code:
        data["language_code"] = language_code
    return data


def private_chat(user_id: int = 111) -> dict[str, Any]:
    """Return the private Chat of a user with the bot."""
    return {"id": user_id, "type": "private", "first_name": "Trang"}


def text_update(
    update_id: int,
    text: str,
    *,
    user_id: int = 111,
    language_code: str | None = "vi",
    chat: dict[str, Any] | None = None,
    message_id: int = 1,
) -> dict[str, Any]:
    """Return an update with a text message from a user."""
    message: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": chat or private_chat(user_id),
        "from": user(user_id, language_code=language_code),
        "text": text,
    }
    if text.startswith("/"):
        command = text.split()[0]
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    return {"update_id": update_id, "message": message}


def photo_update(
    update_id: int, file_id: str, *, caption: str | None = None, user_id: int = 111
) -> dict[str, Any]:
    """Return an update with a photo (in two sizes, as Telegram sends them) and its caption."""
    message: dict[str, Any] = {
        "message_id": 3,
        "date": int(time.time()),
        "chat": private_chat(user_id),
        "from": user(user_id),
        "photo": [
            {"file_id": f"{file_id}-small", "file_unique_id": "s", "width": 90, "height": 60},
            {"file_id": file_id, "file_unique_id": "l", "width": 1280, "height": 960},
        ],
    }
    if caption is not None:
        message["caption"] = caption
    return {"update_id": update_id, "message": message}


def document_update(
    update_id: int,
    file_id: str,
    file_name: str,
    *,
    caption: str | None = None,
    user_id: int = 111,
) -> dict[str, Any]:
    """Return an update with a document and its caption."""
    message: dict[str, Any] = {
        "message_id": 4,
        "date": int(time.time()),
        "chat": private_chat(user_id),
        "from": user(user_id),
        "document": {
            "file_id": file_id,
            "file_unique_id": f"{file_id}u",
            "file_name": file_name,
            "mime_type": "application/pdf",
        },
    }
    if caption is not None:
        message["caption"] = caption
    return {"update_id": update_id, "message": message}


def contact_update(
    update_id: int, phone: str, *, user_id: int = 111, contact_user_id: int | None = 111
) -> dict[str, Any]:
    """Return an update with a shared contact."""
    contact: dict[str, Any] = {"phone_number": phone, "first_name": "Trang"}
    if contact_user_id is not None:
        contact["user_id"] = contact_user_id
    return {
        "update_id": update_id,
        "message": {
            "message_id": 2,
            "date": int(time.time()),
            "chat": private_chat(user_id),
            "from": user(user_id),
            "contact": contact,
        },
    }


def callback_update(
    update_id: int,
    data: str,
    *,
    user_id: int = 111,
    message_id: int = 1000,
    language_code: str | None = "vi",
) -> dict[str, Any]:
    """Return an update of a button press on a message the bot sent."""
    return {
        "update_id": update_id,
        "callback_query": {
            "id": f"cq{update_id}",
            "from": user(user_id, language_code=language_code),
            "chat_instance": "ci1",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": private_chat(user_id),
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Trường Chính trị"},
                "text": "…",
            },
        },
    }


def member_update(update_id: int, status: str, *, user_id: int = 111) -> dict[str, Any]:
    """Return a my_chat_member update: the user blocked ("kicked") or restarted ("member")."""
    old = "member" if status == "kicked" else "kicked"
    bot = {"id": BOT_ID, "is_bot": True, "first_name": "Trường Chính trị"}
    member_extra: dict[str, Any] = {"until_date": 0} if status == "kicked" else {}
    old_extra: dict[str, Any] = {"until_date": 0} if old == "kicked" else {}
    return {
        "update_id": update_id,
        "my_chat_member": {
            "chat": private_chat(user_id),
            "from": user(user_id),
            "date": int(time.time()),
            "old_chat_member": {"user": bot, "status": old, **old_extra},
            "new_chat_member": {"user": bot, "status": status, **member_extra},
        },
    }


async def _serve_until_stdin_closes() -> None:
    """Serve the fake Bot API, print its base URL, and stop when stdin closes."""
    api = FakeBotApi()
    await api.start()
    print(api.base_url, flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    await api.stop()


if __name__ == "__main__":
    # A server in a process of its own, for benchmarks whose client must not share a core.
    asyncio.run(_serve_until_stdin_closes())
