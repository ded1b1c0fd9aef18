"""Read queries over the class catalog: upcoming classes, search, seats and quota use."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from db.models import (
    ClassQuota,
    ClassSession,
    ClassStatus,
    Form,
    Person,
    Program,
    Registration,
    TrainingClass,
    Unit,
)
from db.rules import QUOTA_STATUSES, SEAT_STATUSES, QuotaUse
from db.text import is_code


@dataclass(frozen=True)
class ClassFilter:
    """Which upcoming classes to show; None means any."""

    program: Program | None = None
    form: Form | None = None
    month: dt.date | None = None  # the first day of the month classes start in


def _first_of_next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class ClassRepo:
    """Catalog queries within one session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _upcoming(self, today: dt.date, filters: ClassFilter) -> list[ColumnElement[bool]]:
        conditions = [
            TrainingClass.start_date >= today,
            TrainingClass.status != ClassStatus.CANCELLED,
        ]
        if filters.program is not None:
            conditions.append(TrainingClass.program == filters.program)
        if filters.form is not None:
            conditions.append(TrainingClass.form == filters.form)
        if filters.month is not None:
            conditions.append(TrainingClass.start_date >= filters.month)
            conditions.append(TrainingClass.start_date < _first_of_next_month(filters.month))
        return conditions

    @staticmethod
    def _searched(today: dt.date, words: Sequence[str]) -> list[ColumnElement[bool]]:
        # Classes still running are worth finding too (to see where and when they meet).
        conditions = [
            TrainingClass.end_date >= today,
            TrainingClass.status != ClassStatus.CANCELLED,
        ]
        conditions += [
            TrainingClass.search_text.like(f"%{_escape_like(word)}%", escape="\\") for word in words
        ]
        return conditions

    async def _page(
        self, conditions: list[ColumnElement[bool]], offset: int, limit: int | None
    ) -> list[TrainingClass]:
        stmt = (
            select(TrainingClass)
            .where(*conditions)
            .order_by(TrainingClass.start_date, TrainingClass.code)
            .offset(offset)
            .limit(limit)
        )
        return list((await self.session.scalars(stmt)).all())

    async def _count(self, conditions: list[ColumnElement[bool]]) -> int:
        stmt = select(func.count()).select_from(TrainingClass).where(*conditions)
        return (await self.session.scalar(stmt)) or 0

    async def upcoming(
        self, today: dt.date, filters: ClassFilter, *, offset: int = 0, limit: int | None = None
    ) -> list[TrainingClass]:
        """Return upcoming classes, soonest first: starting today or later, not cancelled."""
        return await self._page(self._upcoming(today, filters), offset, limit)

    async def count_upcoming(self, today: dt.date, filters: ClassFilter) -> int:
        """Return how many upcoming classes match `filters`."""
        return await self._count(self._upcoming(today, filters))

    async def upcoming_months(self, today: dt.date, filters: ClassFilter) -> list[dt.date]:
        """Return the months (as their first days) in which matching upcoming classes start."""
        stmt = select(TrainingClass.start_date).where(*self._upcoming(today, filters)).distinct()
        starts = (await self.session.scalars(stmt)).all()
        return sorted({start.replace(day=1) for start in starts})

    async def search(
        self, today: dt.date, words: Sequence[str], *, offset: int = 0, limit: int | None = None
    ) -> list[TrainingClass]:
        """Return classes not yet over whose folded code and title contain every word."""
        return await self._page(self._searched(today, words), offset, limit)

    async def count_search(self, today: dt.date, words: Sequence[str]) -> int:
        """Return how many classes `search` finds."""
        return await self._count(self._searched(today, words))

    async def by_id(self, class_id: int) -> TrainingClass | None:
        """Return the class with this id, or None."""
        return await self.session.get(TrainingClass, class_id)

    async def by_code(self, code: str) -> TrainingClass | None:
        """Return the class with this code, ignoring case, or None.

        Codes are ASCII (db.text.is_code), which lower() folds alike on SQLite and
        PostgreSQL; anything else can only be a code stored before that rule, matched
        exactly. A code stored in two cases gives the one written as asked, if any.
        """
        if not is_code(code):
            stmt = select(TrainingClass).where(TrainingClass.code == code)
        else:
            stmt = (
                select(TrainingClass)
                .where(func.lower(TrainingClass.code) == code.lower())
                .order_by((TrainingClass.code == code).desc(), TrainingClass.code)
            )
        return (await self.session.scalars(stmt.limit(1))).first()

    async def schedule(self, class_id: int) -> list[ClassSession]:
        """Return the class's sessions in time order."""
        stmt = (
            select(ClassSession)
            .where(ClassSession.class_id == class_id)
            .order_by(ClassSession.starts_at, ClassSession.id)
        )
        return list((await self.session.scalars(stmt)).all())

    async def seats_taken(self, class_ids: Sequence[int]) -> dict[int, int]:
        """Return the seats held per class (rules.SEAT_STATUSES; absent means none)."""
        if not class_ids:
            return {}
        stmt = (
            select(Registration.class_id, func.count())
            .where(
                Registration.class_id.in_(class_ids),
                Registration.status.in_(SEAT_STATUSES),
            )
            .group_by(Registration.class_id)
        )
        return {class_id: count for class_id, count in (await self.session.execute(stmt)).all()}

    async def quota_use(self, unit_id: int, class_ids: Sequence[int]) -> dict[int, QuotaUse]:
        """Return, per class, the quota that binds a person of `unit_id` and its use.

        A registration counts against exactly one quota: the one of the nearest unit, from
        the registrant's own unit upward, that has a quota for that class. The quota that
        binds a person is found the same way from the person's unit. So a unit's quota is
        used by its own people and by those of the units below it that reach it without
        meeting a quota of their own for the class; people of a sub-unit with its own quota
        use that one instead. Quotas are separate seats, as the import's check that their
        sum is at most the capacity assumes. Confirmed and pending registrations count
        (QUOTA_STATUSES). Classes without a binding quota are absent.
        """
        if not class_ids:
            return {}
        seats: dict[int, dict[int, int]] = {}  # class id → quota unit id → seats
        quotas = await self.session.execute(
            select(ClassQuota.class_id, ClassQuota.unit_id, ClassQuota.seats).where(
                ClassQuota.class_id.in_(class_ids)
            )
        )
        for class_id, quota_unit_id, quota_seats in quotas:
            seats.setdefault(class_id, {})[quota_unit_id] = quota_seats
        if not seats:
            return {}
        # The whole tree at once: a province has a few hundred units.
        tree = await self.session.execute(select(Unit.id, Unit.parent_id, Unit.name))
        units = {tree_id: (parent_id, name) for tree_id, parent_id, name in tree}
        chains: dict[int, list[int]] = {}

        def binding_unit(start: int, class_id: int) -> int | None:
            """Return the nearest unit from `start` upward with a quota for the class."""
            if start not in chains:
                chains[start] = _chain(units, start)
            return next((u for u in chains[start] if u in seats[class_id]), None)

        binding = {
            class_id: quota_unit
            for class_id in seats
            if (quota_unit := binding_unit(unit_id, class_id)) is not None
        }
        used = dict.fromkeys(binding, 0)
        if binding:
            groups = await self.session.execute(
                select(Registration.class_id, Person.unit_id, func.count())
                .join(Person, Person.id == Registration.person_id)
                .where(
                    Registration.class_id.in_(list(binding)),
                    Registration.status.in_(QUOTA_STATUSES),
                )
                .group_by(Registration.class_id, Person.unit_id)
            )
            for class_id, person_unit_id, count in groups:
                if binding_unit(person_unit_id, class_id) == binding[class_id]:
                    used[class_id] += count
        return {
            class_id: QuotaUse(
                unit_id=quota_unit,
                unit_name=units[quota_unit][1],
                seats=seats[class_id][quota_unit],
                used=used[class_id],
            )
            for class_id, quota_unit in binding.items()
        }


def _chain(units: Mapping[int, tuple[int | None, str]], unit_id: int) -> list[int]:
    """Return the unit's id and its ancestors' ids, nearest first; a cycle in bad data ends it."""
    chain: list[int] = []
    next_id: int | None = unit_id
    while next_id is not None and next_id in units and next_id not in chain:
        chain.append(next_id)
        next_id = units[next_id][0]
    return chain
