"""Drive the web admin over real HTTP (aiohttp's test server on 127.0.0.1), as a browser would.

`Visitor` keeps cookies, reads each form's CSRF token from the page it came from and
posts it back, so tests exercise the same checks a browser meets.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aiohttp import ClientResponse, ClientSession, CookieJar
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from bot.config import NotificationSettings, Settings, WebSettings
from bot.web.app import build_admin_app
from bot.web.core import Probe
from bot.web.passwords import hash_password
from db import accounts
from db.models import AccountRole, AdminAccount, Person

PASSWORD = "correct horse battery staple"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"')


@cache
def password_hash(password: str = PASSWORD) -> str:
    """Return an argon2id hash of `password`, computed once per run (it is slow on purpose)."""
    return hash_password(password)


async def add_account(
    session: AsyncSession,
    username: str,
    role: AccountRole = AccountRole.ADMIN,
    person: Person | None = None,
    password: str = PASSWORD,
) -> AdminAccount:
    """Add a web admin account."""
    return await accounts.add_account(session, username, password_hash(password), role, person)


@dataclass
class Clock:
    """A clock the tests move by hand."""

    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move the clock on."""
        self.now += dt.timedelta(**delta)


def web_settings(**web: Any) -> Settings:
    """Return settings for the admin under test (no quiet hours, as every test's)."""
    return Settings(notifications=NotificationSettings(quiet_hours=""), web=WebSettings(**web))


@dataclass
class Visitor:
    """One browser: its own cookies, and the CSRF token of the last page it loaded."""

    http: ClientSession
    token: str = ""
    last_text: str = ""

    @property
    def cookies(self) -> dict[str, str]:
        """Return the cookies this browser would send to the site, by name."""
        found = self.http.cookie_jar.filter_cookies(URL(str(self.http._base_url)))
        return {name: morsel.value for name, morsel in found.items()}

    async def get(self, path: str, **kwargs: Any) -> ClientResponse:
        """GET a page without following redirects; keep its form token."""
        response = await self.http.get(path, allow_redirects=False, **kwargs)
        # A download (XLSX) is not text: kept readable with response.read().
        self.last_text = (await response.read()).decode("utf-8", "replace")
        found = _TOKEN.search(self.last_text)
        if found:
            self.token = html.unescape(found.group(1))
        return response

    async def page(self, path: str) -> str:
        """GET a page that must answer 200; return its HTML."""
        response = await self.get(path)
        assert response.status == 200, (path, response.status, self.last_text[:500])
        return self.last_text

    async def post(
        self, path: str, data: dict[str, Any] | None = None, *, token: str | None = None, **kw: Any
    ) -> ClientResponse:
        """POST a form with the last page's token (or `token`), without following redirects."""
        form = dict(data or {})
        form.setdefault("csrf_token", self.token if token is None else token)
        response = await self.http.post(path, data=form, allow_redirects=False, **kw)
        self.last_text = await response.text()
        return response

    async def login(self, username: str, password: str = PASSWORD, **kw: Any) -> ClientResponse:
        """Log in through the login form."""
        await self.get("/login")
        return await self.post("/login", {"username": username, "password": password}, **kw)

    async def logged_in(self, username: str) -> Visitor:
        """Log in and check it worked."""
        response = await self.login(username)
        assert response.status == 303, self.last_text[:500]
        await self.page("/classes")
        return self


@dataclass
class Site:
    """The admin served for a test: a raw client (no form tokens) and browsers to open."""

    client: TestClient[Any, Any]
    browsers: list[ClientSession] = field(default_factory=list)

    def visitor(self) -> Visitor:
        """Return a new browser with its own cookies."""
        http = ClientSession(
            base_url=str(self.client.make_url("/")), cookie_jar=CookieJar(unsafe=True)
        )
        self.browsers.append(http)
        return Visitor(http)


@asynccontextmanager
async def admin_site(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings | None = None,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    probes: list[Probe] | None = None,
) -> AsyncIterator[Site]:
    """Serve the web admin over HTTP on 127.0.0.1 for the test."""
    app = build_admin_app(
        sessionmaker,
        settings or web_settings(),
        probes or [],
        **({"clock": clock} if clock else {}),
    )
    async with TestClient(TestServer(app)) as client:
        site = Site(client)
        try:
            yield site
        finally:
            for browser in site.browsers:
                await browser.close()


def visible_text(page: str) -> str:
    """Return a page's text without tags, whitespace collapsed (for asserting on words)."""
    without_tags = re.sub(r"<[^>]+>", " ", page)
    return re.sub(r"\s+", " ", html.unescape(without_tags)).strip()
