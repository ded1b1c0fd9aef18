"""What a learner is told when a unit head or the school's staff decide on their registration.

The chat's /unit and the web admin queue the same notices through these, in the unit of
work of the change, so a decision reads the same whichever way it was taken.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from db.models import TrainingClass
from db.registrations import Changed
from db.repos import Repos
from handlers.notices import notify
from handlers.seat_notices import notify_offers
from handlers.types import Msg, Param, Reply


def about(training_class: TrainingClass) -> dict[str, Param]:
    """Return the parameters that name a class in notices."""
    return {
        "code": training_class.code,
        "title": training_class.title,
        "start": training_class.start_date,
        "end": training_class.end_date,
    }


async def tell_decision(
    repos: Repos,
    changed: Changed,
    training_class: TrainingClass,
    rejection: Msg | str | None,
    *,
    now: dt.datetime,
    zone: ZoneInfo,
) -> None:
    """Tell the learner their registration was approved (no `rejection`) or rejected and why.

    A rejection's freed seat was offered down the waitlist: those offered are told too.
    """
    registration = changed.registration
    if rejection is None:
        kind, notice = "approved", Msg("unit.notice_approved", about(training_class))
    else:
        kind = "rejected"
        notice = Msg("unit.notice_rejected", {**about(training_class), "reason": rejection})
    await notify(
        repos,
        registration.person_id,
        f"registration.{kind}",
        f"{kind}:{registration.id}",
        Reply((notice,)),
        due_at=now,
    )
    await notify_offers(repos, changed.offers, now=now, zone=zone)


async def tell_cancelled_by_staff(
    repos: Repos,
    changed: Changed,
    training_class: TrainingClass,
    *,
    now: dt.datetime,
    zone: ZoneInfo,
) -> None:
    """Tell the learner the school cancelled their registration; tell those offered its seat."""
    registration = changed.registration
    await notify(
        repos,
        registration.person_id,
        "registration.cancelled_by_staff",
        f"cancelled-by-staff:{registration.id}",
        Reply((Msg("staff.notice_cancelled", about(training_class)),)),
        due_at=now,
    )
    await notify_offers(repos, changed.offers, now=now, zone=zone)
