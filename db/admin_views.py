"""Read queries for the web admin's pages: classes, people's link status, delivery failures.

A scope is as in db.units: a set of unit ids (a unit head's units) or None (admins).
Nothing here changes anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from db.models import (
    ChannelAccount,
    ClassStatus,
    OutboxMessage,
    OutboxStatus,
    Person,
    Registration,
    RegistrationStatus,
    TrainingClass,
    Unit,
)
from db.text import fold
from db.units import PHONE_CHARACTERS, Scope


class When(StrEnum):
    """Which classes a list shows, by their dates."""

    UPCOMING = "upcoming"  # not ended yet
    PAST = "past"
    ALL = "all"


@dataclass(frozen=True)
class ClassQuery:
    """The class list's filters."""

    when: When = When.UPCOMING
    text: str = ""
    status: ClassStatus | None = None


def _class_conditions(query: ClassQuery, today: dt.date) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.when == When.UPCOMING:
        conditions.append(TrainingClass.end_date >= today)
    elif query.when == When.PAST:
        conditions.append(TrainingClass.end_date < today)
    if query.status is not None:
        conditions.append(TrainingClass.status == query.status)
    for word in fold(query.text).split():
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(TrainingClass.search_text.like(f"%{escaped}%", escape="\\"))
    return conditions


async def classes(
    session: AsyncSession, query: ClassQuery, today: dt.date, *, offset: int, limit: int
) -> tuple[list[TrainingClass], int]:
    """Return a page of classes (upcoming soonest first, past latest first) and the total."""
    conditions = _class_conditions(query, today)
    total = await session.scalar(select(func.count()).select_from(TrainingClass).where(*conditions))
    order = (
        (TrainingClass.start_date.desc(), TrainingClass.code)
        if query.when == When.PAST
        else (TrainingClass.start_date, TrainingClass.code)
    )
    stmt = select(TrainingClass).where(*conditions).order_by(*order).offset(offset).limit(limit)
    return list((await session.scalars(stmt)).all()), total or 0


async def ended_registrations(
    session: AsyncSession, scope: Scope, class_id: int, limit: int = 200
) -> list[Registration]:
    """Return the class's cancelled and rejected registrations in the scope, latest first."""
    stmt = (
        select(Registration)
        .options(joinedload(Registration.person).joinedload(Person.unit))
        .join(Person, Person.id == Registration.person_id)
        .where(
            Registration.class_id == class_id,
            Registration.status.in_((RegistrationStatus.CANCELLED, RegistrationStatus.REJECTED)),
        )
        .order_by(Registration.updated_at.desc(), Registration.id.desc())
        .limit(limit)
    )
    if scope is not None:
        stmt = stmt.where(Person.unit_id.in_(sorted(scope)))
    return list((await session.scalars(stmt)).all())


# ---------------------------------------------------------------------------- people


class LinkStatus(StrEnum):
    """Whether the bot can write to a person."""

    LINKED = "linked"  # a reachable chat account
    UNREACHABLE = "unreachable"  # linked, but every account blocked the bot
    NEVER = "never"  # never linked a chat account


@dataclass(frozen=True)
class PersonLinks:
    """A person with their unit and chat accounts, and what that makes their link status."""

    person: Person
    accounts: tuple[ChannelAccount, ...]

    @property
    def status(self) -> LinkStatus:
        """Return the person's link status."""
        if any(account.reachable for account in self.accounts):
            return LinkStatus.LINKED
        return LinkStatus.UNREACHABLE if self.accounts else LinkStatus.NEVER


def _link_condition(status: LinkStatus) -> ColumnElement[bool]:
    any_account = exists().where(ChannelAccount.person_id == Person.id)
    reachable = exists().where(
        ChannelAccount.person_id == Person.id, ChannelAccount.reachable.is_(True)
    )
    if status == LinkStatus.LINKED:
        return reachable
    if status == LinkStatus.UNREACHABLE:
        return and_(any_account, ~reachable)
    return ~any_account


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


async def people(
    session: AsyncSession,
    scope: Scope,
    *,
    text: str = "",
    unit_id: int | None = None,
    link: LinkStatus | None = None,
    offset: int,
    limit: int,
) -> tuple[list[PersonLinks], int]:
    """Return a page of the scope's people by name with their chat accounts, and the total.

    `text` is a name (without diacritics too) or part of a phone number, as in the chat's
    nomination search.
    """
    conditions: list[ColumnElement[bool]] = []
    if scope is not None:
        conditions.append(Person.unit_id.in_(sorted(scope)))
    if unit_id is not None:
        conditions.append(Person.unit_id == unit_id)
    if link is not None:
        conditions.append(_link_condition(link))
    text = text.strip()
    if text and set(text) <= PHONE_CHARACTERS and _digits(text):
        digits = _digits(text)
        if text.startswith("+84") or (digits.startswith("84") and len(digits) >= 11):
            digits = "0" + digits[2:]
        conditions.append(Person.phone.contains(digits, autoescape=True))
    elif text:
        words = fold(text).split()
        names = await session.execute(select(Person.id, Person.full_name).where(*conditions))
        ids = [pid for pid, name in names if all(word in fold(name) for word in words)]
        conditions.append(Person.id.in_(ids))
    total = await session.scalar(select(func.count()).select_from(Person).where(*conditions))
    stmt = (
        select(Person)
        .options(joinedload(Person.unit))
        .where(*conditions)
        .order_by(Person.full_name, Person.id)
        .offset(offset)
        .limit(limit)
    )
    found = list((await session.scalars(stmt)).all())
    by_person: dict[int, list[ChannelAccount]] = {person.id: [] for person in found}
    if found:
        linked = await session.scalars(
            select(ChannelAccount)
            .where(ChannelAccount.person_id.in_(list(by_person)))
            .order_by(ChannelAccount.channel)
        )
        for account in linked:
            by_person[account.person_id].append(account)
    return [PersonLinks(p, tuple(by_person[p.id])) for p in found], total or 0


async def units_in(session: AsyncSession, scope: Scope) -> list[Unit]:
    """Return the units of the scope (every unit for admins), by name."""
    stmt = select(Unit).order_by(Unit.name, Unit.code)
    if scope is not None:
        stmt = stmt.where(Unit.id.in_(sorted(scope)))
    return list((await session.scalars(stmt)).all())


async def people_per_unit(session: AsyncSession, unit_ids: Sequence[int]) -> dict[int, int]:
    """Return how many roster people each unit has."""
    if not unit_ids:
        return {}
    rows = await session.execute(
        select(Person.unit_id, func.count())
        .where(Person.unit_id.in_(unit_ids))
        .group_by(Person.unit_id)
    )
    return {unit_id: count for unit_id, count in rows}


# --------------------------------------------------------------------------- failures


@dataclass(frozen=True)
class FailureReason:
    """Failed notices sharing one reason: how many, and the latest."""

    reason: str
    count: int
    latest: dt.datetime


@dataclass(frozen=True)
class Failure:
    """One notice that could not be delivered."""

    id: int
    kind: str
    channel: str | None
    reason: str
    due_at: dt.datetime
    attempts: int
    person_id: int | None
    person_name: str | None
    unit_name: str | None


async def failure_reasons(session: AsyncSession) -> list[FailureReason]:
    """Return the failed notices grouped by reason, the most recent reason first."""
    reason = func.coalesce(OutboxMessage.last_error, "")
    rows = await session.execute(
        select(reason, func.count(), func.max(OutboxMessage.due_at))
        .where(OutboxMessage.status == OutboxStatus.FAILED)
        .group_by(reason)
        .order_by(func.max(OutboxMessage.due_at).desc())
    )
    return [FailureReason(text, count, latest) for text, count, latest in rows]


async def failures(
    session: AsyncSession, *, reason: str | None, offset: int, limit: int
) -> tuple[list[Failure], int]:
    """Return a page of failed notices, latest first (by when they were due), and the total."""
    conditions: list[ColumnElement[bool]] = [OutboxMessage.status == OutboxStatus.FAILED]
    if reason is not None:
        conditions.append(func.coalesce(OutboxMessage.last_error, "") == reason)
    total = await session.scalar(select(func.count()).select_from(OutboxMessage).where(*conditions))
    rows = await session.execute(
        select(
            OutboxMessage.id,
            OutboxMessage.kind,
            OutboxMessage.channel,
            OutboxMessage.last_error,
            OutboxMessage.due_at,
            OutboxMessage.attempts,
            Person.id,
            Person.full_name,
            Unit.name,
        )
        .outerjoin(Person, Person.id == OutboxMessage.person_id)
        .outerjoin(Unit, Unit.id == Person.unit_id)
        .where(*conditions)
        .order_by(OutboxMessage.due_at.desc(), OutboxMessage.id.desc())
        .offset(offset)
        .limit(limit)
    )
    found = [
        Failure(row[0], row[1], row[2], row[3] or "", row[4], row[5], row[6], row[7], row[8])
        for row in rows
    ]
    return found, total or 0


async def person_links(session: AsyncSession, person_id: int) -> PersonLinks | None:
    """Return one person with their unit and chat accounts, or None."""
    person = await session.scalar(
        select(Person).options(joinedload(Person.unit)).where(Person.id == person_id)
    )
    if person is None:
        return None
    accounts = await session.scalars(
        select(ChannelAccount)
        .where(ChannelAccount.person_id == person_id)
        .order_by(ChannelAccount.channel)
    )
    return PersonLinks(person, tuple(accounts.all()))
