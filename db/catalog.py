"""Read queries over the class catalog: upcoming classes, search, seats and quota use."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
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
    RegistrationStatus,
    TrainingClass,
    Unit,
)
from db.rules import QUOTA_STATUSES, QuotaUse


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
        """Return the class with this code, ignoring case, or None."""
        stmt = select(TrainingClass).where(func.lower(TrainingClass.code) == code.lower())
        return (await self.session.scalars(stmt)).first()

    async def schedule(self, class_id: int) -> list[ClassSession]:
        """Return the class's sessions in time order."""
        stmt = (
            select(ClassSession)
            .where(ClassSession.class_id == class_id)
            .order_by(ClassSession.starts_at, ClassSession.id)
        )
        return list((await self.session.scalars(stmt)).all())

    async def confirmed_counts(self, class_ids: Sequence[int]) -> dict[int, int]:
        """Return the number of confirmed registrations per class (absent means none)."""
        if not class_ids:
            return {}
        stmt = (
            select(Registration.class_id, func.count())
            .where(
                Registration.class_id.in_(class_ids),
                Registration.status == RegistrationStatus.CONFIRMED,
            )
            .group_by(Registration.class_id)
        )
        return {class_id: count for class_id, count in (await self.session.execute(stmt)).all()}

    async def unit_chain(self, unit_id: int) -> list[Unit]:
        """Return the unit and its ancestors, nearest first."""
        chain: list[Unit] = []
        seen: set[int] = set()
        next_id: int | None = unit_id
        while next_id is not None and next_id not in seen:  # a cycle in bad data ends here
            unit = await self.session.get(Unit, next_id)
            if unit is None:
                break
            chain.append(unit)
            seen.add(next_id)
            next_id = unit.parent_id
        return chain

    async def subtree_ids(self, unit_id: int) -> set[int]:
        """Return the unit's id and the ids of all units below it."""
        found = {unit_id}
        frontier = {unit_id}
        while frontier:
            stmt = select(Unit.id).where(Unit.parent_id.in_(frontier))
            frontier = set((await self.session.scalars(stmt)).all()) - found
            found |= frontier
        return found

    async def quota_use(self, unit_id: int, class_ids: Sequence[int]) -> dict[int, QuotaUse]:
        """Return, per class, the quota that binds a person of `unit_id` and its use.

        The binding quota is the one of the unit itself or of its nearest ancestor that has
        one; its use counts confirmed and pending registrations of everyone in that
        quota unit and the units below it. Classes without a binding quota are absent.
        """
        if not class_ids:
            return {}
        chain = await self.unit_chain(unit_id)
        nearness = {unit.id: index for index, unit in enumerate(chain)}
        stmt = select(ClassQuota).where(
            ClassQuota.class_id.in_(class_ids), ClassQuota.unit_id.in_(nearness)
        )
        binding: dict[int, ClassQuota] = {}
        for quota in (await self.session.scalars(stmt)).all():
            current = binding.get(quota.class_id)
            if current is None or nearness[quota.unit_id] < nearness[current.unit_id]:
                binding[quota.class_id] = quota
        names = {unit.id: unit.name for unit in chain}
        uses: dict[int, QuotaUse] = {}
        for quota_unit_id in {quota.unit_id for quota in binding.values()}:
            bound = [cid for cid, quota in binding.items() if quota.unit_id == quota_unit_id]
            used = await self._quota_counts(await self.subtree_ids(quota_unit_id), bound)
            for class_id in bound:
                quota = binding[class_id]
                uses[class_id] = QuotaUse(
                    unit_id=quota_unit_id,
                    unit_name=names[quota_unit_id],
                    seats=quota.seats,
                    used=used.get(class_id, 0),
                )
        return uses

    async def _quota_counts(self, unit_ids: set[int], class_ids: list[int]) -> dict[int, int]:
        stmt = (
            select(Registration.class_id, func.count())
            .join(Person, Person.id == Registration.person_id)
            .where(
                Registration.class_id.in_(class_ids),
                Registration.status.in_(QUOTA_STATUSES),
                Person.unit_id.in_(unit_ids),
            )
            .group_by(Registration.class_id)
        )
        return {class_id: count for class_id, count in (await self.session.execute(stmt)).all()}
