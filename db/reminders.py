"""Read queries of the reminder sweeps: classes about to start, who still needs telling."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import String, cast, exists, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from db.models import (
    LIVE_REGISTRATION_STATUSES,
    ClassSession,
    ClassStatus,
    OutboxMessage,
    OutboxStatus,
    Registration,
    RegistrationStatus,
    TrainingClass,
)


@dataclass(frozen=True)
class ClassStart:
    """When a class begins: its first session, or the start of its first day."""

    at: dt.datetime
    # Whether `at` is a session's clock time (a schedule exists), not just the first day.
    scheduled: bool


@dataclass(frozen=True)
class Starting:
    """A class about to start, with when and where it begins."""

    training_class: TrainingClass
    start: ClassStart
    # The first session's place if it has its own, else the class's.
    place: str


async def classes_starting(
    session: AsyncSession, *, first_day: dt.date, last_day: dt.date, zone: ZoneInfo
) -> list[Starting]:
    """Return the classes not cancelled whose first day falls between the two dates."""
    first_session = (
        select(func.min(ClassSession.starts_at))
        .where(ClassSession.class_id == TrainingClass.id)
        .correlate(TrainingClass)
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            select(TrainingClass, first_session)
            .where(
                TrainingClass.status != ClassStatus.CANCELLED,
                TrainingClass.start_date >= first_day,
                TrainingClass.start_date <= last_day,
            )
            .order_by(TrainingClass.start_date, TrainingClass.id)
        )
    ).all()
    firsts = {row[0].id: row[1] for row in rows if row[1] is not None}
    places: dict[int, str | None] = {}
    if firsts:
        sessions = await session.execute(
            select(ClassSession.class_id, ClassSession.starts_at, ClassSession.location).where(
                ClassSession.class_id.in_(sorted(firsts))
            )
        )
        for class_id, starts_at, location in sessions:
            if starts_at == firsts[class_id]:
                places[class_id] = location
    found = []
    for training_class, first in rows:
        if first is None:
            midnight = dt.datetime.combine(training_class.start_date, dt.time(), tzinfo=zone)
            start = ClassStart(midnight.astimezone(dt.UTC), scheduled=False)
        else:
            start = ClassStart(first, scheduled=True)
        place = places.get(training_class.id) or training_class.location
        found.append(Starting(training_class, start, place))
    return found


async def unreminded(
    session: AsyncSession, class_id: int, due: dt.datetime
) -> list[tuple[int, int]]:
    """Return (registration id, person id) of confirmed seats not yet reminded for `due`."""
    rows = await session.execute(
        select(Registration.id, Registration.person_id)
        .where(
            Registration.class_id == class_id,
            Registration.status == RegistrationStatus.CONFIRMED,
            or_(Registration.reminded_for.is_(None), Registration.reminded_for < due),
        )
        .order_by(Registration.id)
    )
    return [(row.id, row.person_id) for row in rows]


async def mark_reminded(
    session: AsyncSession, registration_ids: Sequence[int], due: dt.datetime
) -> None:
    """Record that the reminder due at `due` was queued for these registrations."""
    for start in range(0, len(registration_ids), 500):
        chunk = list(registration_ids[start : start + 500])
        await session.execute(
            update(Registration).where(Registration.id.in_(chunk)).values(reminded_for=due)
        )


async def confirmed_without_notice(
    session: AsyncSession, class_id: int, key_prefix: str
) -> list[tuple[int, int]]:
    """Return (registration id, person id) of confirmed seats with no notice keyed
    `{key_prefix}{registration id}` yet."""
    key = literal(key_prefix) + cast(Registration.id, String)
    rows = await session.execute(
        select(Registration.id, Registration.person_id)
        .where(
            Registration.class_id == class_id,
            Registration.status == RegistrationStatus.CONFIRMED,
            ~exists().where(OutboxMessage.idempotency_key == key),
        )
        .order_by(Registration.id)
    )
    return [(row.id, row.person_id) for row in rows]


async def classes_not_ended(session: AsyncSession, today: dt.date) -> list[TrainingClass]:
    """Return the classes that have not ended, with their sessions, soonest first."""
    stmt = (
        select(TrainingClass)
        .options(selectinload(TrainingClass.sessions))
        .where(TrainingClass.end_date >= today)
        .order_by(TrainingClass.start_date, TrainingClass.id)
    )
    return list((await session.scalars(stmt)).all())


async def live_registrants(session: AsyncSession, class_id: int) -> list[int]:
    """Return the people with a live registration in the class (any status but ended)."""
    rows = await session.scalars(
        select(Registration.person_id)
        .where(
            Registration.class_id == class_id,
            Registration.status.in_(LIVE_REGISTRATION_STATUSES),
        )
        .order_by(Registration.person_id)
    )
    return list(rows.all())


async def skip_reminders(session: AsyncSession, class_id: int, reason: str) -> None:
    """End the class's queued reminders unsent: what they say is no longer true."""
    groups = select(literal("reminder:") + cast(Registration.id, String)).where(
        Registration.class_id == class_id
    )
    await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.QUEUED,
            OutboxMessage.group_key.in_(groups.scalar_subquery()),
            OutboxMessage.lease_until.is_(None),
        )
        .values(status=OutboxStatus.SKIPPED, last_error=reason)
        .execution_options(synchronize_session=False)
    )
