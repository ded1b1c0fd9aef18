"""A small client of Zalo's Official Account and ZNS APIs over aiohttp, with typed errors.

What is verified and what is assumed (checked 2026-11 with the `search` tool; the pages
of developers.zalo.me themselves could not be read from here):

Verified in Zalo's own documentation (zalo.cloud/zns/guidelines/handle-error-code, "Cách
xử lý mã lỗi"):
- ZNS answers carry an `error` code, 0 for success; -100 is an unknown error to retry
  later; -101 … -105 are problems of the app (invalid, missing, not activated, a bad
  app secret key, not linked to an OA); -106 an unsupported method; -108 an invalid
  phone number (84…, 0… and the number without its 0 are accepted); -109 an invalid
  template id; -110 a Zalo app too old to show ZNS; -111 empty template data.

Assumed (public integrations and SDKs agree: @warriorteam/redai-zalo-sdk, eTelecom's and
Goby's ZNS gateways, several open-source OA integrations; the issue's brief says the same):
- every call answers HTTP 200, also for errors, with `error` != 0 and a `message`;
- the access token goes in an `access_token` header (not `Authorization: Bearer`);
- refreshing: `POST {oauth}/v4/oa/access_token`, header `secret_key: <app secret>`, form
  `app_id`, `grant_type=refresh_token`, `refresh_token`; the answer is `{access_token,
  refresh_token, expires_in}` (`expires_in` in seconds, often a string; about 25 hours);
  a refusal is `{error, error_name, error_description}`; a refresh token works ONCE
  (every refresh returns a new one, valid about 3 months), and an access token stays
  valid until it expires even after a refresh (bot/channels/zns_tokens.py relies on it);
- a template message: `POST {zns}/message/template` with JSON `{phone, template_id,
  template_data, tracking_id}`; the answer's `data` holds `msg_id`, `sent_time` and
  `quota: {dailyQuota, remainingQuota}` (numbers as strings); `tracking_id` is the
  sender's own id of the message (at most 48 characters), echoed by receipts, and a
  message with a tracking_id Zalo already accepted is not charged again (Zalo's pages
  describe tracking_id only as the partner's reconciliation id: the dedupe is assumed);
- the quota of the day: `GET {zns}/message/quota` answering `data: {dailyQuota,
  remainingQuota}`; the quota is per day and renews at midnight, Vietnam time;
- error codes after -111 (integrators' tables copy Zalo's list): -112 invalid template
  data, -114 a user inactive or refusing ZNS, -115 the ZNS account's balance used up
  ("Out of quota"), -117 no permission for the template, -118 no Zalo account for the
  phone, -119 an account that cannot receive ZNS, -124 an invalid access token, -139 a
  user who refused this kind of ZNS, -144 the OA's daily quota used up; the code sets
  below also read the message's words, in case the numbers differ;
- a consultation message (free within 48 hours of the user's last message to the OA):
  `POST {oa}/v3.0/oa/message/cs` with `{recipient: {user_id}, message: {text}}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

DEFAULT_OAUTH_BASE = "https://oauth.zaloapp.com"
DEFAULT_ZNS_BASE = "https://business.openapi.zalo.me"
DEFAULT_OA_BASE = "https://openapi.zalo.me"
REFRESH_PATH = "/v4/oa/access_token"
TEMPLATE_PATH = "/message/template"
QUOTA_PATH = "/message/quota"
CS_PATH = "/v3.0/oa/message/cs"
MAX_TRACKING_ID = 48
REQUEST_SECONDS = 20.0

# Error codes by what they mean for a notice (see the module's docstring).
TOKEN_CODES = frozenset({-124, -216})
DAILY_QUOTA_CODES = frozenset({-144})
BALANCE_CODES = frozenset({-115})
RECIPIENT_CODES = frozenset({-108, -110, -114, -118, -119, -139, -141})
TEMPORARY_CODES = frozenset({-100})
_QUOTA_WORDS = ("quota", "hạn mức")
_RECIPIENT_WORDS = ("not existed", "can not receive", "cannot receive", "refuse", "inactive")


class ZnsError(Exception):
    """A call to Zalo failed; the message never holds a token or a secret."""


class ZnsNetworkError(ZnsError):
    """No usable answer (refused, broken, timed out, not JSON): Zalo may or may not have acted."""


class ZnsApiError(ZnsError):
    """Zalo answered with an error code."""

    def __init__(self, code: int, message: str, *, status: int = 200) -> None:
        super().__init__(f"{code} {message}".strip())
        self.code = code
        self.message = message
        self.status = status

    @property
    def kind(self) -> str:
        """Return what the error means for the message.

        "token" (the access token is refused: refresh it), "daily_quota" (the OA's quota
        of the day is used up), "balance" (the ZNS account's money is used up),
        "recipient" (this phone cannot get ZNS), "throttled" (HTTP 429), "temporary"
        (worth trying again) or "request" (the template or its data are wrong).
        """
        words = self.message.lower()
        if self.status == 429:
            return "throttled"
        if self.status >= 500 or self.code in TEMPORARY_CODES:
            return "temporary"
        if self.code in TOKEN_CODES or "access token" in words or "access_token" in words:
            return "token"
        if self.code in BALANCE_CODES:
            return "balance"
        if self.code in DAILY_QUOTA_CODES or any(word in words for word in _QUOTA_WORDS):
            return "daily_quota"
        if self.code in RECIPIENT_CODES or any(word in words for word in _RECIPIENT_WORDS):
            return "recipient"
        return "request"


@dataclass(frozen=True)
class TokenPair:
    """What a refresh returns: the new access token, the new refresh token, seconds valid."""

    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class Quota:
    """Zalo's ZNS quota of the day, as last reported (None: not said)."""

    daily: int | None
    remaining: int | None


@dataclass(frozen=True)
class Accepted:
    """A template message Zalo accepted: its id and the quota left after it."""

    msg_id: str
    quota: Quota


def _number(value: Any) -> int | None:
    """Return an integer Zalo wrote as a number or a string of digits, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def quota_of(data: Any) -> Quota:
    """Return the quota in an answer's data ({dailyQuota, remainingQuota})."""
    if not isinstance(data, dict):
        return Quota(None, None)
    return Quota(_number(data.get("dailyQuota")), _number(data.get("remainingQuota")))


class ZnsApi:
    """The OA's app: token refreshes, template messages, the quota, consultation texts."""

    def __init__(
        self,
        app_id: str,
        secret_key: str,
        *,
        oauth_base: str = DEFAULT_OAUTH_BASE,
        zns_base: str = DEFAULT_ZNS_BASE,
        oa_base: str = DEFAULT_OA_BASE,
        request_seconds: float = REQUEST_SECONDS,
    ) -> None:
        self.app_id = app_id
        self._secret_key = secret_key
        self.oauth_base = oauth_base.rstrip("/")
        self.zns_base = zns_base.rstrip("/")
        self.oa_base = oa_base.rstrip("/")
        self.request_seconds = request_seconds
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP connection pool."""
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        """Make one request; return its JSON object, or raise a ZnsError without secrets."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=self.request_seconds)
        try:
            async with self._session.request(method, url, timeout=timeout, **kwargs) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ZnsNetworkError(f"{what}: {type(exc).__name__}") from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            if status >= 400:
                raise ZnsApiError(status, "answer without a JSON body", status=status)
            raise ZnsNetworkError(f"{what}: answer is not JSON (HTTP {status})")
        code = _number(body.get("error"))
        if status >= 400 or (code is not None and code != 0):
            message = body.get("error_description") or body.get("message") or ""
            message = str(message or body.get("error_name") or "")[:300]
            raise ZnsApiError(code if code else status, message, status=status)
        return body

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Trade the refresh token (usable once) for a new access and refresh token."""
        body = await self._request(
            "POST",
            self.oauth_base + REFRESH_PATH,
            "refresh",
            headers={"secret_key": self._secret_key},
            data={
                "app_id": self.app_id,
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
            },
        )
        access, refresh = body.get("access_token"), body.get("refresh_token")
        expires_in = _number(body.get("expires_in"))
        if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
            raise ZnsApiError(-1, "refresh answer without both tokens")
        return TokenPair(access, refresh, expires_in if expires_in else 3600)

    async def send_template(
        self,
        access_token: str,
        *,
        phone: str,
        template_id: str,
        data: dict[str, str],
        tracking_id: str,
    ) -> Accepted:
        """Send a template message to a phone (84…); return its id and the quota left."""
        body = await self._request(
            "POST",
            self.zns_base + TEMPLATE_PATH,
            "template message",
            headers={"access_token": access_token},
            json={
                "phone": phone,
                "template_id": template_id,
                "template_data": data,
                "tracking_id": tracking_id,
            },
        )
        result = body.get("data")
        result = result if isinstance(result, dict) else {}
        return Accepted(str(result.get("msg_id") or ""), quota_of(result.get("quota")))

    async def quota(self, access_token: str) -> Quota:
        """Return the OA's ZNS quota of the day."""
        body = await self._request(
            "GET", self.zns_base + QUOTA_PATH, "quota", headers={"access_token": access_token}
        )
        return quota_of(body.get("data"))

    async def send_text(self, access_token: str, user_id: str, text: str) -> str:
        """Send a consultation text to an OA user who wrote lately; return its message id."""
        body = await self._request(
            "POST",
            self.oa_base + CS_PATH,
            "consultation message",
            headers={"access_token": access_token},
            json={"recipient": {"user_id": user_id}, "message": {"text": text}},
        )
        result = body.get("data")
        return str(result.get("message_id") or "") if isinstance(result, dict) else ""
