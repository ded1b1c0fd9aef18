"""Registering for a class: Register on its detail, a confirmation step, then the result.

The seat itself is decided by db.registrations (locked, so it holds under concurrency);
this flow explains: why someone may not register, what they are about to register for,
and what they got (a seat, a place on the waitlist, or a request awaiting approval).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from sqlalchemy import func, select

from db import registrations as regs
from db.models import Registration, RegistrationStatus, TrainingClass
from db.rules import Reason, Refusal, registration_open, seats_left
from handlers.callbacks import class_data
from handlers.choices import match_key
from handlers.help import Outcome, help_reply, stale_button
from handlers.labels import form_name, refusal_text, status_name
from handlers.registration_buttons import (
    MY_REGISTRATIONS,
    Do,
    button_data,
    register_data,
)
from handlers.state import Context, State, Step
from handlers.types import Button, Incoming, Msg, Param, Reply

# Typed at a confirmation step, these press its first (yes) or second (no) button.
YES_WORDS = {"co", "dong y", "xac nhan", "ok", "yes", "y", "confirm"}
NO_WORDS = {"khong", "thoi", "no", "n", "khong dang ky"}

Press = Callable[[State, str, Context], Awaitable[Outcome]]


def about(training_class: TrainingClass) -> dict[str, Param]:
    """Return the parameters that name a class in a message: code, title and dates."""
    return {
        "code": training_class.code,
        "title": training_class.title,
        "start": training_class.start_date,
        "end": training_class.end_date,
    }


def my_button() -> Button:
    """Return the button that lists the person's registrations."""
    return Button(Msg("register.my_button"), MY_REGISTRATIONS)


def visitor_reply(ctx: Context) -> Reply:
    """Return the answer to a visitor who tries to register: link the phone first."""
    return help_reply(ctx, (Msg("register.visitor"),))


async def register_button(training_class: TrainingClass, ctx: Context) -> Button | None:
    """Return the detail's Register button, or None when there is nothing to register for.

    A visitor sees it too (pressing it explains how to link their phone); a person who
    holds a live registration for the class is shown their registrations instead.
    """
    if not registration_open(training_class, ctx.today):
        return None
    if ctx.person is not None:
        session = ctx.repos.session
        if await regs.live_registration(session, ctx.person.id, training_class.id) is not None:
            return my_button()
    label = Msg("register.button") if ctx.person is not None else Msg("register.visitor_button")
    return Button(label, register_data(training_class.id))


def refused_reply(training_class: TrainingClass, reasons: list[Reason]) -> Reply:
    """Return why the person may not register, every reason in words."""
    lines = (Msg("register.refused", about(training_class)), *map(refusal_text, reasons))
    return Reply(
        lines=lines,
        buttons=((Button(Msg("register.back_to_class"), class_data(training_class.id)),),),
    )


async def _waiting(ctx: Context, class_id: int) -> int:
    stmt = select(func.count()).where(
        Registration.class_id == class_id, Registration.status == RegistrationStatus.WAITLISTED
    )
    return (await ctx.repos.session.scalar(stmt)) or 0


async def ask_to_register(state: State, class_id: int, ctx: Context) -> Outcome:
    """Check that the person may register, then show what they register for and ask to confirm."""
    training_class = await ctx.repos.classes.by_id(class_id)
    if training_class is None:
        return stale_button(state, ctx)
    person = ctx.person
    if person is None:
        return replace(state, step=None), [visitor_reply(ctx)]
    reasons = await regs.check(
        ctx.repos.session, person, training_class, ctx.today, now=ctx.now, zone=ctx.zone
    )
    if reasons:
        return replace(state, step=None), [refused_reply(training_class, reasons)]
    taken = (await ctx.repos.classes.seats_taken([class_id])).get(class_id, 0)
    left = seats_left(training_class.capacity, taken)
    lines = [
        Msg("register.confirm_ask", about(training_class)),
        Msg("detail.dates", {"start": training_class.start_date, "end": training_class.end_date}),
        Msg("detail.form", {"form": form_name(training_class.form)}),
    ]
    if training_class.location:
        lines.append(Msg("detail.location", {"location": training_class.location}))
    if left:
        lines.append(Msg("register.seats_left", {"left": left}))
        if training_class.requires_approval:
            lines.append(Msg("register.needs_approval"))
    else:
        position = await _waiting(ctx, class_id) + 1
        lines.append(Msg("register.will_be_waitlisted", {"position": position}))
    buttons = (
        (
            Button(Msg("register.confirm_button"), button_data(Do.CONFIRM, class_id)),
            Button(Msg("register.not_now_button"), class_data(class_id)),
        ),
    )
    return replace(state, step=Step.CONFIRM), [Reply(lines=tuple(lines), buttons=buttons)]


async def _already(
    state: State, training_class: TrainingClass, registration: Registration, ctx: Context
) -> Outcome:
    lines = [
        Msg(
            "register.already",
            {**about(training_class), "status": status_name(registration.status.value)},
        )
    ]
    if registration.status == RegistrationStatus.WAITLISTED:
        position = await regs.waitlist_position(ctx.repos.session, registration)
        lines.append(Msg("register.position", {"position": position}))
    return replace(state, step=None), [Reply(lines=tuple(lines), buttons=((my_button(),),))]


async def confirm_registration(state: State, class_id: int, ctx: Context) -> Outcome:
    """Register the person (a seat, the waitlist, or awaiting approval) and say which.

    Pressed twice, the second press finds the registration and says so: `register` locks
    the class and checks afresh, so a double tap never registers twice.
    """
    person = ctx.person
    if person is None:
        return replace(state, step=None), [visitor_reply(ctx)]
    session = ctx.repos.session
    result = await regs.register(
        session, person, class_id, today=ctx.today, now=ctx.now, zone=ctx.zone
    )
    if result is None:
        return stale_button(replace(state, step=None), ctx)
    training_class = await ctx.repos.classes.by_id(class_id)
    assert training_class is not None  # locked by register
    if isinstance(result, regs.Refused):
        if any(r.refusal == Refusal.ALREADY_REGISTERED for r in result.reasons):
            existing = await regs.live_registration(session, person.id, class_id)
            if existing is not None:
                return await _already(state, training_class, existing, ctx)
        return replace(state, step=None), [refused_reply(training_class, result.reasons)]
    registration = result.registration
    params = about(training_class)
    buttons: list[Button] = []
    if registration.status == RegistrationStatus.CONFIRMED:
        lines = [Msg("register.confirmed", params)]
        buttons.append(
            Button(Msg("register.calendar_button"), button_data(Do.CALENDAR, registration.id))
        )
    elif registration.status == RegistrationStatus.WAITLISTED:
        lines = [Msg("register.waitlisted", {**params, "position": result.position})]
    else:
        lines = [Msg("register.pending", params)]
    lines.append(Msg("register.next"))
    buttons.append(my_button())
    return replace(state, step=None), [Reply(lines=tuple(lines), buttons=(tuple(buttons),))]


async def answer_confirmation(
    state: State, incoming: Incoming, ctx: Context, press: Press
) -> Outcome:
    """Take typed yes/no at a confirmation step as its first or second button.

    Any other text must never register or cancel anything: it is asked to answer again.
    """
    key = match_key(incoming.text or "")
    if len(state.choices) >= 2:
        if key in YES_WORDS:
            return await press(state, state.choices[0].data, ctx)
        if key in NO_WORDS:
            return await press(state, state.choices[1].data, ctx)
    return state, [Reply(lines=(Msg("register.answer_with_button"),))]
