"""What unit heads are told on their own: approvals waiting too long, a registration
deadline near with their quota unfilled, and people the bot can no longer reach on chat
(with what still reaches them by ZNS, when it is on).

A unit's heads are the people marked unit head in it; a unit without one is looked after
by the nearest unit above that has one. Nobody is alerted about their own registration.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from db import alerts, zns
from db.alerts import Seat
from db.models import Registration, TrainingClass
from db.repos import Repos
from db.rules import QUOTA_STATUSES
from db.units import UnitTree, unit_tree
from handlers.labels import status_name
from handlers.notices import notify
from handlers.registration import about
from handlers.types import Button, Msg, Reply
from handlers.unit_buttons import unit_class_data, unit_page_data
from handlers.zns_reach import kinds_by_zns, still_by_zns
from jobs.runner import Tick

log = logging.getLogger(__name__)

# Lines of names in one alert; the rest are counted.
MAX_LINES = 15
# Class buttons under one alert.
MAX_CLASS_BUTTONS = 4
# An account marked unreachable shortly before a run may commit after it: look back.
LOOK_BACK = dt.timedelta(minutes=10)


def heads_for(tree: UnitTree, unit_id: int, *, not_person: int | None = None) -> list[int]:
    """Return who looks after a unit: its heads, else the nearest above (never `not_person`)."""
    for unit in tree.chain(unit_id):
        heads = [head for head in tree.heads.get(unit, []) if head != not_person]
        if heads:
            return heads
    return []


def _hours(span: dt.timedelta) -> str:
    return f"{span.total_seconds() / 3600:g}"


def _more(shown: int, total: int) -> list[Msg]:
    return [Msg("alert.more", {"count": total - shown})] if total > shown else []


def _class_buttons(
    class_ids: Sequence[int], codes: dict[int, str]
) -> tuple[tuple[Button, ...], ...]:
    rows = [
        (Button(Msg("alert.open_class", {"code": codes[class_id]}), unit_class_data(class_id)),)
        for class_id in list(dict.fromkeys(class_ids))[:MAX_CLASS_BUTTONS]
    ]
    rows.append((Button(Msg("unit.menu"), unit_page_data(1)),))
    return tuple(rows)


def approvals_reply(waiting: Sequence[Registration], tick: Tick) -> Reply:
    """Return the alert listing registrations that wait for the head's decision."""
    hours = _hours(tick.settings.pending_alert_after)
    lines = [Msg("alert.pending_headline", {"count": len(waiting), "hours": hours})]
    for registration in waiting[:MAX_LINES]:
        lines.append(
            Msg(
                "alert.pending_line",
                {
                    "name": registration.person.full_name,
                    **about(registration.training_class),
                    "since": registration.created_at.astimezone(tick.settings.zone).date(),
                },
            )
        )
    lines += _more(min(len(waiting), MAX_LINES), len(waiting))
    codes = {r.class_id: r.training_class.code for r in waiting}
    return Reply(tuple(lines), _class_buttons([r.class_id for r in waiting], codes))


async def alert_overdue_approvals(session: AsyncSession, tick: Tick) -> int:
    """Tell heads of registrations waiting for their approval longer than allowed."""
    today = tick.now.astimezone(tick.settings.zone).date()
    waiting = await alerts.overdue_approvals(
        session, waiting_since=tick.now - tick.settings.pending_alert_after, today=today
    )
    if not waiting:
        return 0
    tree = await unit_tree(session)
    by_head: dict[int, list[Registration]] = {}
    for registration in waiting:
        person = registration.person
        heads = heads_for(tree, person.unit_id, not_person=person.id)
        for head in heads:
            by_head.setdefault(head, []).append(registration)
    repos = Repos(session)
    for head, registrations in by_head.items():
        first = registrations[0].id
        await notify(
            repos,
            head,
            "unit.approvals_waiting",
            f"approvals-waiting:{head}:{first}:{tick.now.isoformat()}",
            approvals_reply(registrations, tick),
            due_at=tick.now,
        )
    # Registrations whose unit has no head anywhere stay unmarked: a head added later
    # is told. Those with heads are told once.
    told = {r.id for registrations in by_head.values() for r in registrations}
    await alerts.mark_alerted(session, sorted(told), tick.now)
    return len(told)


def quota_holders(
    tree: UnitTree, training_class: TrainingClass, seats: Sequence[Seat]
) -> dict[int, list[Seat]]:
    """Return, per unit with a quota in the class, the registrations that count against it.

    A registration counts against the quota of the nearest unit, from the person's unit
    upward, that has one (as db.catalog.quota_use counts); the waitlisted are listed too.
    """
    quota_units = {quota.unit_id for quota in training_class.quotas}
    holders: dict[int, list[Seat]] = {unit: [] for unit in quota_units}
    for seat in seats:
        binding = next((u for u in tree.chain(seat.unit_id) if u in quota_units), None)
        if binding is not None:
            holders[binding].append(seat)
    return holders


def deadline_reply(
    training_class: TrainingClass,
    unit_name: str,
    seats: int,
    holders: Sequence[Seat],
    days: int,
) -> Reply:
    """Return the warning that a unit's quota is unfilled with the deadline near."""
    used = sum(1 for seat in holders if seat.status in QUOTA_STATUSES)
    facts = {
        **about(training_class),
        "deadline": training_class.registration_deadline,
        "days": days,
        "unit": unit_name,
        "used": used,
        "seats": seats,
    }
    lines = [Msg("alert.deadline_today", facts)] if days == 0 else [Msg("alert.deadline", facts)]
    if holders:
        lines.append(Msg("alert.deadline_registered"))
        for seat in holders[:MAX_LINES]:
            lines.append(
                Msg("alert.person_line", {"name": seat.name, "status": status_name(seat.status)})
            )
        lines += _more(min(len(holders), MAX_LINES), len(holders))
    else:
        lines.append(Msg("alert.deadline_nobody"))
    buttons = ((Button(Msg("alert.nominate"), unit_class_data(training_class.id)),),)
    return Reply(tuple(lines), buttons)


async def warn_deadlines(session: AsyncSession, tick: Tick) -> int:
    """Warn heads whose unit's quota is unfilled a few days before the deadline."""
    today = tick.now.astimezone(tick.settings.zone).date()
    last = today + dt.timedelta(days=tick.settings.deadline_warning_days)
    classes = await alerts.deadline_classes(session, first=today, last=last)
    if not classes:
        return 0
    tree = await unit_tree(session)
    repos = Repos(session)
    warned = 0
    for training_class in classes:
        days = (training_class.registration_deadline - today).days
        seats = await alerts.live_seats(session, training_class.id)
        holders = quota_holders(tree, training_class, seats)
        for quota in training_class.quotas:
            counted = holders.get(quota.unit_id, [])
            if sum(1 for seat in counted if seat.status in QUOTA_STATUSES) >= quota.seats:
                continue
            reply = deadline_reply(
                training_class, tree.names.get(quota.unit_id, ""), quota.seats, counted, days
            )
            deadline = training_class.registration_deadline.isoformat()
            for head in heads_for(tree, quota.unit_id):
                queued = await notify(
                    repos,
                    head,
                    "unit.deadline_warning",
                    f"deadline:{training_class.id}:{deadline}:{quota.unit_id}:{head}",
                    reply,
                    due_at=tick.now,
                )
                warned += int(queued)
    return warned


async def report_lost_contacts(session: AsyncSession, tick: Tick) -> int:
    """Tell heads (and whoever nominated them) of people the bot can no longer reach."""
    since = (tick.last_run or tick.now - dt.timedelta(days=1)) - LOOK_BACK
    lost = await alerts.lost_contacts(session, since=since)
    if not lost:
        return 0
    tree = await unit_tree(session)
    repos = Repos(session)
    today = tick.now.astimezone(tick.settings.zone).date()
    told = 0
    for contact in lost:
        person = contact.person
        registrations = await alerts.upcoming_registrations(session, person.id, today)
        nominators = [
            r.registered_by_id
            for r in registrations
            if r.registered_by_id is not None and r.registered_by_id != person.id
        ]
        recipients = dict.fromkeys(
            [*heads_for(tree, person.unit_id, not_person=person.id), *nominators]
        )
        lines = [
            Msg(
                "alert.unreachable",
                {
                    "name": person.full_name,
                    "unit": person.unit.name,
                    "channel": contact.channel.capitalize(),
                },
            )
        ]
        if registrations:
            codes = ", ".join(r.training_class.code for r in registrations)
            lines.append(Msg("alert.unreachable_classes", {"classes": codes}))
        by_zns = kinds_by_zns(tick.settings.chat)
        if by_zns and await zns.reached_by_zns(session, person.id):
            # What still reaches them by ZNS, so the head knows what is left to tell them.
            lines += [*still_by_zns(by_zns), Msg("zns.unreachable_hint")]
        else:
            lines.append(Msg("alert.unreachable_hint"))
        reply = Reply(tuple(lines))
        for head in recipients:
            queued = await notify(
                repos,
                head,
                "unit.person_unreachable",
                f"unreachable:{person.id}:{contact.since.isoformat()}:{head}",
                reply,
                due_at=tick.now,
            )
            told += int(queued)
    return told
