"""Tell a class's registrants at once when its dates, schedule, place or link change, or
when it is cancelled.

However the class changed (an import, the web admin), the sweep compares the class with
what was last announced to its registrants (`training_class.announced`) and tells them
the difference in the same unit of work that records the new announcement, so a change
is told once, and a change made while the service was down is told when it is back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db import reminders
from db.models import ClassStatus, TrainingClass
from db.repos import Repos
from handlers.callbacks import class_data
from handlers.labels import local_time
from handlers.notices import notify
from handlers.registration import about
from handlers.types import Button, Msg, Reply
from jobs.runner import Tick

log = logging.getLogger(__name__)


def announcement(training_class: TrainingClass) -> dict[str, Any]:
    """Return what registrants are told of a class: dates, schedule, place, link, status."""
    return {
        "start": training_class.start_date.isoformat(),
        "end": training_class.end_date.isoformat(),
        "location": training_class.location,
        "online_url": training_class.online_url or "",
        "cancelled": training_class.status == ClassStatus.CANCELLED,
        "sessions": [
            [s.starts_at.isoformat(), s.ends_at.isoformat(), s.location or ""]
            for s in training_class.sessions
        ],
    }


def _tag(announced: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(announced, sort_keys=True).encode()).hexdigest()[:16]


def change_lines(
    training_class: TrainingClass, old: dict[str, Any], new: dict[str, Any], tick: Tick
) -> list[Msg]:
    """Return the message telling what changed between two announcements of the class."""
    facts = about(training_class)
    if new["cancelled"] and not old["cancelled"]:
        return [Msg("change.cancelled", facts)]
    if new["cancelled"]:
        return []  # still cancelled: nothing its registrants need to hear
    lines = [Msg("change.reopened", facts)] if old["cancelled"] else [Msg("change.headline", facts)]
    if (old["start"], old["end"]) != (new["start"], new["end"]):
        lines.append(
            Msg(
                "change.dates",
                {
                    "start": training_class.start_date,
                    "end": training_class.end_date,
                    "old_start": dt.date.fromisoformat(old["start"]),
                    "old_end": dt.date.fromisoformat(old["end"]),
                },
            )
        )
    if old["location"] != new["location"] and new["location"]:
        lines.append(
            Msg(
                "change.location",
                {"location": new["location"], "old_location": old["location"] or "—"},
            )
        )
    if old["sessions"] != new["sessions"]:
        if training_class.sessions:
            first = training_class.sessions[0]
            place = first.location or training_class.location
            lines.append(
                Msg(
                    "change.schedule",
                    {
                        "first": local_time(first.starts_at, tick.settings.zone),
                        "place": place or "—",
                        "count": len(training_class.sessions),
                    },
                )
            )
        else:
            lines.append(Msg("change.schedule_removed"))
    if old["online_url"] != new["online_url"] and new["online_url"]:
        lines.append(Msg("change.online_url", {"url": new["online_url"]}))
    # Only the headline: what changed is nothing registrants are told of (e.g. a session
    # topic), or a reopened class with nothing else new.
    if len(lines) == 1 and not old["cancelled"]:
        return []
    return lines


async def announce_changes(session: AsyncSession, tick: Tick) -> int:
    """Tell registrants of every class that changed since it was last announced."""
    repos = Repos(session)
    today = tick.now.astimezone(tick.settings.zone).date()
    told = 0
    for training_class in await reminders.classes_not_ended(session, today):
        new = announcement(training_class)
        old = training_class.announced
        if old == new:
            continue
        training_class.announced = new
        if old is None:
            continue  # a new class: its registrants learn everything when they register
        lines = change_lines(training_class, old, new, tick)
        dates_moved = (old["start"], old["end"], old["sessions"]) != (
            new["start"],
            new["end"],
            new["sessions"],
        )
        if new["cancelled"] or dates_moved:
            await reminders.skip_reminders(session, training_class.id, "class changed")
        if not lines:
            continue
        reply = Reply(
            lines=tuple(lines),
            buttons=((Button(Msg("register.back_to_class"), class_data(training_class.id)),),),
        )
        tag = _tag(new)
        people = await reminders.live_registrants(session, training_class.id)
        for person_id in people:
            await notify(
                repos,
                person_id,
                "class.cancelled" if new["cancelled"] else "class.changed",
                f"class-change:{training_class.id}:{tag}:{person_id}",
                reply,
                due_at=tick.now,
                urgent=True,
            )
        told += len(people)
        log.info("class %s changed: %d registrants told", training_class.id, len(people))
    return told
