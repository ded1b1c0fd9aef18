"""A small client of the Zalo Bot API over aiohttp: the methods the bot uses, typed errors.

What is verified and what is assumed (checked 2026-11 against the Zalo Bot Platform's
documentation as published at bot.zaloplatforms.com/docs, "cập nhật 10/12/2025", and the
public SDKs and integrations: python-zalo-bot, go-zalo-bot, OpenClaw's Zalo plugin):

Verified in the documentation:
- every method is `POST {base}/bot{TOKEN}/{method}` with a JSON body, answering JSON
  `{"ok": true, "result": …}`; the base is `https://bot-api.zaloplatforms.com` (older
  SDKs use `https://bot-api.zapps.me`); a token is `{bot_id}:{access_token}`;
- getMe; getUpdates (long polling, parameter `timeout` in seconds as a string, default
  30) whose `result` is ONE update object, not a list, and which does not work while a
  webhook is set (deleteWebhook first);
- setWebhook (`url` over https, `secret_token` of 8 to 256 characters, sent back in the
  `X-Bot-Api-Secret-Token` header of every post), deleteWebhook, getWebhookInfo;
- sendMessage (`chat_id`, `text` of 1 to 2,000 characters), sendPhoto (`chat_id`,
  `photo` URL, `caption` up to 2,000), sendChatAction (`chat_id`, `action` "typing");
- a message: `message_id` (string), `date` (milliseconds), `text`, `from.id`,
  `chat.id` and `chat.chat_type` ("PRIVATE" or "GROUP"); ids are strings.

Assumed (the SDKs and integrations agree; the documentation does not say):
- errors are `{"ok": false, "error_code": N, "description": …}`, with N the HTTP-like
  status (400 bad request, 401/404 bad token, 403 not allowed, 429 too many requests
  with an optional `parameters.retry_after`, 5xx server errors);
- an empty long poll answers error 408 ("Request timeout"), as HTTP status 408 or in
  the body; the update has no id of its own and no offset exists, so an update is
  known by its `message_id`;
- an update is `{"event_name": "message.text.received" | "message.image.received" |
  "message.sticker.received" | "message.unsupported.received", "message": {…}}` and
  `from` carries `display_name` and `is_bot`; a webhook body is the update, bare or
  wrapped in the `{ok, result}` envelope;
- a used-up quota (the free plan's monthly messages) is refused with a description
  that speaks of a quota or a limit (see `ZaloApiError.is_quota`); Zalo publishes no
  rate limit for bots, so the delivery pace is configured (`[zalo] rate_per_second`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

DEFAULT_BASE_URL = "https://bot-api.zaloplatforms.com"
LEGACY_BASE_URL = "https://bot-api.zapps.me"
SECRET_HEADER = "X-Bot-Api-Secret-Token"
MAX_TEXT = 2000
# An empty long poll (assumed: see the module's docstring).
EMPTY_POLL = 408
# Requests other than the long poll give up after this long.
REQUEST_SECONDS = 20.0
# Words of a refusal that mean the plan's quota is used up (English and Vietnamese).
_QUOTA_WORDS = ("quota", "limit exceeded", "exceeded the limit", "hạn mức", "vượt quá giới hạn")
_GONE_WORDS = ("not found", "not exist", "blocked", "không tồn tại")


class ZaloError(Exception):
    """A call to the Zalo Bot API failed; the message never holds the token."""


class ZaloNetworkError(ZaloError):
    """No usable answer: connection refused or broken, a timeout, a body that is not JSON."""


class ZaloApiError(ZaloError):
    """The Bot API answered with an error."""

    def __init__(self, code: int, description: str, retry_after: float | None = None) -> None:
        super().__init__(f"{code} {description}".strip())
        self.code = code
        self.description = description
        self.retry_after = retry_after

    @property
    def is_quota(self) -> bool:
        """Return whether the refusal says a quota or limit of the plan is used up."""
        text = self.description.lower()
        quota = any(word in text for word in _QUOTA_WORDS)
        # A 429 that names no pause is not a short rate limit either: a quota.
        return quota or (self.code == 429 and self.retry_after is None)

    @property
    def is_gone(self) -> bool:
        """Return whether the chat cannot be written to: blocked, unknown or deleted."""
        text = self.description.lower()
        return self.code == 403 or (self.code in (400, 404) and any(w in text for w in _GONE_WORDS))

    @property
    def is_temporary(self) -> bool:
        """Return whether trying again later may succeed: a server error or a timeout."""
        return self.code >= 500 or self.code == EMPTY_POLL


def _retry_after(body: dict[str, Any]) -> float | None:
    parameters = body.get("parameters")
    if isinstance(parameters, dict):
        value = parameters.get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None


def unwrap_update(body: Any) -> dict[str, Any] | None:
    """Return the update in a webhook body or getUpdates result, bare or in {ok, result}."""
    if isinstance(body, dict) and "result" in body and "message" not in body:
        body = body["result"] if body.get("ok") is not False else None
    if not isinstance(body, dict):
        return None
    message = body.get("message")
    if not isinstance(message, dict):
        return None
    return body


@dataclass
class ZaloBot:
    """The Bot API of one bot: `{base_url}/bot{token}/{method}`."""

    token: str
    base_url: str = DEFAULT_BASE_URL
    request_seconds: float = REQUEST_SECONDS
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP connection pool."""
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, seconds: float | None = None
    ) -> Any:
        """Call `method` with a JSON body; return its `result` or raise a ZaloError."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        url = f"{self.base_url}/bot{self.token}/{method}"
        timeout = aiohttp.ClientTimeout(total=seconds or self.request_seconds)
        try:
            async with self._session.post(url, json=params or {}, timeout=timeout) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The type only: aiohttp's text may quote the URL, which holds the token.
            raise ZaloNetworkError(f"{method}: {type(exc).__name__}") from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            if status >= 400:
                raise ZaloApiError(status, "answer without a JSON body")
            raise ZaloNetworkError(f"{method}: answer is not JSON (HTTP {status})")
        if body.get("ok") is True and status < 400:
            return body.get("result")
        code = body.get("error_code")
        if not isinstance(code, int) or isinstance(code, bool):
            code = status if status >= 400 else 500
        description = str(body.get("description") or "").replace(self.token, "…")[:300]
        raise ZaloApiError(code, description, _retry_after(body))

    async def get_me(self) -> dict[str, Any]:
        """Return the bot's own account; raises when the token is refused."""
        result = await self.call("getMe")
        return result if isinstance(result, dict) else {}

    async def get_updates(self, wait: int) -> list[dict[str, Any]]:
        """Long-poll for `wait` seconds; return the update that came (one), else none."""
        try:
            result = await self.call(
                "getUpdates", {"timeout": str(wait)}, seconds=wait + REQUEST_SECONDS
            )
        except ZaloApiError as exc:
            if exc.code == EMPTY_POLL:
                return []
            raise
        # One update; a list (should Zalo ever batch them) is taken as it is.
        found = result if isinstance(result, list) else [result]
        return [update for item in found if (update := unwrap_update(item)) is not None]

    async def send_message(self, chat_id: str, text: str) -> dict[str, Any]:
        """Send a text of at most 2,000 characters; return what Zalo says it sent."""
        result = await self.call("sendMessage", {"chat_id": chat_id, "text": text})
        return result if isinstance(result, dict) else {}

    async def send_photo(self, chat_id: str, photo: str, caption: str = "") -> dict[str, Any]:
        """Send a picture by its URL, with a caption."""
        params = {"chat_id": chat_id, "photo": photo}
        if caption:
            params["caption"] = caption
        result = await self.call("sendPhoto", params)
        return result if isinstance(result, dict) else {}

    async def send_chat_action(self, chat_id: str, action: str = "typing") -> None:
        """Show the bot as typing in the chat for a few seconds."""
        await self.call("sendChatAction", {"chat_id": chat_id, "action": action})

    async def set_webhook(self, url: str, secret_token: str) -> None:
        """Have Zalo post updates to `url` with `secret_token` (polling then stops working)."""
        await self.call("setWebhook", {"url": url, "secret_token": secret_token})

    async def delete_webhook(self) -> None:
        """Remove the webhook, so that getUpdates works."""
        await self.call("deleteWebhook")

    async def get_webhook_info(self) -> dict[str, Any]:
        """Return the webhook's current URL (empty when none) and when it was set."""
        result = await self.call("getWebhookInfo")
        return result if isinstance(result, dict) else {}
