"""Configuration: a TOML file, one pydantic model per section, secrets also from the environment."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError

from db.phone import normalize_phone
from handlers.types import ChatSettings
from handlers.zns_fields import ZNS_KINDS, source_error
from jobs.timing import (
    DEFAULT_ONLINE_LINK,
    DEFAULT_REMINDERS,
    NotifySettings,
    parse_clock,
    parse_offset,
    parse_quiet_hours,
)

ENV_PREFIX = "TRAININGBOT_"
CONFIG_ENV = "TRAININGBOT_CONFIG"
DEFAULT_CONFIG = Path("config.toml")


class ConfigError(Exception):
    """A configuration problem, worded for the person who edits the file."""


def _phone(value: str) -> str:
    normalized = normalize_phone(value)
    if normalized is None:
        raise ValueError(f"{value!r} is not a Vietnamese mobile number (0XXXXXXXXX)")
    return normalized


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    # Secret: a PostgreSQL URL may carry a password, so it is masked in any repr.
    url: SecretStr = SecretStr("sqlite+aiosqlite:///var/trainingbot.db")

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        try:
            make_url(url)
        except (ArgumentError, ValueError):
            # The value is not echoed: it may hold a password.
            raise ValueError(
                "is not a valid URL (expected e.g. postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB)"
            ) from None
        return value


class BotSettings(_Section):
    timezone: str = "Asia/Ho_Chi_Minh"
    default_language: Literal["vi", "en"] = "vi"
    admins: list[Annotated[str, AfterValidator(_phone)]] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            message = f"{value!r} is not a known time zone (e.g. Asia/Ho_Chi_Minh)"
            raise ValueError(message) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """Return the configured time zone."""
        return ZoneInfo(self.timezone)


class RegistrationSettings(_Section):
    # A freed seat is held this long for the next person on the waitlist (never past the
    # class's start; see db.registrations.offer_deadline).
    offer_window_hours: float = Field(default=24, gt=0, le=24 * 14)


_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
# A bot token as @BotFather gives it: the bot's id, a colon, then letters, digits, _ and -.
_BOT_TOKEN = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")


def _host_of(value: str) -> str | None:
    """Return the host of an http(s) URL, or None when it has none (or is not a URL)."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        return None
    if not host or any(char.isspace() for char in value):
        return None
    return host


def _blank_is_none(value: Any) -> Any:
    """Read an empty token (TRAININGBOT_TELEGRAM_TOKEN=) as no token, as leaving it out."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _bot_token(value: SecretStr | None, what: str) -> SecretStr | None:
    """Check a chat platform's bot token: digits, a colon, then letters, digits, _ and -."""
    if value is not None and not _BOT_TOKEN.fullmatch(value.get_secret_value().strip()):
        # The value is not echoed: it is a secret.
        raise ValueError(f"is not {what} (digits, a colon, then letters, digits, _ and -)")
    return None if value is None else SecretStr(value.get_secret_value().strip())


def _api_root(value: str, example: str) -> str:
    """Check a Bot API server's root URL (the bot adds /bot<token>/<method>)."""
    if not value.startswith(("https://", "http://")):
        raise ValueError("must start with https:// (or http:// for a local Bot API server)")
    if _host_of(value) is None:
        raise ValueError(f"must name a host, e.g. {example}")
    value = value.rstrip("/")
    if urlsplit(value).path.rsplit("/", 1)[-1].startswith("bot"):
        raise ValueError(
            "must be the server's root, without /bot… (the bot adds /bot<token>/<method>), "
            f"e.g. {example}"
        )
    return value


def _webhook_url(value: str | None, platform: str, example: str) -> str | None:
    """Check the public https address a platform posts its webhooks to."""
    if value is not None and not value.startswith("https://"):
        raise ValueError(f"must start with https:// ({platform} posts webhooks only over TLS)")
    if value is not None and _host_of(value) is None:
        raise ValueError(f"must name a host, e.g. {example}")
    return value


def _secret(value: SecretStr | None, shape: re.Pattern[str], length: str) -> SecretStr | None:
    """Check a webhook secret's shape without echoing it."""
    if value is not None and not shape.fullmatch(value.get_secret_value()):
        raise ValueError(f"must be {length} characters of A-Z, a-z, 0-9, _ and -")
    return value


def _absolute(value: str) -> str:
    """Check a path served by the webhook server."""
    if not value.startswith("/"):
        raise ValueError("must start with /")
    return value


def _webhook_complete(
    mode: str, url: str | None, secret: SecretStr | None, platform: str, length: str
) -> None:
    """Refuse webhook mode without the public url and the secret."""
    missing = [name for name, value in (("url", url), ("secret_token", secret)) if value is None]
    if mode == "webhook" and missing:
        raise ValueError(
            f'mode = "webhook" needs {" and ".join(missing)} (url: the public https '
            f"address {platform} posts to; secret_token: {length} characters of A-Z, a-z, "
            f"0-9, _ and -, best set in TRAININGBOT_{platform.upper()}_SECRET_TOKEN)"
        )


class TelegramSettings(_Section):
    token: SecretStr | None = None
    # polling: the bot asks Telegram for updates; webhook: Telegram posts them to `url`.
    mode: Literal["polling", "webhook"] = "polling"
    # The Bot API server; the bot calls {base_url}/bot{token}/{method}.
    base_url: str = "https://api.telegram.org"
    # Webhook mode: the public https address Telegram posts to (a reverse proxy's).
    url: str | None = None
    # Webhook mode: Telegram sends it in X-Telegram-Bot-Api-Secret-Token with every post.
    # Left out of repr: the name alone would make a printed config look like it leaks one.
    secret_token: SecretStr | None = Field(default=None, repr=False)
    listen_host: str = "127.0.0.1"
    # 0 picks any free port (tests); a reverse proxy needs a fixed one.
    listen_port: int = Field(default=8080, ge=0, le=65535)
    path: str = "/telegram"
    # Polling mode: how long one getUpdates request waits for an update, in seconds.
    poll_timeout: int = Field(default=30, ge=0, le=60)

    @field_validator("token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: Any) -> Any:
        return _blank_is_none(value)

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return _bot_token(value, "a bot token: @BotFather gives one like 110201543:AAH…")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _api_root(value, "https://api.telegram.org")

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        return _webhook_url(value, "Telegram", "https://bot.example.org/telegram")

    @field_validator("secret_token")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return _secret(value, _SECRET_TOKEN, "1-256")

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        return _absolute(value)

    @model_validator(mode="after")
    def _webhook_needs_url_and_secret(self) -> TelegramSettings:
        _webhook_complete(self.mode, self.url, self.secret_token, "Telegram", "1-256")
        return self


_ZALO_SECRET = re.compile(r"[A-Za-z0-9_-]{8,256}")


class ZaloSettings(_Section):
    token: SecretStr | None = None
    # polling: the bot asks Zalo for updates; webhook: Zalo posts them to `url`.
    mode: Literal["polling", "webhook"] = "polling"
    # The Bot API server; the bot calls {base_url}/bot{token}/{method}. Older SDKs use
    # https://bot-api.zapps.me.
    base_url: str = "https://bot-api.zaloplatforms.com"
    # Webhook mode: the public https address Zalo posts to (a reverse proxy's).
    url: str | None = None
    # Webhook mode: Zalo sends it in X-Bot-Api-Secret-Token with every post.
    secret_token: SecretStr | None = Field(default=None, repr=False)
    # Webhook mode: where the server listens; unset, the [telegram] listen_host and
    # listen_port, so one server answers both paths.
    listen_host: str | None = None
    listen_port: int | None = Field(default=None, ge=0, le=65535)
    path: str = "/zalo"
    # Polling mode: how long one getUpdates request waits for an update, in seconds.
    poll_timeout: int = Field(default=30, ge=1, le=60)
    # Notices per second on Zalo, every process together (Zalo publishes no figure).
    rate_per_second: float = Field(default=5, gt=0, le=100)

    @field_validator("token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: Any) -> Any:
        return _blank_is_none(value)

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return _bot_token(
            value, "a Zalo bot token: Zalo Bot Creator gives one like 1459232241454765289:AbC…"
        )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _api_root(value, "https://bot-api.zaloplatforms.com")

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        return _webhook_url(value, "Zalo", "https://bot.example.org/zalo")

    @field_validator("secret_token")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return _secret(value, _ZALO_SECRET, "8-256")

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        return _absolute(value)

    @model_validator(mode="after")
    def _webhook_needs_url_and_secret(self) -> ZaloSettings:
        _webhook_complete(self.mode, self.url, self.secret_token, "Zalo", "8-256")
        return self


def _checked(parse: Any) -> Any:
    """Return a validator that keeps the text but refuses what `parse` refuses."""

    def check(value: str) -> str:
        parse(value)
        return value

    return AfterValidator(check)


class NotificationSettings(_Section):
    # Local time span in which nothing non-urgent is sent ("" for none).
    quiet_hours: Annotated[str, _checked(parse_quiet_hours)] = "21:00-07:00"
    # Before a class: "Nd HH:MM" (days before the first day, at a time) or "Nh"/"Nm"
    # (before the first session).
    reminders: list[Annotated[str, _checked(parse_offset)]] = Field(
        default_factory=lambda: list(DEFAULT_REMINDERS)
    )
    # Online classes: when their participants get the link, as a reminder offset.
    online_link: Annotated[str, _checked(parse_offset)] = DEFAULT_ONLINE_LINK
    digest_time: Annotated[str, _checked(parse_clock)] = "17:00"
    admin_summary_time: Annotated[str, _checked(parse_clock)] = "07:30"
    pending_alert_hours: float = Field(default=24, gt=0, le=24 * 30)
    deadline_warning_days: int = Field(default=3, ge=0, le=60)
    # The delivery engine: every process together stays under these.
    rate_per_second: float = Field(default=25, gt=0, le=1000)
    per_chat_seconds: float = Field(default=1.0, ge=0, le=3600)
    max_attempts: int = Field(default=5, ge=1, le=100)
    retry_seconds: float = Field(default=5, gt=0, le=3600)
    # How often the scheduler looks for due jobs, in seconds.
    tick_seconds: float = Field(default=15, gt=0, le=3600)


class WebSettings(_Section):
    # The web admin: served by `trainingbot run` (and alone by `trainingbot web`).
    enabled: bool = True
    listen_host: str = "127.0.0.1"
    # 0 picks any free port (tests); a reverse proxy needs a fixed one.
    listen_port: int = Field(default=8090, ge=0, le=65535)
    # The address staff open (the reverse proxy's); https:// makes the session cookie Secure.
    public_url: str | None = None
    # A login lasts this long; then the password is asked again.
    session_hours: float = Field(default=12, gt=0, le=24 * 30)
    # Failed logins before an account is locked, and before a client address is.
    lockout_failures: int = Field(default=5, ge=1, le=1000)
    lockout_address_failures: int = Field(default=20, ge=1, le=10000)
    # How long a lock-out lasts, and the window in which failures are counted.
    lockout_minutes: float = Field(default=15, gt=0, le=24 * 60)
    # Peers whose X-Forwarded-For names the real client (the reverse proxy on this host).
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])
    # The largest roster or class file accepted by the upload page.
    max_upload_mb: float = Field(default=10, gt=0, le=200)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// without TLS)")
        if _host_of(value) is None:
            raise ValueError("must name a host, e.g. https://admin.example.org")
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address") from None
        return value

    @property
    def secure_cookies(self) -> bool:
        """Return whether the admin is served over https, so cookies must be Secure."""
        return (self.public_url or "").startswith("https://")


class BroadcastSettings(_Section):
    # Seconds between two updates of a broadcast's progress message in its author's chat
    # (Telegram edits it; a channel without edits is told at each quarter instead).
    progress_seconds: float = Field(default=5, gt=0, le=3600)


_ZNS_PARAMETER = re.compile(r"[A-Za-z0-9_]{1,64}")


class ZnsTemplate(_Section):
    # The template's id, as Zalo approved it (digits).
    template_id: str
    # Off: notices of this kind do not go by ZNS (people without a chat are not reached).
    enabled: bool = True
    # Template parameter → the notice's value that fills it (handlers/zns_fields.py).
    fields: dict[str, str] = Field(default_factory=dict)
    # Template parameter → its longest value (Zalo refuses longer ones): longer values are cut.
    max_lengths: dict[str, Annotated[int, Field(ge=1, le=2000)]] = Field(default_factory=dict)

    @field_validator("template_id", mode="before")
    @classmethod
    def _digits(cls, value: Any) -> Any:
        # Written as a number or a string in TOML: both are the id.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not re.fullmatch(r"[0-9]{1,32}", value.strip()):
            raise ValueError('must be the template\'s id as Zalo gives it (digits, e.g. "251234")')
        return value.strip()

    @field_validator("fields")
    @classmethod
    def _parameter_names(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError(
                "must map the template's parameters to the notice's values, e.g. "
                '{ ten_lop = "title", ngay = "start" }'
            )
        for name in value:
            if not _ZNS_PARAMETER.fullmatch(name):
                raise ValueError(f"{name!r} is not a template parameter (A-Z, a-z, 0-9 and _)")
        return value

    @model_validator(mode="after")
    def _lengths_of_fields(self) -> ZnsTemplate:
        unknown = sorted(set(self.max_lengths) - set(self.fields))
        if unknown:
            raise ValueError(f"max_lengths names {', '.join(unknown)}, which fields does not")
        return self


def _zns_template_of(kind: str) -> Any:
    """Return a validator that the sources of a kind's template are values of its notices."""

    def check(template: ZnsTemplate | None) -> ZnsTemplate | None:
        if template is None:
            return None
        for parameter, source in template.fields.items():
            problem = source_error(ZNS_KINDS[kind], source)
            if problem is not None:
                raise ValueError(f"fields: {parameter} = {problem}")
        return template

    return AfterValidator(check)


class ZnsTemplates(_Section):
    """One template per kind of notice that may go by ZNS (handlers/zns_fields.py)."""

    reminder: Annotated[ZnsTemplate | None, _zns_template_of("reminder")] = None
    online_link: Annotated[ZnsTemplate | None, _zns_template_of("online_link")] = None
    change: Annotated[ZnsTemplate | None, _zns_template_of("change")] = None
    deadline_warning: Annotated[ZnsTemplate | None, _zns_template_of("deadline_warning")] = None
    broadcast: Annotated[ZnsTemplate | None, _zns_template_of("broadcast")] = None
    nomination: Annotated[ZnsTemplate | None, _zns_template_of("nomination")] = None
    decision: Annotated[ZnsTemplate | None, _zns_template_of("decision")] = None
    offer: Annotated[ZnsTemplate | None, _zns_template_of("offer")] = None

    def by_kind(self) -> dict[str, ZnsTemplate]:
        """Return the configured templates that are on, by kind name."""
        return {
            name: template
            for name in ZNS_KINDS
            if (template := getattr(self, name)) is not None and template.enabled
        }


def _base_url(example: str) -> Any:
    def check(value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local test server)")
        if _host_of(value) is None:
            raise ValueError(f"must name a host, e.g. {example}")
        return value.rstrip("/")

    return AfterValidator(check)


class ZnsSettings(_Section):
    # Zalo Official Account + ZNS template messages: notices by phone number to people
    # without a chat with the bot.
    enabled: bool = False
    # The Zalo app linked to the OA (developers.zalo.me), and its secret key (refreshing).
    app_id: str | None = None
    secret_key: SecretStr | None = Field(default=None, repr=False)
    # The OA secret key (not the app's): webhook posts are signed with it.
    oa_secret_key: SecretStr | None = Field(default=None, repr=False)
    # The first refresh token (from authorizing the app for the OA). It is used once and
    # replaced; the database keeps the current one. Another value here is a new
    # authorization and replaces the stored tokens.
    refresh_token: SecretStr | None = Field(default=None, repr=False)
    oauth_base_url: Annotated[str, _base_url("https://oauth.zaloapp.com")] = (
        "https://oauth.zaloapp.com"
    )
    zns_base_url: Annotated[str, _base_url("https://business.openapi.zalo.me")] = (
        "https://business.openapi.zalo.me"
    )
    oa_base_url: Annotated[str, _base_url("https://openapi.zalo.me")] = "https://openapi.zalo.me"
    # The access token is refreshed this long before it expires; if a refresh fails, it
    # still works that long while an admin authorizes the app again.
    refresh_margin_minutes: float = Field(default=180, ge=1, le=20 * 60)
    # ZNS messages per second, every process together.
    rate_per_second: float = Field(default=5, gt=0, le=100)
    # The school's own cap on ZNS messages a day (they are paid); 0: none but Zalo's quota.
    daily_limit: int = Field(default=0, ge=0, le=10_000_000)
    # ZNS messages of Zalo's daily quota kept for urgent notices (a class moved or
    # cancelled): other notices stop when this many are left.
    quota_reserve: int = Field(default=10, ge=0, le=1_000_000)
    # The language the templates were approved in.
    language: Literal["vi", "en"] = "vi"
    # The OA's webhook (receipts, messages to the OA, follows), served by `trainingbot run`.
    webhook_path: str = "/zalo-oa"
    listen_host: str | None = None
    listen_port: int | None = Field(default=None, ge=0, le=65535)
    # How X-ZEvent-Signature is computed (sources disagree; see bot/channels/zns_webhook.py).
    signature: Literal["sha256", "sha256_header_timestamp", "hmac_sha256"] = "sha256"
    # Answer a text written to the OA with a pointer to the bot (a free consultation message).
    reply_to_messages: bool = True
    # Where people find the bot, for that answer (e.g. https://zalo.me/…, https://t.me/…).
    bot_links: list[str] = Field(default_factory=list)
    templates: ZnsTemplates = ZnsTemplates()

    @field_validator("app_id", mode="before")
    @classmethod
    def _app_id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not value.strip():
            return None
        if value is not None and not (isinstance(value, str) and value.strip().isdigit()):
            raise ValueError("must be the app's id from developers.zalo.me (digits)")
        return value.strip() if isinstance(value, str) else value

    @field_validator("secret_key", "oa_secret_key", "refresh_token", mode="before")
    @classmethod
    def _blank_secret_is_none(cls, value: Any) -> Any:
        return _blank_is_none(value)

    @field_validator("webhook_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        value = _absolute(value)
        if value == "/healthz":
            raise ValueError("/healthz is the health check's path")
        return value

    @field_validator("bot_links")
    @classmethod
    def _links(cls, value: list[str]) -> list[str]:
        for link in value:
            if not link.startswith("https://") or _host_of(link) is None:
                raise ValueError(f"{link!r} is not an https:// address")
        return value

    @model_validator(mode="after")
    def _enabled_needs_credentials(self) -> ZnsSettings:
        if self.enabled:
            missing = [
                name
                for name in ("app_id", "secret_key", "oa_secret_key")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"enabled = true needs {', '.join(missing)} (from developers.zalo.me and the "
                    "OA's settings; keep the keys in TRAININGBOT_ZNS_SECRET_KEY and "
                    "TRAININGBOT_ZNS_OA_SECRET_KEY)"
                )
        return self

    @property
    def kinds(self) -> frozenset[str]:
        """Return the outbox kinds that may go by ZNS: those of a template that is on."""
        if not self.enabled:
            return frozenset()
        return frozenset(
            outbox_kind
            for name in self.templates.by_kind()
            for outbox_kind in ZNS_KINDS[name].outbox_kinds
        )


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    bot: BotSettings = BotSettings()
    registration: RegistrationSettings = RegistrationSettings()
    telegram: TelegramSettings = TelegramSettings()
    notifications: NotificationSettings = NotificationSettings()
    zalo: ZaloSettings = ZaloSettings()
    web: WebSettings = WebSettings()
    broadcast: BroadcastSettings = BroadcastSettings()
    zns: ZnsSettings = ZnsSettings()

    @model_validator(mode="after")
    def _one_path_per_webhook(self) -> Settings:
        # Both webhooks on one listening address are served by one server (with its
        # /healthz): their paths must differ.
        zalo, telegram = self.zalo, self.telegram
        if zalo.path == "/healthz":
            raise ValueError("[zalo] path: /healthz is the health check's path")
        both = zalo.token is not None and telegram.token is not None
        webhooks = zalo.mode == telegram.mode == "webhook"
        same_address = self.zalo_listen == (telegram.listen_host, telegram.listen_port)
        if both and webhooks and same_address and zalo.path == telegram.path:
            raise ValueError(
                f"[zalo] path: {zalo.path} is also [telegram] path on the same listening "
                "address; give each webhook its own path"
            )
        return self

    @model_validator(mode="after")
    def _zns_webhook_path(self) -> Settings:
        # The OA's webhook shares a listening address with the chat webhooks unless told
        # otherwise: its path must be its own.
        zns = self.zns
        if not zns.enabled:
            return self
        telegram, zalo = self.telegram, self.zalo
        taken: dict[tuple[str, int], list[str]] = {}
        if telegram.token is not None and telegram.mode == "webhook":
            taken.setdefault((telegram.listen_host, telegram.listen_port), []).append(telegram.path)
        if zalo.token is not None and zalo.mode == "webhook":
            taken.setdefault(self.zalo_listen, []).append(zalo.path)
        if zns.webhook_path in taken.get(self.zns_listen, []):
            raise ValueError(
                f"[zns] webhook_path: {zns.webhook_path} is also a chat webhook's path on the "
                "same listening address; give the OA's webhook its own path"
            )
        return self

    @property
    def zns_listen(self) -> tuple[str, int]:
        """Return the address the OA's webhook is served on ([telegram]'s when unset)."""
        zns, telegram = self.zns, self.telegram
        host = zns.listen_host or telegram.listen_host
        port = zns.listen_port if zns.listen_port is not None else telegram.listen_port
        return host, port

    @property
    def zalo_listen(self) -> tuple[str, int]:
        """Return the address Zalo's webhook is served on ([telegram]'s when unset)."""
        zalo, telegram = self.zalo, self.telegram
        host = zalo.listen_host or telegram.listen_host
        port = zalo.listen_port if zalo.listen_port is not None else telegram.listen_port
        return host, port

    @property
    def notify(self) -> NotifySettings:
        """Return what the notification jobs need of these settings."""
        section = self.notifications
        return NotifySettings(
            chat=self.chat,
            quiet_hours=parse_quiet_hours(section.quiet_hours),
            reminders=tuple(parse_offset(text) for text in section.reminders),
            online_link=parse_offset(section.online_link),
            digest_at=parse_clock(section.digest_time),
            admin_summary_at=parse_clock(section.admin_summary_time),
            pending_alert_after=dt.timedelta(hours=section.pending_alert_hours),
            deadline_warning_days=section.deadline_warning_days,
        )

    @property
    def chat(self) -> ChatSettings:
        """Return what the conversation flows need of these settings."""
        return ChatSettings(
            zone=self.bot.zone,
            default_language=self.bot.default_language,
            admins=tuple(self.bot.admins),
            offer_window=dt.timedelta(hours=self.registration.offer_window_hours),
            zns_kinds=self.zns.kinds,
        )


def env_name(section: str, key: str) -> str:
    """Return the environment variable that overrides `[section] key`."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for section_name, field in Settings.model_fields.items():
        section_model = field.annotation
        assert isinstance(section_model, type)
        assert issubclass(section_model, BaseModel)
        for key, key_field in section_model.model_fields.items():
            value = environ.get(env_name(section_name, key))
            if value is None:
                continue
            is_list = getattr(key_field.annotation, "__origin__", None) is list
            overrides.setdefault(section_name, {})[key] = (
                [item.strip() for item in value.split(",") if item.strip()] if is_list else value
            )
    return overrides


_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_\-.\" ]+?)\s*\]")
_KEY = re.compile(r"^\s*\"?([A-Za-z0-9_\-]+)\"?\s*=")


def _table_name(header: str) -> str:
    """Return a table header's dotted name without quotes and spaces: zns.templates.change."""
    return ".".join(part.strip().strip('"') for part in header.split("."))


def _locate(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Return the 1-based line where the key at `loc` is written, or None.

    `[zns.templates.change] fields` is found in its own table, and a key of an inline
    table (`fields = { … }`) at the line of the table's key.
    """
    names = [str(part) for part in loc]
    lines = text.splitlines()
    for end in range(len(names) - 1, -1, -1):
        table, key = ".".join(names[:end]), names[end]
        section: str | None = None
        for number, line in enumerate(lines, start=1):
            if header := _TABLE.match(line):
                section = _table_name(header.group(1))
                if section == ".".join(names[: end + 1]):
                    return number
            elif (found := _KEY.match(line)) and section == table and found.group(1) == key:
                return number
    return None


def _describe(error: Mapping[str, Any], source: str, text: str, environ_keys: set[str]) -> str:
    # A list's index (the 2nd admin) is not a key: the list is named.
    loc = tuple(part for part in error["loc"] if isinstance(part, str))
    if not loc:  # a rule across sections: the message names its keys
        return f"{source}: {str(error['msg']).removeprefix('Value error, ')}"
    where = f"[{loc[0]}]" if len(loc) == 1 else f"[{'.'.join(map(str, loc[:-1]))}] {loc[-1]}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key" if len(loc) > 1 else "unknown section"
        valid = _valid_keys(loc[:-1])
        if valid:
            message += f" (expected one of: {', '.join(valid)})"
    if len(loc) >= 2 and env_name(str(loc[0]), str(loc[1])) in environ_keys:
        return f"{env_name(str(loc[0]), str(loc[1]))}: {where}: {message}"
    line = _locate(text, loc)
    return f"{source}{f' line {line}' if line else ''}: {where}: {message}"


def _valid_keys(loc: tuple[str | int, ...]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in loc:
        field = model.model_fields.get(str(part))
        # An optional table (`ZnsTemplate | None`) is the model it holds.
        candidates = get_args(field.annotation) or (field.annotation,) if field else ()
        found = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not found:
            return []
        model = found[0]
    return sorted(model.model_fields)


def resolve_config_path(cli_path: str | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """Return the config file to read and whether the user named it explicitly."""
    if cli_path:
        return Path(cli_path), True
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]), True
    return DEFAULT_CONFIG, False


def load_settings(
    cli_path: str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read settings from the chosen TOML file and the environment, or raise ConfigError.

    A file named with --config or TRAININGBOT_CONFIG must exist; an absent ./config.toml
    means built-in defaults.
    """
    environ = os.environ if environ is None else environ
    path, explicit = resolve_config_path(cli_path, environ)
    text = ""
    data: dict[str, Any] = {}
    if path.exists():
        try:
            # utf-8-sig: Windows Notepad saves a BOM that TOML does not allow.
            text = path.read_text(encoding="utf-8-sig")
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read: {exc}") from None
    elif explicit:
        raise ConfigError(f"{path}: config file not found (copy config.example.toml to start one)")
    for section, values in _env_overrides(environ).items():
        target = data.setdefault(section, {})
        if isinstance(target, dict):
            target.update(values)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        environ_keys = {key for key in environ if key.startswith(ENV_PREFIX)}
        lines = [_describe(error, str(path), text, environ_keys) for error in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
