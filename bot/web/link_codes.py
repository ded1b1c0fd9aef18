"""Zalo link codes issued in the web admin, as `/code PHONE` issues them in the chat.

Zalo does not prove a phone number, so a Zalo account is linked to a roster person only
once it types a one-time code that reached the person some other way (handlers/
link_codes.py). A unit head's or an admin's account issues one on the person's page, for
a person of its units: db.link_codes.issue_for_person stores only its hash, ends the
person's earlier staff code, and the code works once, for STAFF_LIFETIME (24 hours). The
page shows it this once (the answer to the POST is not cached); the audit log records
that it was issued, never the code.
"""

from __future__ import annotations

from aiohttp import web

from bot.web.core import (
    client_address,
    int_param,
    not_found,
    now_of,
    sessionmaker_of,
    settings_of,
    viewer_of,
)
from bot.web.people import person_page
from db import admin_views, audit, link_codes
from db.models import AdminAccount
from handlers.link_codes import CODE_CHANNEL


async def issue_link_code(request: web.Request) -> web.StreamResponse:
    """Issue a one-time Zalo link code for a person of the account's units; show it once."""
    viewer = viewer_of(request)
    person_id = int_param(request.match_info["person_id"], -1)
    now = now_of(request)
    async with sessionmaker_of(request)() as session, session.begin():
        found = await admin_views.person_links(session, person_id)
        if found is None or not viewer.covers(found.person.unit_id):
            raise not_found(request)
        if any(account.channel == CODE_CHANNEL for account in found.accounts):
            # A code could not link another Zalo account: the link is never moved.
            issued = None
        else:
            issued = await link_codes.issue_for_person(
                session,
                person_id,
                issued_by_id=viewer.person.id if viewer.person else None,
                now=now,
                channel=CODE_CHANNEL,
            )
            account = await session.get(AdminAccount, viewer.account_id)
            assert account is not None
            await audit.record(
                session,
                account,
                "person.link_code",
                "person",
                person_id,
                found.person.full_name,
                now=now,
                client=client_address(request, settings_of(request).web.trusted_proxies),
                details={"channel": CODE_CHANNEL, "expires_at": issued.expires_at.isoformat()},
            )
    if issued is None:
        return await person_page(request, error="already_linked")
    return await person_page(request, issued=issued)
