"""What a person is told when the waitlist moves: a seat offered to them, an offer lapsed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from db.models import Registration, TrainingClass
from db.repos import Repos
from handlers.labels import local_time
from handlers.notices import notify
from handlers.types import Button, Msg, Reply

ACCEPT_OFFER = "oa"
DECLINE_OFFER = "od"


def accept_offer_data(registration_id: int) -> str:
    """Return the data of the button that takes an offered seat."""
    return f"{ACCEPT_OFFER}:{registration_id}"


def decline_offer_data(registration_id: int) -> str:
    """Return the data of the button that turns an offered seat down."""
    return f"{DECLINE_OFFER}:{registration_id}"


def _about(training_class: TrainingClass) -> dict[str, str | dt.date | Msg | int | None]:
    return {
        "code": training_class.code,
        "title": training_class.title,
        "start": training_class.start_date,
        "end": training_class.end_date,
    }


def offer_reply(registration: Registration, training_class: TrainingClass, zone: ZoneInfo) -> Reply:
    """Return the message that offers a freed seat, with Accept and Decline buttons."""
    assert registration.offer_expires_at is not None
    expires = local_time(registration.offer_expires_at, zone)
    return Reply(
        lines=(Msg("notice.offered", {**_about(training_class), "expires": expires}),),
        buttons=(
            (
                Button(Msg("offer.accept"), accept_offer_data(registration.id)),
                Button(Msg("offer.decline"), decline_offer_data(registration.id)),
            ),
        ),
    )


async def notify_offers(
    repos: Repos, offers: Sequence[Registration], *, now: dt.datetime, zone: ZoneInfo
) -> None:
    """Tell each person offered a seat; one notice per offer, however often it is queued."""
    for registration in offers:
        training_class = await repos.classes.by_id(registration.class_id)
        if training_class is None or registration.offer_expires_at is None:
            continue
        await notify(
            repos,
            registration.person_id,
            "registration.offered",
            f"offered:{registration.id}:{registration.offer_expires_at.isoformat()}",
            offer_reply(registration, training_class, zone),
            due_at=now,
        )


async def notify_lapsed(repos: Repos, registration: Registration, *, now: dt.datetime) -> None:
    """Tell a person that the seat held for them passed on."""
    training_class = await repos.classes.by_id(registration.class_id)
    if training_class is None:
        return
    await notify(
        repos,
        registration.person_id,
        "registration.offer_lapsed",
        f"offer-lapsed:{registration.id}",
        Reply(lines=(Msg("notice.offer_lapsed", _about(training_class)),)),
        due_at=now,
    )
