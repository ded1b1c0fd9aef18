"""Nominations: a unit head sends one of their people to a class; the nominee may decline.

A nomination is the approval (db.registrations.register with `registered_by`). The
nominee is told by a notice with a Decline button; declining cancels the registration,
tells the head and offers the seat on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from db import units, zns
from db.models import Person, TrainingClass
from db.registrations import (
    NOMINATION_DECLINED,
    NotAllowed,
    Refused,
    cancel,
    register,
)
from db.rules import SEAT_STATUSES, Refusal
from handlers.catalog import PAGE_SIZE, page_buttons, paginate
from handlers.help import Outcome, help_reply, stale_button
from handlers.labels import refusal_about, status_name
from handlers.notices import notify
from handlers.registration_buttons import register_data
from handlers.seat_notices import notify_offers
from handlers.state import Context, State, Step
from handlers.types import Button, Incoming, Msg, Param, Reply
from handlers.unit_buttons import (
    decline_nomination_data,
    nominate_data,
    nominee_page_data,
    pick_nominee_data,
    unit_class_data,
)
from handlers.unit_head import Head, about, head_of, not_your_unit, only_heads
from handlers.zns_reach import kinds_by_zns, still_by_zns

# The outbox kind of the notice that tells a nominee.
NOMINATION_KIND = "registration.nominated"
# Matches shown for a typed name or phone; more means the head should type more.
MAX_MATCHES = 10


def _person_rows(class_id: int, people: list[Person]) -> list[tuple[Button, ...]]:
    return [
        (
            Button(
                Msg("nominate.person_button", {"name": person.full_name}),
                pick_nominee_data(class_id, person.id),
            ),
        )
        for person in people
    ]


def _person_lines(people: list[Person]) -> list[Msg]:
    return [
        Msg(
            "nominate.person",
            {"number": number, "name": person.full_name, "unit": person.unit.name},
        )
        for number, person in enumerate(people, start=1)
    ]


async def show_people(state: State, class_id: int, requested: int, ctx: Context) -> Outcome:
    """List the head's people page by page; a typed name or phone filters them."""
    head = await head_of(ctx)
    if head is None:
        return only_heads(state, ctx)
    training_class = await ctx.repos.classes.by_id(class_id)
    if training_class is None:
        return stale_button(state, ctx)
    session = ctx.repos.session
    me = head.person.id
    _, total = await units.people(session, head.scope, limit=0, exclude=me)
    page = paginate(requested, total)
    people, _ = await units.people(
        session, head.scope, offset=page.offset, limit=PAGE_SIZE, exclude=me
    )
    lines = [
        Msg(
            "nominate.title",
            {"code": training_class.code, "page": page.number, "pages": page.pages},
        ),
        *_person_lines(people),
        Msg("nominate.hint"),
    ]
    rows = _person_rows(class_id, people)
    pages = {n: nominee_page_data(class_id, n) for n in (page.number - 1, page.number + 1)}
    rows += page_buttons(page, pages)
    rows.append((Button(Msg("unit.back_to_class"), unit_class_data(class_id)),))
    state = replace(state, step=Step.NOMINEE_QUERY, target=class_id)
    return state, [Reply(tuple(lines), tuple(rows))]


async def answer_query(state: State, incoming: Incoming, ctx: Context) -> Outcome:
    """Show the head's people whose name or phone matches what they typed."""
    head = await head_of(ctx)
    if head is None:
        return only_heads(state, ctx)
    class_id = state.target
    training_class = await ctx.repos.classes.by_id(class_id) if class_id else None
    if class_id is None or training_class is None:
        return stale_button(replace(state, step=None), ctx)
    text = (incoming.text or "").strip()
    people, total = await units.people(
        ctx.repos.session, head.scope, text, limit=MAX_MATCHES, exclude=head.person.id
    )
    back = (Button(Msg("unit.back_to_class"), unit_class_data(class_id)),)
    if not people:
        return state, [Reply((Msg("nominate.none_found", {"text": text}),), (back,))]
    lines = [Msg("nominate.found", {"text": text, "count": total}), *_person_lines(people)]
    if total > len(people):
        lines.append(Msg("nominate.type_more", {"count": total - len(people)}))
    rows = [*_person_rows(class_id, people), back]
    return state, [Reply(tuple(lines), tuple(rows))]


def _refusal_lines(person: Person, training_class: TrainingClass, refused: Refused) -> list[Msg]:
    """Return why the person cannot be nominated, told about them to the head.

    A person already registered (a double tap on the confirm button, say) is told as that,
    with the registration's status: nothing failed.
    """
    name = person.full_name
    for reason in refused.reasons:
        if reason.refusal == Refusal.ALREADY_REGISTERED:
            status = status_name(str(reason.facts.get("status")))
            facts: dict[str, Param] = {"name": name, "code": training_class.code, "status": status}
            return [Msg("nominate.already_registered", facts)]
    return [
        Msg("nominate.refused", {"name": name, "code": training_class.code}),
        *(refusal_about(reason, name) for reason in refused.reasons),
    ]


@dataclass(frozen=True)
class Nominee:
    """A person the head may nominate, and the head."""

    head: Head
    person: Person


async def _nominee(state: State, class_id: int, person_id: int, ctx: Context) -> Nominee | Outcome:
    head = await head_of(ctx)
    if head is None:
        return only_heads(state, ctx)
    person = await units.person(ctx.repos.session, person_id)
    if person is None or await ctx.repos.classes.by_id(class_id) is None:
        return stale_button(state, ctx)
    if person.id == head.person.id:
        # Heads and admins register themselves like anyone, so a class's approval holds.
        rows = (
            (Button(Msg("register.button"), register_data(class_id)),),
            (Button(Msg("nominate.back_to_people"), nominee_page_data(class_id, 1)),),
            (Button(Msg("unit.back_to_class"), unit_class_data(class_id)),),
        )
        return replace(state, step=None), [Reply((Msg("nominate.not_yourself"),), rows)]
    if not head.covers(person):
        return not_your_unit(state, class_id)
    return Nominee(head, person)


async def confirm(state: State, class_id: int, person_id: int, ctx: Context) -> Outcome:
    """Ask the head to confirm sending this person to the class."""
    found = await _nominee(state, class_id, person_id, ctx)
    if not isinstance(found, Nominee):
        return found
    person = found.person
    training_class = await ctx.repos.classes.by_id(class_id)
    assert training_class is not None
    question = Msg(
        "nominate.confirm",
        {"name": person.full_name, "unit": person.unit.name, **about(training_class)},
    )
    rows = (
        (Button(Msg("nominate.yes"), nominate_data(class_id, person_id)),),
        (Button(Msg("nominate.back_to_people"), nominee_page_data(class_id, 1)),),
    )
    return replace(state, step=None), [Reply((question,), rows)]


async def nominate(state: State, class_id: int, person_id: int, ctx: Context) -> Outcome:
    """Register the person for the class on the head's word; tell the nominee."""
    found = await _nominee(state, class_id, person_id, ctx)
    if not isinstance(found, Nominee):
        return found
    head, person = found.head, found.person
    state = replace(state, step=None)
    result = await register(
        ctx.repos.session,
        person,
        class_id,
        today=ctx.today,
        now=ctx.now,
        zone=ctx.zone,
        registered_by=head.person,
    )
    if result is None:
        return stale_button(state, ctx)
    training_class = await ctx.repos.classes.by_id(class_id)
    assert training_class is not None
    back = (
        (Button(Msg("unit.back_to_class"), unit_class_data(class_id)),),
        (Button(Msg("nominate.another"), nominee_page_data(class_id, 1)),),
    )
    if isinstance(result, Refused):
        return state, [Reply(tuple(_refusal_lines(person, training_class, result)), back)]
    registration = result.registration
    if result.position is not None:
        done = Msg(
            "nominate.waitlisted",
            {"name": person.full_name, "code": training_class.code, "position": result.position},
        )
        notice = Msg(
            "nominate.notice_waitlisted",
            {"head": head.person.full_name, **about(training_class), "position": result.position},
        )
    else:
        done = Msg("nominate.done", {"name": person.full_name, "code": training_class.code})
        notice = Msg(
            "nominate.notice",
            {"head": head.person.full_name, **about(training_class)},
        )
    await notify(
        ctx.repos,
        person.id,
        NOMINATION_KIND,
        f"nominated:{registration.id}",
        Reply(
            (notice,),
            ((Button(Msg("nominate.decline"), decline_nomination_data(registration.id)),),),
        ),
        due_at=ctx.now,
    )
    lines = [done]
    if not await units.reachable(ctx.repos.session, person.id):
        lines += await _unreachable_nominee(person, ctx)
    return state, [Reply(tuple(lines), back)]


async def _unreachable_nominee(person: Person, ctx: Context) -> list[Msg]:
    """Return what the head should know of a nominee the bot cannot reach on chat.

    With ZNS on: whether the nomination itself goes by ZNS, and what else will.
    """
    by_zns = kinds_by_zns(ctx.settings)
    if not by_zns or not await zns.reached_by_zns(ctx.repos.session, person.id):
        return [Msg("nominate.unreachable", {"name": person.full_name})]
    if NOMINATION_KIND not in ctx.settings.zns_kinds:
        return [Msg("nominate.unreachable", {"name": person.full_name}), *still_by_zns(by_zns)]
    by_zns.remove("nomination")
    told = Msg("zns.nominee_told_by_zns", {"name": person.full_name})
    return [told, *still_by_zns(by_zns, Msg("zns.reach_also"))]


async def decline(state: State, registration_id: int, ctx: Context) -> Outcome:
    """Let a nominee (only them) decline their nomination; the head is told."""
    state = replace(state, step=None)
    person = ctx.person
    registration = await units.registration(ctx.repos.session, registration_id)
    if registration is None:
        return stale_button(state, ctx)
    nominated_by = registration.registered_by_id
    if person is None or registration.person_id != person.id or nominated_by is None:
        return state, [help_reply(ctx, (Msg("nominate.not_yours"),))]
    training_class = registration.training_class
    held_seat = registration.status in SEAT_STATUSES
    try:
        changed = await cancel(
            ctx.repos.session,
            registration_id,
            person.id,
            now=ctx.now,
            zone=ctx.zone,
            window=ctx.settings.offer_window,
            reason=NOMINATION_DECLINED,
        )
    except NotAllowed as refusal:
        if refusal.why == "started":
            line = Msg("nominate.decline_started", about(training_class))
        else:
            status = status_name(registration.status)
            line = Msg("nominate.decline_too_late", {**about(training_class), "status": status})
        return state, [help_reply(ctx, (line,))]
    # Only a seat held passes on: a waitlisted nominee leaves nothing behind.
    facts = {"name": person.full_name, **about(training_class)}
    if changed.offers:
        told = Msg("nominate.notice_declined", facts)
    elif held_seat:
        told = Msg("nominate.notice_declined_seat_freed", facts)
    else:
        told = Msg("nominate.notice_declined_waitlisted", facts)
    await notify(
        ctx.repos,
        nominated_by,
        "registration.nomination_declined",
        f"nomination-declined:{registration_id}",
        Reply(
            (told,),
            ((Button(Msg("unit.back_to_class"), unit_class_data(training_class.id)),),),
        ),
        due_at=ctx.now,
    )
    await notify_offers(ctx.repos, changed.offers, now=ctx.now, zone=ctx.zone)
    return state, [help_reply(ctx, (Msg("nominate.declined", about(training_class)),))]
