"""A person's registrations: what each one is, what to do next, cancel, calendar, offers.

Every change goes through db.registrations; a seat it frees is offered down the waitlist
and the people offered it are told through the outbox in the same unit of work.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import replace

from sqlalchemy.orm import joinedload

from db import registrations as regs
from db.models import (
    LIVE_REGISTRATION_STATUSES,
    ClassStatus,
    Registration,
    RegistrationStatus,
    TrainingClass,
)
from db.rules import SEAT_STATUSES
from handlers.calendar import class_calendar
from handlers.callbacks import ListQuery, list_data
from handlers.help import Outcome
from handlers.labels import local_time, status_name
from handlers.notices import notify
from handlers.registration import about, my_button, visitor_reply
from handlers.registration_buttons import Do, button_data
from handlers.seat_notices import notify_offers
from handlers.state import Context, State, Step
from handlers.types import Button, Document, Msg, Param, Reply

# Registrations that ended (cancelled, rejected) or classes that ended stay listed this long.
RECENT = dt.timedelta(days=30)
# More than this many would overrun a chat message; the soonest are shown.
MAX_SHOWN = 10
ENDED = (RegistrationStatus.CANCELLED, RegistrationStatus.REJECTED)
# What the person may still cancel (before the class starts); an offer is declined instead.
CANCELLABLE = (
    RegistrationStatus.CONFIRMED,
    RegistrationStatus.PENDING_APPROVAL,
    RegistrationStatus.WAITLISTED,
)


def _not_allowed(why: str) -> Reply:
    """Return the polite answer to a button that no longer applies, per NotAllowed.why."""
    messages = {
        "started": Msg("my.started"),
        "not_live": Msg("my.not_live"),
        "no_offer": Msg("my.no_offer"),
        "dates_clash": Msg("my.dates_clash"),
        "class_cancelled": Msg("my.class_cancelled"),
    }
    return Reply(lines=(messages.get(why, Msg("my.not_found")),), buttons=((my_button(),),))


def _listed(registration: Registration, ctx: Context) -> bool:
    """Return whether /my shows the registration: live ones, recent ended ones."""
    since = ctx.now - RECENT
    if registration.status in ENDED:
        return _aware(registration.updated_at) >= since
    return registration.training_class.end_date >= since.astimezone(ctx.zone).date()


def _aware(moment: dt.datetime) -> dt.datetime:
    # SQLite gives back naive UTC datetimes.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


async def _next_step(registration: Registration, ctx: Context) -> Msg:
    """Return what the person should know or do next about one registration."""
    training_class = registration.training_class
    session = ctx.repos.session
    live = registration.status in LIVE_REGISTRATION_STATUSES
    if live and training_class.status == ClassStatus.CANCELLED:
        return Msg("my.next_class_cancelled")
    match registration.status:
        case RegistrationStatus.CONFIRMED:
            starts = await regs.class_starts_at(session, training_class, ctx.zone)
            place: Param = training_class.location or Msg("my.place_unknown")
            # Without a schedule the class starts on its first day, at no particular hour.
            no_hour = starts.astimezone(ctx.zone).time() == dt.time()
            when = training_class.start_date if no_hour else local_time(starts, ctx.zone)
            return Msg("my.next_confirmed", {"place": place, "when": when})
        case RegistrationStatus.WAITLISTED:
            position = await regs.waitlist_position(session, registration)
            return Msg("my.next_waitlisted", {"position": position})
        case RegistrationStatus.OFFERED if registration.offer_expires_at is not None:
            expires = local_time(_aware(registration.offer_expires_at), ctx.zone)
            return Msg("my.next_offered", {"expires": expires})
        case RegistrationStatus.PENDING_APPROVAL:
            return Msg("my.next_pending")
        case RegistrationStatus.REJECTED if registration.reason:
            return Msg("my.next_rejected", {"reason": registration.reason})
        case RegistrationStatus.REJECTED:
            return Msg("my.next_rejected_no_reason")
        case RegistrationStatus.CANCELLED if registration.reason == regs.OFFER_EXPIRED:
            return Msg("my.next_offer_expired")
        case RegistrationStatus.CANCELLED:
            return Msg("my.next_cancelled")
        case _:
            return Msg("my.next_attended")


async def _buttons(registration: Registration, ctx: Context) -> tuple[Button, ...]:
    training_class = registration.training_class
    if training_class.status == ClassStatus.CANCELLED:
        return ()
    code: dict[str, Param] = {"code": training_class.code}
    starts_at = await regs.class_starts_at(ctx.repos.session, training_class, ctx.zone)
    started = ctx.now >= starts_at
    buttons = []
    if registration.status == RegistrationStatus.CONFIRMED:
        buttons.append(
            Button(Msg("my.calendar_button", code), button_data(Do.CALENDAR, registration.id))
        )
    if registration.status == RegistrationStatus.OFFERED:
        buttons.append(
            Button(Msg("my.accept_button", code), button_data(Do.ACCEPT, registration.id))
        )
        buttons.append(
            Button(Msg("my.decline_button", code), button_data(Do.DECLINE, registration.id))
        )
    elif registration.status in CANCELLABLE and not started:
        buttons.append(
            Button(Msg("my.cancel_button", code), button_data(Do.ASK_CANCEL, registration.id))
        )

    return tuple(buttons)


async def show_my_registrations(state: State, ctx: Context) -> Outcome:
    """List the person's registrations with their status, next step and buttons."""
    person = ctx.person
    state = replace(state, step=None)
    if person is None:
        return state, [visitor_reply(ctx)]
    statuses = (*LIVE_REGISTRATION_STATUSES, *ENDED)
    found = await regs.registrations_of(ctx.repos.session, person.id, statuses=statuses)
    shown = [r for r in found if _listed(r, ctx)]
    if not shown:
        upcoming = Button(Msg("menu.upcoming"), list_data(ListQuery()))
        return state, [Reply(lines=(Msg("my.empty"),), buttons=((upcoming,),))]
    lines = [Msg("my.title", {"count": len(shown)})]
    rows = []
    # Bullets, not numbers: in a chat without buttons numbers press the buttons below.
    for registration in shown[:MAX_SHOWN]:
        status = status_name(registration.status.value)
        params = {**about(registration.training_class), "status": status}
        lines += [Msg("my.item", params), await _next_step(registration, ctx)]
        if buttons := await _buttons(registration, ctx):
            rows.append(buttons)
    if len(shown) > MAX_SHOWN:
        lines.append(Msg("my.more", {"count": len(shown) - MAX_SHOWN}))
    return state, [Reply(lines=tuple(lines), buttons=tuple(rows))]


async def _own(registration_id: int, ctx: Context) -> Registration | None:
    """Return the person's own registration with its class, or None (gone, someone else's)."""
    if ctx.person is None:
        return None
    registration = await ctx.repos.session.get(
        Registration,
        registration_id,
        options=[joinedload(Registration.training_class)],
        populate_existing=True,
    )
    if registration is None or registration.person_id != ctx.person.id:
        return None
    return registration


async def ask_to_cancel(state: State, registration_id: int, ctx: Context) -> Outcome:
    """Ask the person to confirm cancelling one of their registrations."""
    if ctx.person is None:
        return replace(state, step=None), [visitor_reply(ctx)]
    registration = await _own(registration_id, ctx)
    if registration is None:
        return state, [_not_allowed("not_found")]
    if registration.status not in LIVE_REGISTRATION_STATUSES or (
        registration.status == RegistrationStatus.ATTENDED
    ):
        return state, [_not_allowed("not_live")]
    training_class = registration.training_class
    if ctx.now >= await regs.class_starts_at(ctx.repos.session, training_class, ctx.zone):
        return state, [_not_allowed("started")]
    status = status_name(registration.status.value)
    lines = [Msg("my.cancel_ask", {**about(training_class), "status": status})]
    if registration.status in SEAT_STATUSES:
        lines.append(Msg("my.cancel_frees_seat"))
    buttons = (
        (
            Button(Msg("my.cancel_confirm_button"), button_data(Do.CANCEL, registration.id)),
            Button(Msg("register.not_now_button"), "my"),
        ),
    )
    return replace(state, step=Step.CONFIRM), [Reply(lines=tuple(lines), buttons=buttons)]


async def _class_of(registration: Registration, ctx: Context) -> TrainingClass:
    training_class = await ctx.repos.classes.by_id(registration.class_id)
    assert training_class is not None  # locked by the change
    return training_class


SeatChange = Callable[..., Awaitable[regs.Changed]]


async def _change_own(
    change: SeatChange, registration_id: int, ctx: Context
) -> regs.Changed | Reply:
    """Apply `change` to the person's own registration and tell whoever gets a freed seat.

    Returns the change, or the answer to a change that does not apply (any more).
    """
    assert ctx.person is not None
    try:
        changed = await change(
            ctx.repos.session,
            registration_id,
            ctx.person.id,
            now=ctx.now,
            zone=ctx.zone,
            window=ctx.settings.offer_window,
        )
    except regs.NotAllowed as refused:
        return _not_allowed(refused.why)
    changed.registration.updated_at = ctx.now
    await notify_offers(ctx.repos, changed.offers, now=ctx.now, zone=ctx.zone)
    await _tell_nominator(changed.registration, ctx)
    return changed


async def _tell_nominator(registration: Registration, ctx: Context) -> None:
    """Tell the unit head who nominated the person that they left the class."""
    nominator = registration.registered_by_id
    assert ctx.person is not None
    if (
        registration.status != RegistrationStatus.CANCELLED
        or nominator is None
        or nominator == ctx.person.id
    ):
        return
    training_class = await _class_of(registration, ctx)
    notice = Msg("my.nominee_left_notice", {**about(training_class), "name": ctx.person.full_name})
    await notify(
        ctx.repos,
        nominator,
        "registration.nominee_left",
        f"nominee-left:{registration.id}",
        Reply(lines=(notice,)),
        due_at=ctx.now,
    )


async def cancel_registration(state: State, registration_id: int, ctx: Context) -> Outcome:
    """Cancel the registration; its seat is offered on and the next person told."""
    state = replace(state, step=None)
    if ctx.person is None:
        return state, [visitor_reply(ctx)]
    changed = await _change_own(regs.cancel, registration_id, ctx)
    if isinstance(changed, Reply):
        return state, [changed]
    training_class = await _class_of(changed.registration, ctx)
    reply = Reply(lines=(Msg("my.cancelled", about(training_class)),), buttons=((my_button(),),))
    return state, [reply]


async def accept_offer(state: State, registration_id: int, ctx: Context) -> Outcome:
    """Take the seat offered: confirmed or awaiting approval; a lapsed offer is explained."""
    state = replace(state, step=None)
    if ctx.person is None:
        return state, [visitor_reply(ctx)]
    changed = await _change_own(regs.accept_offer, registration_id, ctx)
    if isinstance(changed, Reply):
        return state, [changed]
    registration = changed.registration
    params = about(await _class_of(registration, ctx))
    buttons: list[Button] = []
    if registration.status == RegistrationStatus.CONFIRMED:
        line = Msg("my.accepted", params)
        buttons.append(
            Button(Msg("register.calendar_button"), button_data(Do.CALENDAR, registration.id))
        )
    elif registration.status == RegistrationStatus.PENDING_APPROVAL:
        line = Msg("my.accepted_pending", params)
    else:
        line = Msg("my.offer_lapsed", params)
    buttons.append(my_button())
    return state, [Reply(lines=(line,), buttons=(tuple(buttons),))]


async def decline_offer(state: State, registration_id: int, ctx: Context) -> Outcome:
    """Turn the offered seat down; it passes to the next person on the waitlist."""
    state = replace(state, step=None)
    if ctx.person is None:
        return state, [visitor_reply(ctx)]
    changed = await _change_own(regs.decline_offer, registration_id, ctx)
    if isinstance(changed, Reply):
        return state, [changed]
    training_class = await _class_of(changed.registration, ctx)
    reply = Reply(lines=(Msg("my.declined", about(training_class)),), buttons=((my_button(),),))
    return state, [reply]


async def send_calendar(state: State, registration_id: int, ctx: Context) -> Outcome:
    """Send a confirmed class as an .ics file to add to the person's calendar."""
    if ctx.person is None:
        return replace(state, step=None), [visitor_reply(ctx)]
    registration = await _own(registration_id, ctx)
    if registration is None:
        return state, [_not_allowed("not_found")]
    if registration.status not in (RegistrationStatus.CONFIRMED, RegistrationStatus.ATTENDED):
        status = status_name(registration.status.value)
        reply = Reply(
            lines=(Msg("my.calendar_not_confirmed", {"status": status}),),
            buttons=((my_button(),),),
        )
        return state, [reply]
    training_class = registration.training_class
    sessions = await ctx.repos.classes.schedule(training_class.id)
    document = Document(
        filename=f"{training_class.code}.ics",
        content=class_calendar(training_class, sessions, now=ctx.now),
        mime_type="text/calendar",
    )
    reply = Reply(lines=(Msg("my.calendar", about(training_class)),), document=document)
    return state, [reply]
