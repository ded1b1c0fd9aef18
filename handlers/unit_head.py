"""Unit heads: their unit's classes against the quota, and approving or rejecting staff.

A head's scope is their unit and every unit under it; admins see every unit. The scope
is checked again on every press (db.registrations.decide takes it), so a stale or forged
button for another unit's registration changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from db import units
from db.models import Person, Registration, RegistrationStatus, TrainingClass
from db.registrations import NotAllowed, decide, units_under
from db.rules import SEAT_STATUSES, QuotaUse
from handlers.catalog import BUTTON_TITLE_LENGTH, PAGE_SIZE, page_buttons, paginate, shorten
from handlers.choices import match_key
from handlers.help import Outcome, help_reply, stale_button
from handlers.i18n import t
from handlers.labels import registration_text, status_name
from handlers.staff_notices import tell_decision
from handlers.state import Context, State, Step
from handlers.types import Button, Incoming, Msg, Param, Reply
from handlers.unit_buttons import (
    approve_data,
    nominee_page_data,
    reason_tag,
    reject_data,
    reject_for_data,
    reject_typed_data,
    unit_class_data,
    unit_page_data,
)

# Reasons a head can reject with in one tap; stored in the school's language.
PRESET_REASONS = (
    Msg("unit.reason_quota"),
    Msg("unit.reason_workload"),
    Msg("unit.reason_not_matching"),
)
# Typed at the "why reject?" step (folded): the head changed their mind, nothing happens.
DROP_WORDS = frozenset({"thoi", "khong", "huy", "cancel"})
# Typed at the confirmation of a typed reason: the same as its confirm button.
YES_WORDS = frozenset({"co", "dong y", "xac nhan", "ok", "yes"})
# Names listed per status in a class view, and pending registrations given buttons.
MAX_NAMES = 30
MAX_PENDING_BUTTONS = 10
# A name on an approve or reject button (two to a row on Telegram), cut beyond this.
BUTTON_NAME_LENGTH = 24
# Statuses shown in a class view, in this order, with their headings.
SHOWN_STATUSES = {
    RegistrationStatus.PENDING_APPROVAL: Msg("unit.group_pending"),
    RegistrationStatus.CONFIRMED: Msg("unit.group_confirmed"),
    RegistrationStatus.OFFERED: Msg("unit.group_offered"),
    RegistrationStatus.WAITLISTED: Msg("unit.group_waitlisted"),
    RegistrationStatus.ATTENDED: Msg("unit.group_attended"),
}


@dataclass(frozen=True)
class Head:
    """A person who may act for units: their scope (unit ids; None for admins)."""

    person: Person
    scope: units.Scope

    @property
    def unit(self) -> Param:
        """Return the name of what the head acts for: their unit, or the whole school."""
        return Msg("unit.whole_school") if self.scope is None else self.person.unit.name

    def covers(self, person: Person) -> bool:
        """Return whether `person` is in the head's scope."""
        return self.scope is None or person.unit_id in self.scope


async def head_of(ctx: Context) -> Head | None:
    """Return the talking person as a unit head (or admin), or None if they are neither."""
    person = ctx.person
    if person is None:
        return None
    if ctx.is_admin:
        return Head(person, None)
    if person.is_unit_head:
        return Head(person, await units_under(ctx.repos.session, person.unit_id))
    return None


def only_heads(state: State, ctx: Context) -> Outcome:
    """Answer someone who is not a unit head (nor an admin) using a unit-head feature."""
    return replace(state, step=None), [help_reply(ctx, (Msg("unit.only_heads"),))]


def not_your_unit(state: State, class_id: int | None) -> Outcome:
    """Answer a head acting on someone outside their scope; nothing changed."""
    buttons = ((Button(Msg("unit.back_to_class"), unit_class_data(class_id)),),) if class_id else ()
    return replace(state, step=None), [Reply((Msg("unit.not_your_unit"),), buttons)]


def about(training_class: TrainingClass) -> dict[str, Param]:
    """Return the parameters that name a class in messages."""
    return {
        "code": training_class.code,
        "title": training_class.title,
        "start": training_class.start_date,
        "end": training_class.end_date,
    }


def usage_line(
    head: Head, training_class: TrainingClass, counts: units.UnitCounts, binding: QuotaUse | None
) -> Msg:
    """Return the scope's registrations against the quota that binds it (admins: capacity).

    `binding` is the quota of the head's unit or of its nearest unit upward that has one
    (ClassRepo.quota_use), the one the rules check when the head's people register.
    """
    statuses = counts.statuses
    params: dict[str, Param] = {
        "unit": head.unit,
        "used": sum(statuses[s] for s in SEAT_STATUSES),
        "pending": statuses[RegistrationStatus.PENDING_APPROVAL],
        "waitlisted": statuses[RegistrationStatus.WAITLISTED],
    }
    if head.scope is None:
        return Msg("unit.usage_school", {**params, "capacity": training_class.capacity})
    if binding is not None and binding.unit_id == head.person.unit_id:
        return Msg("unit.usage_quota", {**params, "used": binding.used, "seats": binding.seats})
    if binding is not None:
        quota: dict[str, Param] = {"quota_unit": binding.unit_name, "quota_used": binding.used}
        return Msg("unit.usage_parent_quota", {**params, **quota, "seats": binding.seats})
    if counts.quota is not None:
        return Msg("unit.usage_sub_quotas", {**params, "seats": counts.quota})
    if not counts.has_quotas:
        return Msg("unit.usage_open", params)
    return Msg("unit.usage_no_quota", params)


async def _binding_quotas(
    head: Head, class_ids: Sequence[int], ctx: Context
) -> dict[int, QuotaUse]:
    if head.scope is None:
        return {}
    return await ctx.repos.classes.quota_use(head.person.unit_id, class_ids)


async def unit_command(state: State, _argument: str, _incoming: Incoming, ctx: Context) -> Outcome:
    """Run /unit: the unit's upcoming classes."""
    return await show_units(state, 1, ctx)


async def show_units(state: State, requested: int, ctx: Context) -> Outcome:
    """Show a page of upcoming classes that concern the head's units, with their use."""
    head = await head_of(ctx)
    if head is None:
        return only_heads(state, ctx)
    session = ctx.repos.session
    # The units above the head's: their people may use those quotas.
    above = set() if head.scope is None else await units.ancestors(session, head.person.unit_id)
    total = await units.count_classes(session, head.scope, ctx.today, above=above)
    page = paginate(requested, total)
    classes = await units.classes(
        session, head.scope, ctx.today, above=above, offset=page.offset, limit=PAGE_SIZE
    )
    state = replace(state, step=None)
    if not classes:
        return state, [help_reply(ctx, (Msg("unit.empty", {"unit": head.unit}),))]
    class_ids = [c.id for c in classes]
    counts = await units.counts(session, head.scope, class_ids)
    binding = await _binding_quotas(head, class_ids, ctx)
    lines = [
        Msg("unit.title", {"unit": head.unit, "page": page.number, "pages": page.pages}),
        *(
            Msg(
                "unit.class_item",
                {
                    "number": number,
                    **about(training_class),
                    "usage": usage_line(
                        head,
                        training_class,
                        counts[training_class.id],
                        binding.get(training_class.id),
                    ),
                },
            )
            for number, training_class in enumerate(classes, start=1)
        ),
    ]
    rows: list[tuple[Button, ...]] = [
        (
            Button(
                Msg(
                    "catalog.class_button",
                    {"code": c.code, "title": shorten(c.title, BUTTON_TITLE_LENGTH)},
                ),
                unit_class_data(c.id),
            ),
        )
        for c in classes
    ]
    pages = {n: unit_page_data(n) for n in (page.number - 1, page.number + 1)}
    rows += page_buttons(page, pages)
    return state, [Reply(lines=tuple(lines), buttons=tuple(rows))]


async def show_unit_class(
    state: State, class_id: int, ctx: Context, before: Sequence[Msg] = ()
) -> Outcome:
    """Show a class to a head: their people's registrations by status, with the decisions."""
    head = await head_of(ctx)
    if head is None:
        return only_heads(state, ctx)
    training_class = await ctx.repos.classes.by_id(class_id)
    if training_class is None:
        return stale_button(state, ctx)
    session = ctx.repos.session
    registrations = await units.registrations(session, head.scope, class_id)
    counts = (await units.counts(session, head.scope, [class_id]))[class_id]
    binding = (await _binding_quotas(head, [class_id], ctx)).get(class_id)
    lines = [
        *before,
        Msg("unit.class_title", about(training_class)),
        usage_line(head, training_class, counts, binding),
        registration_text(training_class, ctx.today),
    ]
    by_status: dict[RegistrationStatus, list[Registration]] = {}
    for registration in registrations:
        by_status.setdefault(registration.status, []).append(registration)
    if not registrations:
        lines.append(Msg("unit.no_registrations"))
    for status, heading in SHOWN_STATUSES.items():
        group = by_status.get(status, [])
        if not group:
            continue
        lines.append(Msg("unit.group", {"status": heading, "count": len(group)}))
        # Bullets, not numbers: typed numbers press the buttons, which name the person.
        for registration in group[:MAX_NAMES]:
            person = registration.person
            lines.append(
                Msg("unit.person_line", {"name": person.full_name, "unit": person.unit.name})
            )
        if len(group) > MAX_NAMES:
            lines.append(Msg("unit.more", {"count": len(group) - MAX_NAMES}))
    rows: list[tuple[Button, ...]] = []
    pending = by_status.get(RegistrationStatus.PENDING_APPROVAL, [])
    for registration in pending[:MAX_PENDING_BUTTONS]:
        name = shorten(registration.person.full_name, BUTTON_NAME_LENGTH)
        rows.append(
            (
                Button(Msg("unit.approve_button", {"name": name}), approve_data(registration.id)),
                Button(Msg("unit.reject_button", {"name": name}), reject_data(registration.id)),
            )
        )
    if len(pending) > MAX_PENDING_BUTTONS:
        lines.append(Msg("unit.more_pending", {"count": len(pending) - MAX_PENDING_BUTTONS}))
    rows.append((Button(Msg("unit.nominate"), nominee_page_data(class_id, 1)),))
    rows.append((Button(Msg("unit.back_to_list"), unit_page_data(1)),))
    return replace(state, step=None), [Reply(lines=tuple(lines), buttons=tuple(rows))]


async def _refused(state: State, why: str, registration_id: int, ctx: Context) -> Outcome:
    """Answer a decision that does not apply: gone, someone else's, or already decided."""
    registration = await units.registration(ctx.repos.session, registration_id)
    if why == "not_found" or registration is None:
        return stale_button(replace(state, step=None), ctx)
    if why == "not_your_unit":
        return not_your_unit(state, None)
    if why == "own_registration":
        back = Button(Msg("unit.back_to_class"), unit_class_data(registration.class_id))
        return replace(state, step=None), [Reply((Msg("unit.own_registration"),), ((back,),))]
    line = Msg(
        "unit.already_decided",
        {"name": registration.person.full_name, "status": status_name(registration.status)},
    )
    back = Button(Msg("unit.back_to_class"), unit_class_data(registration.class_id))
    return replace(state, step=None), [Reply((line,), ((back,),))]


async def approve(state: State, registration_id: int, ctx: Context) -> Outcome:
    """Approve a pending registration of the head's people; the learner is told."""
    return await _decide(state, registration_id, None, ctx)


async def _decide(
    state: State, registration_id: int, rejection: Msg | str | None, ctx: Context
) -> Outcome:
    """Approve (no `rejection`) or reject a pending registration; tell the learner.

    A rejection's freed seat is offered down the waitlist.
    """
    head = await head_of(ctx)
    if head is None:
        return only_heads(state, ctx)
    stored = (
        t(rejection, ctx.settings.default_language) if isinstance(rejection, Msg) else rejection
    )
    try:
        changed = await decide(
            ctx.repos.session,
            registration_id,
            head.person,
            approve=rejection is None,
            reason=stored,
            scope=head.scope,
            now=ctx.now,
            zone=ctx.zone,
            window=ctx.settings.offer_window,
        )
    except NotAllowed as refusal:
        return await _refused(state, refusal.why, registration_id, ctx)
    registration = changed.registration
    training_class = await ctx.repos.classes.by_id(registration.class_id)
    assert training_class is not None  # decide locked it
    name = registration.person.full_name
    if rejection is None:
        done = Msg("unit.approved", {"name": name})
    else:
        done = Msg("unit.rejected", {"name": name, "reason": rejection})
    await tell_decision(ctx.repos, changed, training_class, rejection, now=ctx.now, zone=ctx.zone)
    return await show_unit_class(replace(state, step=None), registration.class_id, ctx, (done,))


async def _pending_for(state: State, registration_id: int, ctx: Context) -> Registration | Outcome:
    """Return a pending registration the head may decide, or the answer why not."""
    head = await head_of(ctx)
    if head is None:
        return only_heads(state, ctx)
    registration = await units.registration(ctx.repos.session, registration_id)
    if registration is None:
        return stale_button(state, ctx)
    if not head.covers(registration.person):
        return not_your_unit(state, None)
    if registration.status != RegistrationStatus.PENDING_APPROVAL:
        return await _refused(state, "not_pending", registration_id, ctx)
    return registration


async def ask_reason(
    state: State, registration_id: int, ctx: Context, before: Sequence[Msg] = ()
) -> Outcome:
    """Ask why a pending registration is rejected: a preset reason or typed text."""
    found = await _pending_for(state, registration_id, ctx)
    if not isinstance(found, Registration):
        return found
    registration = found
    prompt = Msg(
        "unit.ask_reason",
        {"name": registration.person.full_name, "code": registration.training_class.code},
    )
    rows = [
        (Button(reason, reject_for_data(registration_id, number)),)
        for number, reason in enumerate(PRESET_REASONS, start=1)
    ]
    rows.append((Button(Msg("unit.back_to_class"), unit_class_data(registration.class_id)),))
    state = replace(state, step=Step.REJECT_REASON, target=registration_id, note=None)
    return state, [Reply((*before, prompt), tuple(rows))]


async def reject_for_preset(
    state: State, registration_id: int, preset: int, ctx: Context
) -> Outcome:
    """Reject a registration for one of the preset reasons."""
    if not 1 <= preset <= len(PRESET_REASONS):
        return stale_button(state, ctx)
    reason = PRESET_REASONS[preset - 1]
    return await reject(state, registration_id, reason, ctx)


async def answer_reason(state: State, incoming: Incoming, ctx: Context) -> Outcome:
    """Take text typed at the "why reject?" step; nothing is rejected without a press.

    "thôi", "không", "huỷ" or "cancel" drop the step and go back to the class. Other text
    is the reason, kept in the state and asked to be confirmed (a yes word typed while
    the confirm button is shown confirms it).
    """
    registration_id = state.target
    if registration_id is None:
        return stale_button(state, ctx)
    text = (incoming.text or "").strip()
    key = match_key(text)
    if key in DROP_WORDS:
        registration = await units.registration(ctx.repos.session, registration_id)
        state = replace(state, step=None, note=None)
        if registration is None:
            return stale_button(state, ctx)
        dropped = Msg("unit.reject_dropped", {"name": registration.person.full_name})
        return await show_unit_class(state, registration.class_id, ctx, (dropped,))
    note = state.note
    shown = {choice.data for choice in state.choices}
    if note is not None and key in YES_WORDS and reject_typed_data(registration_id, note) in shown:
        return await reject(state, registration_id, note, ctx)
    return await confirm_reason(state, registration_id, text, ctx)


async def confirm_reason(state: State, registration_id: int, reason: str, ctx: Context) -> Outcome:
    """Ask the head to confirm rejecting for the reason they typed; keep it in the state."""
    found = await _pending_for(state, registration_id, ctx)
    if not isinstance(found, Registration):
        return found
    registration = found
    question = Msg(
        "unit.confirm_reason",
        {
            "name": registration.person.full_name,
            "code": registration.training_class.code,
            "reason": reason,
        },
    )
    rows = (
        (Button(Msg("unit.confirm_reject"), reject_typed_data(registration_id, reason)),),
        (Button(Msg("unit.keep_pending"), unit_class_data(registration.class_id)),),
    )
    state = replace(state, step=Step.REJECT_REASON, target=registration_id, note=reason)
    return state, [Reply((question,), rows)]


async def reject_typed(state: State, registration_id: int, tag: int, ctx: Context) -> Outcome:
    """Reject for the typed reason the head confirms; a reason no longer kept is asked again."""
    note = state.note
    if (
        state.step == Step.REJECT_REASON
        and state.target == registration_id
        and note is not None
        and reason_tag(note) == tag
    ):
        return await reject(state, registration_id, note, ctx)
    return await ask_reason(state, registration_id, ctx, (Msg("unit.reason_not_kept"),))


async def reject(state: State, registration_id: int, reason: Msg | str, ctx: Context) -> Outcome:
    """Reject a pending registration; the learner is told why and the seat is offered on."""
    return await _decide(state, registration_id, reason, ctx)
