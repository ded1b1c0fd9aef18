"""What every page shares: the app's keys, who is asking (the viewer), rendering, redirects."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol
from urllib.parse import urlencode

import jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.web.i18n import LANGUAGES, date_text, moment_text, text
from db.models import AccountRole, Person

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Probe(Protocol):
    """A configured chat channel, asked by /healthz whether its platform answers."""

    @property
    def channel(self) -> str:
        """Return the channel's name."""
        ...

    async def probe(self) -> Mapping[str, object] | None:
        """Return if the platform answers, with facts to show if any; raise otherwise."""
        ...


class ProbeFailed(Exception):
    """A probe's channel cannot work now: `state` says why, `facts` what it found."""

    def __init__(self, state: str, facts: Mapping[str, object]) -> None:
        super().__init__(state)
        self.state = state
        self.facts = facts


SESSIONMAKER = web.AppKey("sessionmaker", async_sessionmaker[AsyncSession])
SETTINGS = web.AppKey("settings", Settings)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
PROBES = web.AppKey("probes", list[Probe])
Clock = Callable[[], dt.datetime]
CLOCK: web.AppKey[Clock] = web.AppKey("clock")

LOGIN_CSRF: web.RequestKey[str] = web.RequestKey("login_csrf")

SESSION_COOKIE = "tb_session"
# Behind TLS the cookie is __Host-: the browser then keeps it Secure, on this host and /.
SECURE_SESSION_COOKIE = "__Host-tb_session"
LOGIN_CSRF_COOKIE = "tb_login_csrf"
LANGUAGE_COOKIE = "tb_lang"
PAGE_SIZE = 50


@dataclass(frozen=True)
class Viewer:
    """The logged-in account asking: what it may see (scope) and its form token."""

    account_id: int
    username: str
    role: AccountRole
    # The roster person the account acts as (a unit head's; optional for admins).
    person: Person | None
    # Unit ids the account sees and acts on; None: every unit (admins).
    scope: set[int] | None
    csrf_token: str
    session_token: str

    @property
    def is_admin(self) -> bool:
        """Return whether the account is the school's admin (sees and does everything)."""
        return self.role == AccountRole.ADMIN

    def covers(self, unit_id: int) -> bool:
        """Return whether the unit is within the account's scope."""
        return self.scope is None or unit_id in self.scope


VIEWER: web.RequestKey[Viewer] = web.RequestKey("viewer")


def public(handler: Handler) -> Handler:
    """Mark a page that needs no login (login, health, metrics, styles)."""
    handler.access = "public"  # type: ignore[attr-defined]
    return handler


def admin_only(handler: Handler) -> Handler:
    """Mark a page or action for admin accounts only (not unit heads)."""
    handler.access = "admin"  # type: ignore[attr-defined]
    return handler


def access_of(handler: object) -> str:
    """Return who may use a handler: "public", "admin" or "login" (any account)."""
    return str(getattr(handler, "access", "login"))


def viewer_of(request: web.Request) -> Viewer:
    """Return the logged-in account of a request that the login check let through."""
    return request[VIEWER]


def sessionmaker_of(request: web.Request) -> async_sessionmaker[AsyncSession]:
    """Return the database's session factory."""
    return request.app[SESSIONMAKER]


def settings_of(request: web.Request) -> Settings:
    """Return the service's settings."""
    return request.app[SETTINGS]


def now_of(request: web.Request) -> dt.datetime:
    """Return the current time (the app's clock, replaceable in tests)."""
    clock: Clock = request.app[CLOCK]
    return clock()


def language_of(request: web.Request) -> str:
    """Return the language of the pages: the visitor's choice, else the configured default."""
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return str(chosen)
    return settings_of(request).bot.default_language


def tr(request: web.Request, key: str, **params: Any) -> str:
    """Return a web text in the request's language."""
    return text(language_of(request), key, **params)


def client_address(request: web.Request, trusted: Sequence[str]) -> str:
    """Return the client's address; X-Forwarded-For counts only from trusted proxies.

    The header is read from the right, past every trusted proxy, so a client cannot pass
    an address of its choosing by sending the header itself.
    """
    peer = request.remote or ""
    trusted_addresses = {ipaddress.ip_address(address) for address in trusted}

    def is_trusted(address: str) -> bool:
        try:
            return ipaddress.ip_address(address) in trusted_addresses
        except ValueError:
            return False

    if not is_trusted(peer):
        return peer
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
    for address in reversed([part for part in forwarded if part]):
        if not is_trusted(address):
            try:
                return str(ipaddress.ip_address(address))
            except ValueError:
                return peer
    return peer


def local_path(target: str | None, default: str = "/") -> str:
    """Return `target` if it is a path on this site (no other host), else `default`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def redirect(location: str) -> web.HTTPSeeOther:
    """Return a 303 redirect (after a POST, the browser GETs the new page)."""
    return web.HTTPSeeOther(location)


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """Render a page in the request's language; every value is HTML-escaped."""
    language = language_of(request)
    settings = settings_of(request)
    zone = settings.bot.zone
    viewer = request.get(VIEWER)
    page = request.app[TEMPLATES].get_template(template)
    body = page.render(
        _=partial(text, language),
        lang=language,
        viewer=viewer,
        csrf_token=viewer.csrf_token if viewer else request.get(LOGIN_CSRF, ""),
        date=partial(date_text, language=language),
        moment=partial(moment_text, language=language, zone=zone),
        path=request.path_qs,
        query_string=partial(_page_query, request),
        **context,
    )
    return web.Response(text=body, content_type="text/html", charset="utf-8", status=status)


def _page_query(request: web.Request, page: int) -> str:
    """Return the request's query string with another page number."""
    return urlencode({**request.query, "page": str(page)})


def not_found(request: web.Request) -> web.HTTPNotFound:
    """Return the 404 page: something is gone, or not the account's to see."""
    response = render(request, "error.html", status=404, message=tr(request, "error.not_found"))
    return web.HTTPNotFound(text=response.text, content_type="text/html")


def int_param(value: str | None, default: int = 0) -> int:
    """Return a non-negative integer from a query or form value, else `default`."""
    if value is None or not value.strip().isdigit():
        return default
    return int(value.strip()[:12])
