"""Staff decisions on registrations: approve, reject with a reason, cancel.

Each goes through the same db.registrations operation the chat uses (the class's row
locked, the freed seat offered down the waitlist) and queues the same notices, with its
audit entry, in one unit of work. A unit head's account acts only on people of its
units: a registration outside them is "not found", whatever id the form was given.
"""

from __future__ import annotations

from aiohttp import web

from bot.web.classes import CANCELLABLE
from bot.web.core import (
    client_address,
    int_param,
    not_found,
    now_of,
    redirect,
    sessionmaker_of,
    settings_of,
    viewer_of,
)
from db import audit, units
from db.models import AdminAccount, RegistrationStatus
from db.registrations import NotAllowed, cancel, decide
from db.repos import Repos
from handlers.i18n import t
from handlers.staff_notices import tell_cancelled_by_staff, tell_decision
from handlers.types import Msg
from handlers.unit_head import PRESET_REASONS

CANCELLED_BY_STAFF = "cancelled_by_staff"
REASON_LENGTH = 500


async def _decide(request: web.Request, approve: bool) -> web.StreamResponse:
    viewer = viewer_of(request)
    registration_id = int_param(request.match_info["registration_id"], -1)
    settings = settings_of(request)
    now = now_of(request)
    form = await request.post()
    rejection: Msg | str | None = None
    if not approve:
        typed = str(form.get("reason", "")).strip()[:REASON_LENGTH]
        preset = int_param(str(form.get("preset", "")), 0)
        if typed:
            rejection = typed
        elif 1 <= preset <= len(PRESET_REASONS):
            rejection = PRESET_REASONS[preset - 1]
    async with sessionmaker_of(request)() as session, session.begin():
        registration = await units.registration(session, registration_id)
        if registration is None or not viewer.covers(registration.person.unit_id):
            raise not_found(request)
        back = f"/classes/{registration.class_id}"
        if not approve and rejection is None:
            raise redirect(f"{back}?error=reason_needed")
        stored = (
            t(rejection, settings.bot.default_language) if isinstance(rejection, Msg) else rejection
        )
        try:
            changed = await decide(
                session,
                registration_id,
                viewer.person,
                approve=approve,
                reason=stored,
                scope=viewer.scope,
                now=now,
                zone=settings.bot.zone,
                window=settings.chat.offer_window,
            )
        except NotAllowed as refusal:
            raise redirect(f"{back}?error={refusal.why}") from None
        training_class = registration.training_class
        await tell_decision(
            Repos(session), changed, training_class, rejection, now=now, zone=settings.bot.zone
        )
        account = await session.get(AdminAccount, viewer.account_id)
        assert account is not None
        await audit.record(
            session,
            account,
            "registration.approve" if approve else "registration.reject",
            "registration",
            registration_id,
            f"{registration.person.full_name} — {training_class.code}",
            now=now,
            client=client_address(request, settings.web.trusted_proxies),
            details={} if approve else {"reason": stored},
        )
    raise redirect(f"{back}?done={'approved' if approve else 'rejected'}")


async def approve(request: web.Request) -> web.StreamResponse:
    """Approve a pending registration; the learner is told."""
    return await _decide(request, approve=True)


async def reject(request: web.Request) -> web.StreamResponse:
    """Reject a pending registration with a reason; the learner is told, the seat offered on."""
    return await _decide(request, approve=False)


async def cancel_registration(request: web.Request) -> web.StreamResponse:
    """Cancel a live registration before the class starts; its seat is offered on."""
    viewer = viewer_of(request)
    registration_id = int_param(request.match_info["registration_id"], -1)
    settings = settings_of(request)
    now = now_of(request)
    async with sessionmaker_of(request)() as session, session.begin():
        registration = await units.registration(session, registration_id)
        if registration is None or not viewer.covers(registration.person.unit_id):
            raise not_found(request)
        back = f"/classes/{registration.class_id}"
        if registration.status not in CANCELLABLE:
            raise redirect(f"{back}?error=not_live")
        try:
            changed = await cancel(
                session,
                registration_id,
                registration.person_id,
                now=now,
                zone=settings.bot.zone,
                window=settings.chat.offer_window,
                reason=CANCELLED_BY_STAFF,
            )
        except NotAllowed as refusal:
            raise redirect(f"{back}?error={refusal.why}") from None
        assert changed.registration.status == RegistrationStatus.CANCELLED
        changed.registration.updated_at = now
        training_class = registration.training_class
        await tell_cancelled_by_staff(
            Repos(session), changed, training_class, now=now, zone=settings.bot.zone
        )
        account = await session.get(AdminAccount, viewer.account_id)
        assert account is not None
        await audit.record(
            session,
            account,
            "registration.cancel",
            "registration",
            registration_id,
            f"{registration.person.full_name} — {training_class.code}",
            now=now,
            client=client_address(request, settings.web.trusted_proxies),
        )
    raise redirect(f"{back}?done=cancelled")
