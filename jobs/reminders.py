"""Reminders before a class, and the link to an online class the day before.

The sweeps run every minute. Due times are the class's, not each registration's, so a
sweep looks only at classes about to start and, in them, at confirmed seats not yet told
of the latest time that has come: a quiet sweep reads a handful of rows.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.ext.asyncio import AsyncSession

from db import reminders
from db.models import Form
from db.reminders import Starting
from db.repos import Repos
from handlers.callbacks import class_data
from handlers.labels import local_time
from handlers.notices import notify
from handlers.registration import about, my_button
from handlers.types import Button, Msg, Reply
from jobs.runner import Tick
from jobs.timing import ReminderOffset, latest_due

log = logging.getLogger(__name__)


def _horizon(offsets: tuple[ReminderOffset, ...]) -> dt.timedelta:
    """Return how far ahead of a class's first day its earliest reminder can fall."""
    spans = [offset.before or dt.timedelta(days=offset.days) for offset in offsets]
    return max(spans, default=dt.timedelta()) + dt.timedelta(days=1)


async def _starting(
    session: AsyncSession, tick: Tick, offsets: tuple[ReminderOffset, ...]
) -> list[Starting]:
    today = tick.now.astimezone(tick.settings.zone).date()
    return await reminders.classes_starting(
        session,
        # A class whose first session comes a day after its first date is still ahead.
        first_day=today - dt.timedelta(days=1),
        last_day=today + _horizon(offsets),
        zone=tick.settings.zone,
    )


def when_it_starts(starting: Starting, tick: Tick) -> Msg:
    """Return when the class starts in words: its first session's time, else its first day."""
    if starting.start.scheduled:
        return Msg("reminder.at", {"when": local_time(starting.start.at, tick.settings.zone)})
    return Msg("reminder.first_day", {"date": starting.training_class.start_date})


def _place(starting: Starting) -> Msg:
    if starting.training_class.form == Form.ONLINE:
        return Msg("reminder.online")
    if starting.place:
        return Msg("reminder.place", {"place": starting.place})
    return Msg("reminder.place_unknown")


def reminder_reply(starting: Starting, tick: Tick) -> Reply:
    """Return the reminder of a class: what, when, where, with its detail and /my."""
    training_class = starting.training_class
    return Reply(
        lines=(
            Msg(
                "reminder.headline",
                {**about(training_class), "when": when_it_starts(starting, tick)},
            ),
            _place(starting),
        ),
        buttons=(
            (
                Button(Msg("register.back_to_class"), class_data(training_class.id)),
                my_button(),
            ),
        ),
    )


async def send_reminders(session: AsyncSession, tick: Tick) -> int:
    """Queue the latest due reminder of every confirmed seat not yet told of it."""
    offsets = tick.settings.reminders
    if not offsets:
        return 0
    repos = Repos(session)
    queued = 0
    for starting in await _starting(session, tick, offsets):
        due = latest_due(offsets, starting.start, tick.settings.zone, tick.now)
        if due is None:
            continue
        seats = await reminders.unreminded(session, starting.training_class.id, due.at)
        if not seats:
            continue
        reply = reminder_reply(starting, tick)
        for registration_id, person_id in seats:
            await notify(
                repos,
                person_id,
                "class.reminder",
                f"reminder:{registration_id}:{due.at.isoformat()}",
                reply,
                due_at=tick.now,
                urgent=due.urgent,
                expires_at=starting.start.at,
                # A newer reminder replaces one still waiting (quiet hours): never a burst.
                group_key=f"reminder:{registration_id}",
            )
        await reminders.mark_reminded(session, [seat[0] for seat in seats], due.at)
        queued += len(seats)
        log.info("reminders: %d queued for class %s", len(seats), starting.training_class.id)
    return queued


async def send_online_links(session: AsyncSession, tick: Tick) -> int:
    """Queue the link of each online class, once it is due, to every confirmed seat.

    Each seat gets it once: a link changed afterwards reaches them as a class change.
    """
    offsets = (tick.settings.online_link,)
    repos = Repos(session)
    queued = 0
    for starting in await _starting(session, tick, offsets):
        training_class = starting.training_class
        url = (training_class.online_url or "").strip()
        if training_class.form != Form.ONLINE or not url:
            continue
        if latest_due(offsets, starting.start, tick.settings.zone, tick.now) is None:
            continue
        seats = await reminders.confirmed_without_notice(session, training_class.id, "online-link:")
        reply = Reply(
            lines=(
                Msg(
                    "reminder.online_link",
                    {**about(training_class), "when": when_it_starts(starting, tick), "url": url},
                ),
            ),
            buttons=((Button(Msg("register.back_to_class"), class_data(training_class.id)),),),
        )
        for registration_id, person_id in seats:
            await notify(
                repos,
                person_id,
                "class.online_link",
                f"online-link:{registration_id}",
                reply,
                due_at=tick.now,
                expires_at=starting.start.at,
            )
        queued += len(seats)
    return queued
