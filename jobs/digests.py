"""Daily reports: each unit head's digest of what changed in their units, and the admins'
summary of registrations, classes filling up and delivery."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from db import alerts, outbox
from db.models import OutboxStatus, RegistrationStatus, TrainingClass
from db.repos import Repos
from db.units import unit_tree
from handlers.notices import notify
from handlers.registration import about
from handlers.types import Button, Msg, Reply
from handlers.unit_buttons import unit_page_data
from jobs.runner import Tick

log = logging.getLogger(__name__)

# Classes listed in one digest, and classes near capacity in one summary.
MAX_CLASSES = 15
NEARLY_FULL = 0.9
ENDED = (RegistrationStatus.CANCELLED, RegistrationStatus.REJECTED)


def _window(tick: Tick) -> tuple[dt.datetime, dt.datetime]:
    """Return the span a daily report covers: since its last run, at most a week."""
    start = tick.last_run or tick.now - dt.timedelta(days=1)
    return max(start, tick.now - dt.timedelta(days=7)), tick.now


@dataclass
class ClassNews:
    """What changed in one class for one head's units, and where it stands."""

    new: int = 0
    left: int = 0
    standing: Counter[RegistrationStatus] = field(default_factory=Counter)


def digest_reply(
    unit_name: str, today: dt.date, news: dict[int, ClassNews], classes: dict[int, TrainingClass]
) -> Reply:
    """Return a head's digest: per class, what changed and the registrations now."""
    lines = [Msg("digest.headline", {"date": today, "unit": unit_name})]
    ordered = sorted(news, key=lambda class_id: (classes[class_id].start_date, class_id))
    for class_id in ordered[:MAX_CLASSES]:
        item = news[class_id]
        standing = item.standing
        lines.append(
            Msg(
                "digest.class",
                {
                    **about(classes[class_id]),
                    "new": item.new,
                    "left": item.left,
                    "confirmed": standing[RegistrationStatus.CONFIRMED],
                    "pending": standing[RegistrationStatus.PENDING_APPROVAL],
                    "waiting": standing[RegistrationStatus.WAITLISTED]
                    + standing[RegistrationStatus.OFFERED],
                },
            )
        )
    if len(ordered) > MAX_CLASSES:
        lines.append(Msg("alert.more", {"count": len(ordered) - MAX_CLASSES}))
    return Reply(tuple(lines), ((Button(Msg("unit.menu"), unit_page_data(1)),),))


async def send_head_digests(session: AsyncSession, tick: Tick) -> int:
    """Send each unit head a digest of the day's changes in their units, if any."""
    start, end = _window(tick)
    changes = await alerts.changes_between(session, start, end)
    if not changes:
        return 0
    tree = await unit_tree(session)
    class_ids = sorted({change.class_id for change in changes})
    counts = await alerts.status_counts(session, class_ids)
    classes = await alerts.classes_by_id(session, class_ids)
    today = tick.now.astimezone(tick.settings.zone).date()
    repos = Repos(session)
    sent = 0
    heads = [(head, unit) for unit, people in tree.heads.items() for head in people]
    for head, unit_id in sorted(heads):
        scope = tree.subtree(unit_id)
        news: dict[int, ClassNews] = {}
        for change in changes:
            if change.unit_id not in scope:
                continue
            item = news.setdefault(change.class_id, ClassNews())
            if change.new:
                item.new += 1
            elif change.status in ENDED:
                item.left += 1
        if not news:
            continue
        for class_id, item in news.items():
            for unit in scope:
                item.standing.update(counts.get((class_id, unit), {}))
        await notify(
            repos,
            head,
            "unit.digest",
            f"digest:{head}:{today.isoformat()}",
            digest_reply(tree.names.get(unit_id, ""), today, news, classes),
            due_at=tick.now,
        )
        sent += 1
    return sent


async def summary_reply(session: AsyncSession, tick: Tick) -> Reply:
    """Return the admins' summary: new registrations, classes filling up, delivery."""
    start, end = _window(tick)
    today = tick.now.astimezone(tick.settings.zone).date()
    registered = await alerts.new_registrations(session, start, end)
    lines = [
        Msg("summary.headline", {"date": today}),
        Msg(
            "summary.registrations",
            {
                "count": sum(registered.values()),
                "confirmed": registered.get(RegistrationStatus.CONFIRMED, 0),
                "pending": registered.get(RegistrationStatus.PENDING_APPROVAL, 0),
                "waiting": registered.get(RegistrationStatus.WAITLISTED, 0)
                + registered.get(RegistrationStatus.OFFERED, 0),
                "ended": sum(registered.get(status, 0) for status in ENDED),
            },
        ),
    ]
    filling = await alerts.nearly_full(session, today, NEARLY_FULL)
    if filling:
        lines.append(Msg("summary.full_headline", {"percent": round(NEARLY_FULL * 100)}))
        for item in filling[:MAX_CLASSES]:
            lines.append(
                Msg(
                    "summary.full_line",
                    {
                        **about(item.training_class),
                        "taken": item.taken,
                        "capacity": item.training_class.capacity,
                        "waiting": item.waitlisted,
                    },
                )
            )
    else:
        lines.append(Msg("summary.none_full", {"percent": round(NEARLY_FULL * 100)}))
    settled, reasons = await alerts.delivery_between(session, start, end)
    queued = (await outbox.counts(session)).get(OutboxStatus.QUEUED, 0)
    lines.append(
        Msg(
            "summary.delivery",
            {
                "sent": settled.get(OutboxStatus.SENT, 0),
                "failed": settled.get(OutboxStatus.FAILED, 0),
                "queued": queued,
            },
        )
    )
    for reason, count in reasons:
        lines.append(Msg("summary.failure", {"count": count, "reason": reason[:120]}))
    return Reply(tuple(lines))


async def send_admin_summary(session: AsyncSession, tick: Tick) -> int:
    """Send every admin the daily summary."""
    repos = Repos(session)
    admins = await repos.people.admins(tick.settings.chat.admins)
    if not admins:
        return 0
    reply = await summary_reply(session, tick)
    today = tick.now.astimezone(tick.settings.zone).date()
    for admin in admins:
        await notify(
            repos,
            admin.id,
            "admin.summary",
            f"admin-summary:{admin.id}:{today.isoformat()}",
            reply,
            due_at=tick.now,
        )
    return len(admins)
