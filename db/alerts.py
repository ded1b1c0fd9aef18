"""Read queries of the unit heads' and admins' alerts, digests and summaries."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, joinedload

from db.models import (
    ChannelAccount,
    ClassQuota,
    ClassStatus,
    OutboxMessage,
    OutboxStatus,
    Person,
    Registration,
    RegistrationStatus,
    TrainingClass,
)
from db.rules import SEAT_STATUSES


async def overdue_approvals(
    session: AsyncSession, *, waiting_since: dt.datetime, today: dt.date
) -> list[Registration]:
    """Return pending registrations older than `waiting_since` that no head was alerted to.

    Only classes still ahead and not cancelled; with the person (and unit) and the class.
    """
    stmt = (
        select(Registration)
        .join(TrainingClass, TrainingClass.id == Registration.class_id)
        .options(joinedload(Registration.person), joinedload(Registration.training_class))
        .where(
            Registration.status == RegistrationStatus.PENDING_APPROVAL,
            Registration.created_at <= waiting_since,
            Registration.head_alerted_at.is_(None),
            TrainingClass.status != ClassStatus.CANCELLED,
            TrainingClass.start_date >= today,
        )
        .order_by(TrainingClass.start_date, Registration.id)
    )
    return list((await session.scalars(stmt)).all())


async def mark_alerted(session: AsyncSession, registration_ids: list[int], at: dt.datetime) -> None:
    """Record that the heads were told these registrations wait for them."""
    if registration_ids:
        await session.execute(
            update(Registration)
            .where(Registration.id.in_(registration_ids))
            .values(head_alerted_at=at)
        )


@dataclass(frozen=True)
class Seat:
    """A registration of a class as a unit head sees it: who, from which unit, status."""

    registration_id: int
    person_id: int
    name: str
    unit_id: int
    status: RegistrationStatus
    registered_by_id: int | None


async def deadline_classes(
    session: AsyncSession, *, first: dt.date, last: dt.date
) -> list[TrainingClass]:
    """Return open classes with quotas whose registration deadline is between the dates."""
    stmt = (
        select(TrainingClass)
        .options(joinedload(TrainingClass.quotas))
        .where(
            TrainingClass.status == ClassStatus.OPEN,
            TrainingClass.registration_deadline >= first,
            TrainingClass.registration_deadline <= last,
            exists().where(ClassQuota.class_id == TrainingClass.id),
        )
        .order_by(TrainingClass.registration_deadline, TrainingClass.id)
    )
    return list((await session.scalars(stmt)).unique().all())


async def live_seats(session: AsyncSession, class_id: int) -> list[Seat]:
    """Return the class's live registrations (seats held and waitlist), in order."""
    rows = await session.execute(
        select(
            Registration.id,
            Registration.person_id,
            Person.full_name,
            Person.unit_id,
            Registration.status,
            Registration.registered_by_id,
        )
        .join(Person, Person.id == Registration.person_id)
        .where(
            Registration.class_id == class_id,
            Registration.status.in_([*SEAT_STATUSES, RegistrationStatus.WAITLISTED]),
        )
        .order_by(Registration.created_at, Registration.id)
    )
    return [Seat(*row) for row in rows]


@dataclass(frozen=True)
class LostContact:
    """A person none of whose chat accounts the bot can reach any more."""

    person: Person
    channel: str
    since: dt.datetime


async def lost_contacts(session: AsyncSession, *, since: dt.datetime) -> list[LostContact]:
    """Return people whose account became unreachable after `since`, with no other left."""
    other = aliased(ChannelAccount)
    stmt = (
        select(ChannelAccount.channel, ChannelAccount.unreachable_since, Person)
        .join(Person, Person.id == ChannelAccount.person_id)
        .options(joinedload(Person.unit))
        .where(
            ChannelAccount.reachable.is_(False),
            ChannelAccount.unreachable_since > since,
            ~exists().where(other.person_id == Person.id, other.reachable.is_(True)),
        )
        .order_by(ChannelAccount.unreachable_since, ChannelAccount.id)
    )
    return [
        LostContact(person, channel, moment)
        for channel, moment, person in (await session.execute(stmt)).all()
        if moment is not None  # the query's condition holds it; this tells mypy
    ]


async def upcoming_registrations(
    session: AsyncSession, person_id: int, today: dt.date
) -> list[Registration]:
    """Return the person's live registrations in classes not yet ended, with the classes."""
    stmt = (
        select(Registration)
        .join(TrainingClass, TrainingClass.id == Registration.class_id)
        .options(joinedload(Registration.training_class))
        .where(
            Registration.person_id == person_id,
            Registration.status.in_([*SEAT_STATUSES, RegistrationStatus.WAITLISTED]),
            TrainingClass.end_date >= today,
            TrainingClass.status != ClassStatus.CANCELLED,
        )
        .order_by(TrainingClass.start_date)
    )
    return list((await session.scalars(stmt)).all())


@dataclass(frozen=True)
class Change:
    """A registration created or changed in a digest's window."""

    class_id: int
    unit_id: int
    status: RegistrationStatus
    new: bool


async def changes_between(
    session: AsyncSession, start: dt.datetime, end: dt.datetime
) -> list[Change]:
    """Return the registrations created or changed in (start, end]."""
    rows = await session.execute(
        select(
            Registration.class_id,
            Person.unit_id,
            Registration.status,
            Registration.created_at,
        )
        .join(Person, Person.id == Registration.person_id)
        .where(
            (Registration.updated_at > start) | (Registration.created_at > start),
            Registration.updated_at <= end,
        )
    )
    return [
        Change(class_id, unit_id, status, created_at > start)
        for class_id, unit_id, status, created_at in rows
    ]


async def status_counts(
    session: AsyncSession, class_ids: list[int]
) -> dict[tuple[int, int], dict[RegistrationStatus, int]]:
    """Return, per (class, unit of the person), how many registrations are in each status."""
    counts: dict[tuple[int, int], dict[RegistrationStatus, int]] = {}
    if not class_ids:
        return counts
    rows = await session.execute(
        select(Registration.class_id, Person.unit_id, Registration.status, func.count())
        .join(Person, Person.id == Registration.person_id)
        .where(Registration.class_id.in_(class_ids))
        .group_by(Registration.class_id, Person.unit_id, Registration.status)
    )
    for class_id, unit_id, status, count in rows:
        counts.setdefault((class_id, unit_id), {})[RegistrationStatus(status)] = int(count)
    return counts


async def classes_by_id(session: AsyncSession, class_ids: list[int]) -> dict[int, TrainingClass]:
    """Return the classes with these ids."""
    if not class_ids:
        return {}
    rows = await session.scalars(select(TrainingClass).where(TrainingClass.id.in_(class_ids)))
    return {training_class.id: training_class for training_class in rows}


async def new_registrations(
    session: AsyncSession, start: dt.datetime, end: dt.datetime
) -> dict[RegistrationStatus, int]:
    """Return the registrations created in (start, end], by their status now."""
    rows = await session.execute(
        select(Registration.status, func.count())
        .where(Registration.created_at > start, Registration.created_at <= end)
        .group_by(Registration.status)
    )
    return {RegistrationStatus(status): int(count) for status, count in rows}


@dataclass(frozen=True)
class Filling:
    """An upcoming class and how full it is."""

    training_class: TrainingClass
    taken: int
    waitlisted: int


async def nearly_full(session: AsyncSession, today: dt.date, share: float) -> list[Filling]:
    """Return upcoming open classes with at least `share` of their seats taken, fullest first."""
    taken = (
        select(func.count())
        .where(Registration.class_id == TrainingClass.id, Registration.status.in_(SEAT_STATUSES))
        .correlate(TrainingClass)
        .scalar_subquery()
    )
    waiting = (
        select(func.count())
        .where(
            Registration.class_id == TrainingClass.id,
            Registration.status == RegistrationStatus.WAITLISTED,
        )
        .correlate(TrainingClass)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(TrainingClass, taken, waiting)
        .where(
            TrainingClass.status == ClassStatus.OPEN,
            TrainingClass.start_date >= today,
            TrainingClass.capacity > 0,
            taken >= TrainingClass.capacity * share,
        )
        .order_by(TrainingClass.start_date, TrainingClass.id)
    )
    found = [Filling(c, int(t), int(w)) for c, t, w in rows.all()]
    return sorted(found, key=lambda f: -f.taken / f.training_class.capacity)


async def delivery_between(
    session: AsyncSession, start: dt.datetime, end: dt.datetime
) -> tuple[dict[OutboxStatus, int], list[tuple[str, int]]]:
    """Return notices settled in (start, end] by status, and the failures' reasons."""
    # A notice is counted by when it was due: sent and failed ones of the window.
    window = (OutboxMessage.due_at > start, OutboxMessage.due_at <= end)
    by_status = {
        OutboxStatus(status): int(count)
        for status, count in await session.execute(
            select(OutboxMessage.status, func.count()).where(*window).group_by(OutboxMessage.status)
        )
    }
    reasons = [
        (reason or "?", int(count))
        for reason, count in await session.execute(
            select(OutboxMessage.last_error, func.count())
            .where(*window, OutboxMessage.status == OutboxStatus.FAILED)
            .group_by(OutboxMessage.last_error)
            .order_by(func.count().desc())
            .limit(5)
        )
    ]
    return by_status, reasons
