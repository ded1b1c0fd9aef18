"""Read queries for unit heads: their classes, their people's registrations, their people.

A scope is a set of unit ids (a head's unit and every unit under it, see
`db.registrations.units_under`) or None for the school's admins, who see everything.
Nothing here changes a seat: approvals and nominations go through db.registrations.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from db.models import (
    LIVE_REGISTRATION_STATUSES,
    ChannelAccount,
    ClassQuota,
    ClassStatus,
    Person,
    Registration,
    RegistrationStatus,
    TrainingClass,
    Unit,
    UnitKind,
)
from db.text import fold

Scope = set[int] | None
# A filter of only digits (and spaces, dots, a +) is part of a phone number.
PHONE_CHARACTERS = frozenset("0123456789 .+")


@dataclass(frozen=True)
class UnitCounts:
    """A scope's registrations in one class by status, and the quotas the class has."""

    statuses: Counter[RegistrationStatus] = field(default_factory=Counter)
    # Seats of the quotas held by units in the scope; None when none of them has one.
    quota: int | None = None
    # Whether the class has any quota at all (for any unit); without, it is open to all.
    has_quotas: bool = False


def _concerns(scope: Scope, above: Collection[int]) -> list[ColumnElement[bool]]:
    if scope is None:
        return []
    has_quota = exists().where(
        ClassQuota.class_id == TrainingClass.id,
        ClassQuota.unit_id.in_(sorted(scope | set(above))),
    )
    has_registration = exists().where(
        Registration.class_id == TrainingClass.id,
        Registration.person_id == Person.id,
        Person.unit_id.in_(sorted(scope)),
    )
    open_to_all = ~exists().where(ClassQuota.class_id == TrainingClass.id)
    return [or_(has_quota, has_registration, open_to_all)]


def _upcoming(today: dt.date, scope: Scope, above: Collection[int]) -> list[ColumnElement[bool]]:
    return [
        TrainingClass.start_date >= today,
        TrainingClass.status != ClassStatus.CANCELLED,
        *_concerns(scope, above),
    ]


async def ancestors(session: AsyncSession, unit_id: int) -> set[int]:
    """Return the ids of the units above `unit_id` (its parent, their parent, …)."""
    parents: dict[int, int | None] = {
        child: parent for child, parent in await session.execute(select(Unit.id, Unit.parent_id))
    }
    found: set[int] = set()
    parent = parents.get(unit_id)
    while parent is not None and parent not in found and parent != unit_id:  # bad data: cycles
        found.add(parent)
        parent = parents.get(parent)
    return found


async def count_classes(
    session: AsyncSession, scope: Scope, today: dt.date, *, above: Collection[int] = ()
) -> int:
    """Return how many upcoming classes concern the scope (see `classes`)."""
    stmt = select(func.count()).select_from(TrainingClass).where(*_upcoming(today, scope, above))
    return (await session.scalar(stmt)) or 0


async def classes(
    session: AsyncSession,
    scope: Scope,
    today: dt.date,
    *,
    above: Collection[int] = (),
    offset: int = 0,
    limit: int,
) -> list[TrainingClass]:
    """Return upcoming classes that concern the scope, soonest first.

    A class concerns the scope when it has a quota for a unit in the scope or above it
    (`above`: the units whose quota the scope's people may use), registrations from the
    scope, or no quotas at all (open to everyone). A None scope (admins) takes every class.
    """
    stmt = (
        select(TrainingClass)
        .where(*_upcoming(today, scope, above))
        .order_by(TrainingClass.start_date, TrainingClass.code)
        .offset(offset)
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())


async def status_counts(
    session: AsyncSession, class_ids: Sequence[int], scope: Scope = None
) -> dict[int, Counter[RegistrationStatus]]:
    """Return, per class, its registrations (of people in the scope) by status."""
    counts: dict[int, Counter[RegistrationStatus]] = {class_id: Counter() for class_id in class_ids}
    if not class_ids:
        return counts
    stmt = (
        select(Registration.class_id, Registration.status, func.count())
        .join(Person, Person.id == Registration.person_id)
        .where(Registration.class_id.in_(class_ids))
        .group_by(Registration.class_id, Registration.status)
    )
    if scope is not None:
        stmt = stmt.where(Person.unit_id.in_(sorted(scope)))
    for class_id, status, count in await session.execute(stmt):
        counts[class_id][RegistrationStatus(status)] += count
    return counts


async def counts(
    session: AsyncSession, scope: Scope, class_ids: Sequence[int]
) -> dict[int, UnitCounts]:
    """Return, per class, the scope's registrations by status and the class's quotas."""
    if not class_ids:
        return {}
    statuses = await status_counts(session, class_ids, scope)
    seats: dict[int, int] = {}
    with_quotas: set[int] = set()
    quotas = select(ClassQuota.class_id, ClassQuota.unit_id, ClassQuota.seats).where(
        ClassQuota.class_id.in_(class_ids)
    )
    for class_id, unit_id, quota_seats in await session.execute(quotas):
        with_quotas.add(class_id)
        if scope is None or unit_id in scope:
            seats[class_id] = seats.get(class_id, 0) + quota_seats
    return {
        class_id: UnitCounts(statuses[class_id], seats.get(class_id), class_id in with_quotas)
        for class_id in class_ids
    }


async def registrations(session: AsyncSession, scope: Scope, class_id: int) -> list[Registration]:
    """Return the live registrations of people in the scope for the class, in order made."""
    stmt = (
        select(Registration)
        .options(joinedload(Registration.person).joinedload(Person.unit))
        .join(Person, Person.id == Registration.person_id)
        .where(
            Registration.class_id == class_id,
            Registration.status.in_(LIVE_REGISTRATION_STATUSES),
        )
        .order_by(Registration.id)
    )
    if scope is not None:
        stmt = stmt.where(Person.unit_id.in_(sorted(scope)))
    return list((await session.scalars(stmt)).all())


async def registration(session: AsyncSession, registration_id: int) -> Registration | None:
    """Return a registration with its person, the person's unit and its class, or None."""
    stmt = (
        select(Registration)
        .options(
            joinedload(Registration.person).joinedload(Person.unit),
            joinedload(Registration.training_class),
        )
        .where(Registration.id == registration_id)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).first()


async def person(session: AsyncSession, person_id: int) -> Person | None:
    """Return a roster person with their unit, or None."""
    stmt = select(Person).options(joinedload(Person.unit)).where(Person.id == person_id)
    return (await session.scalars(stmt)).first()


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


async def people(
    session: AsyncSession,
    scope: Scope,
    text: str = "",
    *,
    offset: int = 0,
    limit: int,
    exclude: int | None = None,
) -> tuple[list[Person], int]:
    """Return a page of the scope's people by name, and how many there are in all.

    `text` filters: digits match anywhere in the phone number (a leading 84 or +84 read
    as 0); words match the name ignoring case and diacritics ("nguyen van a").
    `exclude` is a person left out (the head asking: they do not nominate themselves).
    """
    conditions: list[ColumnElement[bool]] = []
    if scope is not None:
        conditions.append(Person.unit_id.in_(sorted(scope)))
    if exclude is not None:
        conditions.append(Person.id != exclude)
    text = text.strip()
    if text and set(text) <= PHONE_CHARACTERS and _digits(text):
        digits = _digits(text)
        if text.lstrip().startswith("+84") or (digits.startswith("84") and len(digits) >= 11):
            digits = "0" + digits[2:]
        conditions.append(Person.phone.contains(digits, autoescape=True))
    elif text:
        # Names are folded here, not in SQL: SQLite lowers only ASCII, and a scope is a
        # unit's roster (a whole province for admins: a few tens of thousands of names).
        words = fold(text).split()
        names = list(await session.execute(select(Person.id, Person.full_name).where(*conditions)))
        ids = [pid for pid, name in names if all(w in fold(name).split() for w in words)]
        if not ids:
            ids = [pid for pid, name in names if all(w in fold(name) for w in words)]
        conditions.append(Person.id.in_(ids))
    total = (await session.scalar(select(func.count()).select_from(Person).where(*conditions))) or 0
    stmt = (
        select(Person)
        .options(joinedload(Person.unit))
        .where(*conditions)
        .order_by(Person.full_name, Person.id)
        .offset(offset)
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all()), total


async def reachable(session: AsyncSession, person_id: int) -> bool:
    """Return whether the person has linked a chat account the bot can still reach."""
    stmt = select(ChannelAccount.id).where(
        ChannelAccount.person_id == person_id, ChannelAccount.reachable.is_(True)
    )
    return (await session.scalars(stmt.limit(1))).first() is not None


def descendants(parents: Mapping[int, int | None], unit_id: int) -> set[int]:
    """Return `unit_id` and the ids of every unit below it, given each unit's parent."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(child)
    found = {unit_id}
    todo = [unit_id]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:  # bad data may hold a cycle
                found.add(child)
                todo.append(child)
    return found


@dataclass(frozen=True)
class UnitTree:
    """Every unit's parent and unit heads, read once, for jobs that address many units."""

    parents: dict[int, int | None]
    names: dict[int, str]
    heads: dict[int, list[int]]

    def subtree(self, unit_id: int) -> set[int]:
        """Return the unit's id and the ids of every unit below it."""
        return descendants(self.parents, unit_id)

    def chain(self, unit_id: int) -> list[int]:
        """Return the unit's id and its ancestors' ids, nearest first (a cycle ends it)."""
        found: list[int] = []
        current: int | None = unit_id
        while current is not None and current in self.parents and current not in found:
            found.append(current)
            current = self.parents[current]
        return found

    def nearest_heads(self, unit_id: int) -> list[int]:
        """Return the heads of the unit, else of the nearest unit above it that has some."""
        for unit in self.chain(unit_id):
            if heads := self.heads.get(unit):
                return heads
        return []


async def unit_tree(session: AsyncSession) -> UnitTree:
    """Return the unit tree with each unit's heads (people marked unit_head)."""
    parents: dict[int, int | None] = {}
    names: dict[int, str] = {}
    for unit_id, parent_id, name in await session.execute(
        select(Unit.id, Unit.parent_id, Unit.name)
    ):
        parents[unit_id] = parent_id
        names[unit_id] = name
    heads: dict[int, list[int]] = {}
    rows = await session.execute(
        select(Person.unit_id, Person.id).where(Person.is_unit_head.is_(True)).order_by(Person.id)
    )
    for unit_id, person_id in rows:
        heads.setdefault(unit_id, []).append(person_id)
    return UnitTree(parents, names, heads)


async def school_name(session: AsyncSession) -> str | None:
    """Return the name of the school's unit in the roster (kind `school`, topmost), if any."""
    stmt = (
        select(Unit.name)
        .where(Unit.kind == UnitKind.SCHOOL)
        .order_by(Unit.parent_id.is_not(None), Unit.id)
        .limit(1)
    )
    name: str | None = await session.scalar(stmt)
    return name
