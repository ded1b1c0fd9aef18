"""Seats, waitlist, offers and approvals: the registration changes that must hold under load.

Every change that can take or free a seat first locks the class's row (SELECT … FOR
UPDATE on PostgreSQL; on SQLite every unit of work holds the write lock from BEGIN
IMMEDIATE), so two people pressing Register for the last seat at once, in one process or
several, are decided one after the other on fresh counts. Functions here never commit:
the caller's unit of work does, together with the chat state and any notices.

Seats are held by SEAT_STATUSES (confirmed, pending approval, offered). A freed seat goes
to the waitlist in order of registration: the first person whose unit quota is not used
up is OFFERED it until `offer_expires_at`; then it passes on. No seat is offered once the
class has started.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from db.catalog import ClassRepo
from db.models import (
    LIVE_REGISTRATION_STATUSES,
    ClassSession,
    ClassStatus,
    Person,
    Registration,
    RegistrationStatus,
    TrainingClass,
    Unit,
)
from db.rules import SEAT_STATUSES, Reason, Refusal, dates_overlap, refusal_reasons, seats_left
from db.units import descendants

# Reasons stored on registrations that ended without the person's choice.
OFFER_EXPIRED = "offer_expired"
OFFER_DECLINED = "offer_declined"
NOMINATION_DECLINED = "nomination_declined"
CANCELLED_BY_PERSON = "cancelled_by_person"


@dataclass(frozen=True)
class Registered:
    """A registration was made: its row and, when waitlisted, its place in the queue."""

    registration: Registration
    position: int | None = None


@dataclass(frozen=True)
class Refused:
    """The registration was refused, for these reasons."""

    reasons: list[Reason]


@dataclass(frozen=True)
class Changed:
    """A registration changed; `offers` are the seats it freed, now offered to others."""

    registration: Registration
    offers: list[Registration] = field(default_factory=list)


class NotAllowed(Exception):
    """The change does not apply (any more): wrong person, wrong status, class started."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


async def lock_class(session: AsyncSession, class_id: int) -> TrainingClass | None:
    """Return the class, locked until the unit of work ends, or None when it is gone."""
    stmt = (
        select(TrainingClass)
        .where(TrainingClass.id == class_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).first()


async def class_starts_at(
    session: AsyncSession, training_class: TrainingClass, zone: ZoneInfo
) -> dt.datetime:
    """Return when the class starts: its first session, else the start of its first day."""
    first = await session.scalar(
        select(func.min(ClassSession.starts_at)).where(ClassSession.class_id == training_class.id)
    )
    if first is not None:
        return first
    return dt.datetime.combine(training_class.start_date, dt.time(), tzinfo=zone)


def offer_deadline(now: dt.datetime, starts_at: dt.datetime, window: dt.timedelta) -> dt.datetime:
    """Return when an offer made now lapses: after `window`, or halfway to the start if sooner.

    Halving the time left keeps room for the next person on the waitlist.
    """
    return min(now + window, now + (starts_at - now) / 2)


async def seats_taken(session: AsyncSession, class_id: int) -> int:
    """Return how many seats of the class are held."""
    stmt = select(func.count()).where(
        Registration.class_id == class_id, Registration.status.in_(SEAT_STATUSES)
    )
    return (await session.scalar(stmt)) or 0


async def live_registration(
    session: AsyncSession, person_id: int, class_id: int
) -> Registration | None:
    """Return the person's live registration for the class, or None."""
    stmt = select(Registration).where(
        Registration.person_id == person_id,
        Registration.class_id == class_id,
        Registration.status.in_(LIVE_REGISTRATION_STATUSES),
    )
    return (await session.scalars(stmt)).first()


async def held_classes(session: AsyncSession, person_id: int) -> list[TrainingClass]:
    """Return the classes in which the person holds a seat."""
    stmt = (
        select(TrainingClass)
        .join(Registration, Registration.class_id == TrainingClass.id)
        .where(Registration.person_id == person_id, Registration.status.in_(SEAT_STATUSES))
    )
    return list((await session.scalars(stmt)).all())


async def clashing_class(
    session: AsyncSession, person_id: int, training_class: TrainingClass
) -> TrainingClass | None:
    """Return a class on the same days in which the person holds a seat, or None."""
    for other in await held_classes(session, person_id):
        if other.id != training_class.id and dates_overlap(training_class, other):
            return other
    return None


async def waitlist_position(session: AsyncSession, registration: Registration) -> int:
    """Return the registration's place on its class's waitlist, from 1."""
    stmt = select(func.count()).where(
        Registration.class_id == registration.class_id,
        Registration.status == RegistrationStatus.WAITLISTED,
        Registration.id <= registration.id,
    )
    return (await session.scalar(stmt)) or 1


async def check(
    session: AsyncSession,
    person: Person,
    training_class: TrainingClass,
    today: dt.date,
    *,
    now: dt.datetime,
    zone: ZoneInfo,
) -> list[Reason]:
    """Return why `person` may not register for the class today (empty: they may).

    A class whose first session has begun is refused too: a deadline may fall on the first
    day, and a waitlist then could never move.
    """
    quota = (await ClassRepo(session).quota_use(person.unit_id, [training_class.id])).get(
        training_class.id
    )
    existing = await live_registration(session, person.id, training_class.id)
    reasons = refusal_reasons(
        person,
        training_class,
        today,
        quota,
        registered=existing.status if existing else None,
        held=await held_classes(session, person.id),
    )
    if now >= await class_starts_at(session, training_class, zone):
        reasons.insert(0, Reason(Refusal.STARTED, {"start": training_class.start_date}))
    return reasons


async def register(
    session: AsyncSession,
    person: Person,
    class_id: int,
    *,
    today: dt.date,
    now: dt.datetime,
    zone: ZoneInfo,
    registered_by: Person | None = None,
) -> Registered | Refused | None:
    """Register `person` for the class: a seat if one is free, else the waitlist.

    A class that requires approval gives a pending seat, unless a unit head nominated the
    person (`registered_by`), which is the approval. Returns None when the class is gone.
    """
    training_class = await lock_class(session, class_id)
    if training_class is None:
        return None
    reasons = await check(session, person, training_class, today, now=now, zone=zone)
    if reasons:
        return Refused(reasons)
    free = seats_left(training_class.capacity, await seats_taken(session, class_id))
    if not free:
        status = RegistrationStatus.WAITLISTED
    elif training_class.requires_approval and registered_by is None:
        status = RegistrationStatus.PENDING_APPROVAL
    else:
        status = RegistrationStatus.CONFIRMED
    registration = Registration(
        person_id=person.id,
        class_id=class_id,
        status=status,
        registered_by_id=registered_by.id if registered_by else None,
    )
    session.add(registration)
    await session.flush()
    position = None
    if status == RegistrationStatus.WAITLISTED:
        position = await waitlist_position(session, registration)
    return Registered(registration, position)


async def offer_free_seats(
    session: AsyncSession,
    training_class: TrainingClass,
    *,
    now: dt.datetime,
    zone: ZoneInfo,
    window: dt.timedelta,
) -> list[Registration]:
    """Offer the class's free seats down the waitlist; return the new offers.

    The class must be locked. People whose unit quota is used up are passed over and keep
    their place. Nothing is offered once the class has started.
    """
    if training_class.status == ClassStatus.CANCELLED:
        return []
    starts_at = await class_starts_at(session, training_class, zone)
    if now >= starts_at:
        return []
    free = seats_left(training_class.capacity, await seats_taken(session, training_class.id))
    if not free:
        return []
    stmt = (
        select(Registration)
        .options(joinedload(Registration.person))
        .where(
            Registration.class_id == training_class.id,
            Registration.status == RegistrationStatus.WAITLISTED,
        )
        .order_by(Registration.id)
    )
    waiting = list((await session.scalars(stmt)).all())
    repo = ClassRepo(session)
    expires_at = offer_deadline(now, starts_at, window)
    offers: list[Registration] = []
    for registration in waiting:
        if len(offers) == free:
            break
        quota = (await repo.quota_use(registration.person.unit_id, [training_class.id])).get(
            training_class.id
        )
        if quota is not None and quota.used_up:
            continue
        if await clashing_class(session, registration.person_id, training_class) is not None:
            continue  # they took a class on the same days meanwhile: they keep their place
        registration.status = RegistrationStatus.OFFERED
        registration.offer_expires_at = expires_at
        await session.flush()  # the next quota count sees this offer
        offers.append(registration)
    return offers


async def _own_registration(
    session: AsyncSession, registration_id: int, person_id: int
) -> tuple[Registration, TrainingClass]:
    registration = await session.get(Registration, registration_id)
    if registration is None or registration.person_id != person_id:
        raise NotAllowed("not_found")
    training_class = await lock_class(session, registration.class_id)
    if training_class is None:
        raise NotAllowed("not_found")
    await session.refresh(registration)
    return registration, training_class


async def _end(
    session: AsyncSession,
    registration: Registration,
    training_class: TrainingClass,
    status: RegistrationStatus,
    reason: str,
    *,
    now: dt.datetime,
    zone: ZoneInfo,
    window: dt.timedelta,
) -> Changed:
    held_seat = registration.status in SEAT_STATUSES
    registration.status = status
    registration.reason = reason
    registration.offer_expires_at = None
    await session.flush()
    offers = []
    if held_seat:
        offers = await offer_free_seats(session, training_class, now=now, zone=zone, window=window)
    return Changed(registration, offers)


async def cancel(
    session: AsyncSession,
    registration_id: int,
    person_id: int,
    *,
    now: dt.datetime,
    zone: ZoneInfo,
    window: dt.timedelta,
    reason: str = CANCELLED_BY_PERSON,
) -> Changed:
    """Cancel the person's own registration before the class starts; its seat is offered on."""
    registration, training_class = await _own_registration(session, registration_id, person_id)
    if registration.status not in (
        RegistrationStatus.CONFIRMED,
        RegistrationStatus.PENDING_APPROVAL,
        RegistrationStatus.WAITLISTED,
        RegistrationStatus.OFFERED,
    ):
        raise NotAllowed("not_live")
    if now >= await class_starts_at(session, training_class, zone):
        raise NotAllowed("started")
    return await _end(
        session,
        registration,
        training_class,
        RegistrationStatus.CANCELLED,
        reason,
        now=now,
        zone=zone,
        window=window,
    )


async def accept_offer(
    session: AsyncSession,
    registration_id: int,
    person_id: int,
    *,
    now: dt.datetime,
    zone: ZoneInfo,
    window: dt.timedelta,
) -> Changed:
    """Take an offered seat: confirmed, or pending approval when the class requires it.

    An offer that has lapsed (before the sweep ran) is ended here and its seat passed on:
    the result's registration is then CANCELLED with reason OFFER_EXPIRED.
    """
    registration, training_class = await _own_registration(session, registration_id, person_id)
    if registration.status != RegistrationStatus.OFFERED:
        raise NotAllowed("no_offer")
    if training_class.status == ClassStatus.CANCELLED:
        raise NotAllowed("class_cancelled")
    if await clashing_class(session, person_id, training_class) is not None:
        # The offer stays: cancelling the other class first makes it acceptable.
        raise NotAllowed("dates_clash")
    expires_at = registration.offer_expires_at
    if expires_at is None or expires_at <= now:
        return await _end(
            session,
            registration,
            training_class,
            RegistrationStatus.CANCELLED,
            OFFER_EXPIRED,
            now=now,
            zone=zone,
            window=window,
        )
    approval = training_class.requires_approval and registration.registered_by_id is None
    registration.status = (
        RegistrationStatus.PENDING_APPROVAL if approval else RegistrationStatus.CONFIRMED
    )
    registration.offer_expires_at = None
    await session.flush()
    return Changed(registration)


async def decline_offer(
    session: AsyncSession,
    registration_id: int,
    person_id: int,
    *,
    now: dt.datetime,
    zone: ZoneInfo,
    window: dt.timedelta,
) -> Changed:
    """Turn down an offered seat; it passes to the next person on the waitlist."""
    registration, training_class = await _own_registration(session, registration_id, person_id)
    if registration.status != RegistrationStatus.OFFERED:
        raise NotAllowed("no_offer")
    return await _end(
        session,
        registration,
        training_class,
        RegistrationStatus.CANCELLED,
        OFFER_DECLINED,
        now=now,
        zone=zone,
        window=window,
    )


@dataclass(frozen=True)
class Lapsed:
    """An offer that ran out, and the offers made with the seat it freed."""

    registration: Registration
    offers: list[Registration]


async def expire_offers(
    session: AsyncSession, *, now: dt.datetime, zone: ZoneInfo, window: dt.timedelta
) -> list[Lapsed]:
    """End every offer whose time is up and pass each seat on; return what changed."""
    stmt = (
        select(Registration.class_id)
        .where(
            Registration.status == RegistrationStatus.OFFERED,
            Registration.offer_expires_at <= now,
        )
        .distinct()
    )
    class_ids = sorted((await session.scalars(stmt)).all())
    lapsed: list[Lapsed] = []
    for class_id in class_ids:
        training_class = await lock_class(session, class_id)
        if training_class is None:
            continue
        due = select(Registration).where(
            Registration.class_id == class_id,
            Registration.status == RegistrationStatus.OFFERED,
            Registration.offer_expires_at <= now,
        )
        expired = list((await session.scalars(due.execution_options(populate_existing=True))).all())
        for registration in expired:
            changed = await _end(
                session,
                registration,
                training_class,
                RegistrationStatus.CANCELLED,
                OFFER_EXPIRED,
                now=now,
                zone=zone,
                window=window,
            )
            lapsed.append(Lapsed(registration, changed.offers))
    return lapsed


async def units_under(session: AsyncSession, unit_id: int) -> set[int]:
    """Return the unit's id and the ids of every unit below it."""
    rows = await session.execute(select(Unit.id, Unit.parent_id))
    return descendants({child: parent for child, parent in rows}, unit_id)


async def decide(
    session: AsyncSession,
    registration_id: int,
    decided_by: Person | None,
    *,
    approve: bool,
    reason: str | None,
    scope: set[int] | None,
    now: dt.datetime,
    zone: ZoneInfo,
    window: dt.timedelta,
) -> Changed:
    """Approve or reject a pending registration of a person in `scope` (unit ids; None: all).

    `decided_by` is the person deciding (None: a web admin account with no roster
    person). A rejection frees the seat, which is offered down the waitlist.
    """
    registration = await session.get(
        Registration, registration_id, options=[joinedload(Registration.person)]
    )
    if registration is None:
        raise NotAllowed("not_found")
    if scope is not None and registration.person.unit_id not in scope:
        raise NotAllowed("not_your_unit")
    if scope is not None and decided_by is not None and registration.person_id == decided_by.id:
        # A unit head's own registration is decided above them: a higher unit or the school.
        raise NotAllowed("own_registration")
    training_class = await lock_class(session, registration.class_id)
    if training_class is None:
        raise NotAllowed("not_found")
    await session.refresh(registration)
    if registration.status != RegistrationStatus.PENDING_APPROVAL:
        raise NotAllowed("not_pending")
    registration.decided_by_id = decided_by.id if decided_by is not None else None
    if approve:
        registration.status = RegistrationStatus.CONFIRMED
        await session.flush()
        return Changed(registration)
    return await _end(
        session,
        registration,
        training_class,
        RegistrationStatus.REJECTED,
        reason or "",
        now=now,
        zone=zone,
        window=window,
    )


async def registrations_of(
    session: AsyncSession, person_id: int, *, statuses: Sequence[RegistrationStatus]
) -> list[Registration]:
    """Return the person's registrations in these statuses with their classes, soonest first."""
    stmt = (
        select(Registration)
        .options(joinedload(Registration.training_class))
        .join(TrainingClass, TrainingClass.id == Registration.class_id)
        .where(Registration.person_id == person_id, Registration.status.in_(statuses))
        .order_by(TrainingClass.start_date, Registration.id)
    )
    return list((await session.scalars(stmt)).all())
