"""The ZNS page (admins): spend and Zalo's quota, held notices, the tokens' state, the latest
ZNS notices and OA events, and a form to store a new authorization's refresh token."""

from __future__ import annotations

from aiohttp import web

from bot.web.core import (
    admin_only,
    client_address,
    now_of,
    redirect,
    render,
    sessionmaker_of,
    settings_of,
    viewer_of,
)
from bot.zns_status import zns_status
from db import audit, zns
from db.models import AdminAccount


@admin_only
async def zns_page(request: web.Request) -> web.StreamResponse:
    """Show ZNS's spend, quota, tokens, and its latest notices and events."""
    settings = settings_of(request)
    async with sessionmaker_of(request)() as session:
        state = await zns_status(session, settings, now_of(request))
        notices = await zns.recent_notices(session)
        events = await zns.recent_events(session)
    return render(
        request,
        "zns.html",
        state=state,
        notices=notices,
        events=events,
        configured=settings.zns.app_id is not None,
        done=request.query.get("done"),
        error=request.query.get("error"),
    )


@admin_only
async def zns_token(request: web.Request) -> web.StreamResponse:
    """Store a new authorization's refresh token, check it with Zalo, and log who did it."""
    settings = settings_of(request)
    section = settings.zns
    form = await request.post()
    token = str(form.get("refresh_token", "")).strip()
    if section.app_id is None:
        raise redirect("/zns?error=not_configured")
    if not token or any(char.isspace() for char in token) or len(token) > 4000:
        raise redirect("/zns?error=bad_token")
    now = now_of(request)
    configured = section.refresh_token.get_secret_value() if section.refresh_token else None
    async with sessionmaker_of(request)() as session, session.begin():
        await zns.set_refresh_token(session, section.app_id, token, configured=configured, now=now)
        account = await session.get(AdminAccount, viewer_of(request).account_id)
        assert account is not None
        # The token itself is a secret: the log says that one was stored, never which.
        await audit.record(
            session,
            account,
            "zns.token",
            "zns",
            section.app_id,
            "refresh token",
            now=now,
            client=client_address(request, settings.web.trusted_proxies),
        )
    if not section.enabled:
        raise redirect("/zns?done=token_stored")
    if not await _accepted_by_zalo(request):
        raise redirect("/zns?error=refused")
    raise redirect("/zns?done=token")


async def _accepted_by_zalo(request: web.Request) -> bool:
    """Refresh with the stored token now; return whether Zalo accepted it."""
    from bot.channels.zns import ZnsChannel, api_of
    from bot.channels.zns_tokens import TokenUnavailable

    settings = settings_of(request)
    channel = ZnsChannel(api_of(settings.zns), sessionmaker_of(request), settings)
    await channel.initialize()
    try:
        await channel.tokens.access_token()
    except TokenUnavailable:
        return False
    finally:
        await channel.shutdown()
    return True
