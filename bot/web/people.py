"""Units against their quotas, and people with their link status (one person: their page)."""

from __future__ import annotations

from aiohttp import web

from bot.web.classes import today_of
from bot.web.core import (
    PAGE_SIZE,
    int_param,
    not_found,
    now_of,
    render,
    sessionmaker_of,
    viewer_of,
)
from db import admin_views, link_codes, units
from db.catalog import ClassRepo
from db.link_codes import IssuedCode
from db.models import Unit
from db.registrations import units_under
from handlers.link_codes import CODE_CHANNEL


async def unit_list(request: web.Request) -> web.StreamResponse:
    """List the units the account sees, with how many people each has."""
    viewer = viewer_of(request)
    async with sessionmaker_of(request)() as session:
        found = await admin_views.units_in(session, viewer.scope)
        people = await admin_views.people_per_unit(session, [unit.id for unit in found])
    return render(request, "units.html", units=found, people=people)


async def unit_detail(request: web.Request) -> web.StreamResponse:
    """Show a unit's upcoming classes: its registrations against the quota that binds it.

    The binding quota is the unit's own, else the nearest one above it, as the seat rules
    count it; registrations are those of the unit and the units under it.
    """
    viewer = viewer_of(request)
    unit_id = int_param(request.match_info["unit_id"], -1)
    today = today_of(request)
    async with sessionmaker_of(request)() as session:
        unit = await session.get(Unit, unit_id)
        if unit is None or not viewer.covers(unit_id):
            raise not_found(request)
        scope = await units_under(session, unit_id)
        above = await units.ancestors(session, unit_id)
        classes = await units.classes(session, scope, today, above=above, limit=200)
        ids = [c.id for c in classes]
        counts = await units.counts(session, scope, ids)
        binding = await ClassRepo(session).quota_use(unit_id, ids)
    return render(
        request, "unit_detail.html", unit=unit, classes=classes, counts=counts, binding=binding
    )


async def people_list(request: web.Request) -> web.StreamResponse:
    """List people by name or phone, with their unit and whether the bot can reach them."""
    viewer = viewer_of(request)
    page = max(1, int_param(request.query.get("page"), 1))
    text = request.query.get("q", "")[:100]
    link_text = request.query.get("link", "")
    link = admin_views.LinkStatus(link_text) if link_text in set(admin_views.LinkStatus) else None
    unit_id = int_param(request.query.get("unit"), 0) or None
    if unit_id is not None and not viewer.covers(unit_id):
        raise not_found(request)
    async with sessionmaker_of(request)() as session:
        found, total = await admin_views.people(
            session,
            viewer.scope,
            text=text,
            unit_id=unit_id,
            link=link,
            offset=(page - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )
        choices = await admin_views.units_in(session, viewer.scope)
    return render(
        request,
        "people.html",
        people=found,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        text=text,
        link=link_text if link else "",
        unit_id=unit_id,
        units=choices,
        links=[status.value for status in admin_views.LinkStatus],
    )


async def person_detail(request: web.Request) -> web.StreamResponse:
    """Show a person of the account's units: their facts, chat accounts and Zalo link code."""
    return await person_page(request)


async def person_page(
    request: web.Request, *, issued: IssuedCode | None = None, error: str | None = None
) -> web.Response:
    """Render a person's page; `issued`: a link code just issued, shown this once."""
    viewer = viewer_of(request)
    person_id = int_param(request.match_info["person_id"], -1)
    async with sessionmaker_of(request)() as session:
        found = await admin_views.person_links(session, person_id)
        if found is None or not viewer.covers(found.person.unit_id):
            raise not_found(request)
        live = await link_codes.live_staff_code(
            session, person_id, CODE_CHANNEL, now=now_of(request)
        )
    return render(
        request,
        "person.html",
        status=409 if error else 200,
        item=found,
        linked_on_code_channel=any(a.channel == CODE_CHANNEL for a in found.accounts),
        live=live,
        issued=issued,
        lifetime_hours=int(link_codes.STAFF_LIFETIME.total_seconds() // 3600),
        error=error,
    )
