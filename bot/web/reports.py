"""What the staff watch: notices that could not be delivered, and the audit log."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from bot.web.core import (
    PAGE_SIZE,
    admin_only,
    int_param,
    render,
    sessionmaker_of,
    settings_of,
)
from db import admin_views, audit
from db.roster import parse_date


@admin_only
async def failures(request: web.Request) -> web.StreamResponse:
    """List failed notices by reason and one by one, latest first."""
    page = max(1, int_param(request.query.get("page"), 1))
    reason = request.query.get("reason")
    async with sessionmaker_of(request)() as session:
        reasons = await admin_views.failure_reasons(session)
        found, total = await admin_views.failures(
            session, reason=reason, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
    return render(
        request,
        "failures.html",
        reasons=reasons,
        failures=found,
        total=total,
        reason=reason,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
    )


def _day(text: str) -> dt.date | None:
    try:
        return parse_date("date", text.strip()) if text.strip() else None
    except ValueError:
        return None


@admin_only
async def audit_log(request: web.Request) -> web.StreamResponse:
    """Show the audit log, newest first, filtered by account, action, target and dates."""
    zone = settings_of(request).bot.zone
    page = max(1, int_param(request.query.get("page"), 1))
    since_day = _day(request.query.get("from", ""))
    until_day = _day(request.query.get("to", ""))
    filters = audit.AuditFilter(
        username=request.query.get("user", "")[:64],
        action=request.query.get("action", "")[:64],
        text=request.query.get("q", "")[:100],
        since=dt.datetime.combine(since_day, dt.time(), zone) if since_day else None,
        until=(
            dt.datetime.combine(until_day + dt.timedelta(days=1), dt.time(), zone)
            if until_day
            else None
        ),
    )
    async with sessionmaker_of(request)() as session:
        entries, total = await audit.entries(
            session, filters, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
        actions = await audit.actions(session)
        usernames = await audit.usernames(session)
    return render(
        request,
        "audit.html",
        entries=entries,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        filters=filters,
        since=since_day.isoformat() if since_day else "",
        until=until_day.isoformat() if until_day else "",
        actions=actions,
        usernames=usernames,
    )
