"""Logging in and out, the session cookie, CSRF tokens and the lock-out of repeated failures.

Every request passes `guard`: public pages go through; any other needs a live session
(else a GET is sent to the login page and a POST refused), admin pages need an admin
account, and every POST must carry the form token of its session (the login form: the
token of its own cookie). Pages get `request["viewer"]`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
from urllib.parse import quote

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from bot.web.core import (
    LANGUAGE_COOKIE,
    LOGIN_CSRF,
    LOGIN_CSRF_COOKIE,
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    VIEWER,
    Handler,
    Viewer,
    access_of,
    client_address,
    language_of,
    local_path,
    now_of,
    public,
    redirect,
    render,
    sessionmaker_of,
    settings_of,
    tr,
    viewer_of,
)
from bot.web.i18n import LANGUAGES, moment_text
from bot.web.passwords import verify_in_thread
from db import accounts, audit
from db.models import AccountRole, AdminAccount
from db.registrations import units_under

log = logging.getLogger(__name__)

# Sent with every answer: no framing, no sniffing, no scripts, forms only to this site.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def session_cookie_name(request: web.Request) -> str:
    """Return the session cookie's name: __Host- prefixed when served over https."""
    return SECURE_SESSION_COOKIE if settings_of(request).web.secure_cookies else SESSION_COOKIE


def set_cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int
) -> None:
    """Set a cookie that scripts cannot read, sent only by this site's own pages."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=settings_of(request).web.secure_cookies,
    )


async def scope_of(session: AsyncSession, account: AdminAccount) -> set[int] | None:
    """Return the unit ids an account sees: None for admins, a unit head's units, else none.

    A unit head's scope is their roster unit and the units under it, read again on every
    request, so a roster import that moves or demotes them takes effect at once.
    """
    if account.role == AccountRole.ADMIN:
        return None
    person = account.person
    if person is None or not person.is_unit_head:
        return set()
    return await units_under(session, person.unit_id)


async def _viewer(request: web.Request) -> Viewer | None:
    token = request.cookies.get(session_cookie_name(request))
    if not token:
        return None
    async with sessionmaker_of(request)() as session, session.begin():
        found = await accounts.session_of(session, token, now_of(request))
        if found is None:
            return None
        account = found.account
        return Viewer(
            account_id=account.id,
            username=account.username,
            role=account.role,
            person=account.person,
            scope=await scope_of(session, account),
            csrf_token=found.csrf_token,
            session_token=token,
        )


def _forbidden(request: web.Request, key: str) -> web.Response:
    return render(request, "error.html", status=403, message=tr(request, key))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let a request through only with the login, role and form token it needs."""
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    if "Cache-Control" not in response.headers:
        # Pages show personal data: no copy stays in shared caches or the back button.
        response.headers["Cache-Control"] = "no-store"
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await _checked(request, handler)
    except web.HTTPRequestEntityTooLarge:
        mb = settings_of(request).web.max_upload_mb
        message = tr(request, "error.too_large", mb=f"{mb:g}")
        return render(request, "error.html", status=413, message=message)


async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    access = access_of(request.match_info.handler)
    if access == "public":
        if request.method == "POST" and not await _login_token_ok(request):
            return _forbidden(request, "error.csrf")
        return await handler(request)
    viewer = await _viewer(request)
    if viewer is None:
        if request.method in ("GET", "HEAD"):
            raise redirect(f"/login?next={quote(request.path_qs, safe='')}")
        return _forbidden(request, "error.login_needed")
    request[VIEWER] = viewer
    if request.method == "POST":
        form = await request.post()
        given = str(form.get("csrf_token", ""))
        if not hmac.compare_digest(given.encode(), viewer.csrf_token.encode()):
            return _forbidden(request, "error.csrf")
    if access == "admin" and not viewer.is_admin:
        return _forbidden(request, "error.admins_only")
    return await handler(request)


async def _login_token_ok(request: web.Request) -> bool:
    """Return whether a public form's token matches its cookie (double submit)."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    form = await request.post()
    given = str(form.get("csrf_token", ""))
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _login_page(
    request: web.Request, *, error: str | None = None, username: str = "", status: int = 200
) -> web.Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    request[LOGIN_CSRF] = token
    response = render(
        request,
        "login.html",
        status=status,
        error=error,
        username=username,
        next=local_path(request.query.get("next")),
    )
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=24 * 3600)
    return response


@public
async def login_form(request: web.Request) -> web.StreamResponse:
    """Show the login form (or go on to the admin when already logged in)."""
    if await _viewer(request) is not None:
        raise redirect(local_path(request.query.get("next")))
    return _login_page(request)


@public
async def login(request: web.Request) -> web.StreamResponse:
    """Check a username and password; open a session, or count the failure."""
    form = await request.post()
    username = accounts.normalize_username(str(form.get("username", "")))[:64]
    password = str(form.get("password", ""))
    settings = settings_of(request).web
    address = client_address(request, settings.trusted_proxies)
    keys = [accounts.throttle_key("account", username), accounts.throttle_key("address", address)]
    now = now_of(request)
    async with sessionmaker_of(request)() as session, session.begin():
        locked = await accounts.locked_until(session, keys, now)
        account = await accounts.account_by_name(session, username) if username else None
    if locked is not None:
        return _locked_page(request, username, locked)
    usable = account is not None and account.active
    matches = await verify_in_thread(
        account.password_hash if usable and account else None, password
    )
    window = dt.timedelta(minutes=settings.lockout_minutes)
    async with sessionmaker_of(request)() as session, session.begin():
        if not (matches and usable and account is not None):
            locks = [
                await accounts.record_failure(
                    session, keys[0], settings.lockout_failures, now, window
                ),
                await accounts.record_failure(
                    session, keys[1], settings.lockout_address_failures, now, window
                ),
            ]
            locked = max((lock for lock in locks if lock is not None), default=None)
        else:
            await accounts.clear_failures(session, keys[0])
            account = await session.merge(account)
            opened = await accounts.open_session(
                session, account, now, dt.timedelta(hours=settings.session_hours)
            )
            await audit.record(
                session,
                account,
                "login",
                "account",
                account.id,
                account.username,
                now=now,
                client=address,
            )
    if not (matches and usable):
        log.info("web admin: failed login (account key %s)", "known" if account else "unknown")
        if locked is not None:
            return _locked_page(request, username, locked)
        return _login_page(
            request, error=tr(request, "login.failed"), username=username, status=401
        )
    response = redirect(local_path(str(form.get("next", "")) or None))
    set_cookie(
        request,
        response,
        session_cookie_name(request),
        opened.token,
        max_age=int(settings.session_hours * 3600),
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/")
    raise response


def _locked_page(request: web.Request, username: str, until: dt.datetime) -> web.Response:
    zone = settings_of(request).bot.zone
    message = tr(request, "login.locked", until=moment_text(until, language_of(request), zone))
    return _login_page(request, error=message, username=username, status=429)


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session and go back to the login page."""
    viewer = viewer_of(request)
    async with sessionmaker_of(request)() as session, session.begin():
        await accounts.close_session(session, viewer.session_token)
    response = redirect("/login")
    response.del_cookie(session_cookie_name(request), path="/")
    raise response


@public
async def choose_language(request: web.Request) -> web.StreamResponse:
    """Switch the pages' language (a cookie) and go back where the visitor was."""
    language = request.match_info["language"]
    response = redirect(local_path(request.query.get("next")))
    if language in LANGUAGES:
        response.set_cookie(
            LANGUAGE_COOKIE,
            language,
            max_age=365 * 24 * 3600,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=settings_of(request).web.secure_cookies,
        )
    raise response
