"""Quota use: a registration counts against the quota of its nearest unit that has one."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.catalog import ClassRepo
from db.models import RegistrationStatus, Unit
from db.rules import QuotaUse
from tests.factories import add_class, add_person, add_registration, add_unit

START = dt.date(2027, 3, 1)


async def test_a_sub_unit_with_its_own_quota_uses_only_that_one(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The reviewer's probe: P has 5 seats, its child C 2; C's two people fill C's only."""
    async with sessionmaker() as session, session.begin():
        p = await add_unit(session, "P", "Tỉnh")
        c = await add_unit(session, "C", "Huyện", parent=p)
        k = await add_class(session, "K", "Lớp", start=START, capacity=7, quotas={p: 5, c: 2})
        for n in range(2):
            person = await add_person(session, f"091200010{n}", f"C{n}", c)
            await add_registration(session, person, k)
        repo = ClassRepo(session)
        assert await repo.quota_use(p.id, [k.id]) == {k.id: QuotaUse(p.id, "Tỉnh", 5, 0)}
        assert await repo.quota_use(c.id, [k.id]) == {k.id: QuotaUse(c.id, "Huyện", 2, 2)}


async def test_quota_use_in_a_three_level_tree(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    r"""Each registration counts once, against the nearest quota above (or at) its unit.

          P (5)                 quota units in brackets; K2 has only P's quota
         /     \
      C (2)     D
        |       |
        G     E (1)          X: another tree, no quota
    """
    async with sessionmaker() as session, session.begin():
        p = await add_unit(session, "P", "Tỉnh")
        c = await add_unit(session, "C", "Huyện C", parent=p)
        d = await add_unit(session, "D", "Huyện D", parent=p)
        g = await add_unit(session, "G", "Xã G", parent=c)
        e = await add_unit(session, "E", "Xã E", parent=d)
        x = await add_unit(session, "X", "Nơi khác")
        k1 = await add_class(
            session, "K1", "Lớp 1", start=START, capacity=8, quotas={p: 5, c: 2, e: 1}
        )
        k2 = await add_class(session, "K2", "Lớp 2", start=START, capacity=9, quotas={p: 9})
        k3 = await add_class(session, "K3", "Lớp 3", start=START)  # no quotas at all
        registrations: list[tuple[Unit, RegistrationStatus]] = [
            (p, RegistrationStatus.CONFIRMED),  # K1: P
            (c, RegistrationStatus.CONFIRMED),  # K1: C
            (g, RegistrationStatus.PENDING_APPROVAL),  # K1: C (G has no quota)
            (d, RegistrationStatus.CONFIRMED),  # K1: P (D has none)
            (d, RegistrationStatus.WAITLISTED),  # takes no quota seat
            (e, RegistrationStatus.CONFIRMED),  # K1: E
            (p, RegistrationStatus.CANCELLED),  # takes no quota seat
            (x, RegistrationStatus.CONFIRMED),  # no quota anywhere above X
        ]
        for n, (unit, status) in enumerate(registrations):
            person = await add_person(session, f"09120001{n:02d}", f"Người {n}", unit)
            for training_class in (k1, k2, k3):
                await add_registration(session, person, training_class, status)
        repo = ClassRepo(session)
        ids = [k1.id, k2.id, k3.id]

        def use(unit: Unit, seats: int, used: int) -> QuotaUse:
            return QuotaUse(unit.id, unit.name, seats, used)

        # In K2 everyone in P's tree counts against P: P, C, G, D, E (not X, not waitlisted).
        k2_use = use(p, 9, 5)
        assert await repo.quota_use(p.id, ids) == {k1.id: use(p, 5, 2), k2.id: k2_use}
        assert await repo.quota_use(d.id, ids) == {k1.id: use(p, 5, 2), k2.id: k2_use}
        assert await repo.quota_use(c.id, ids) == {k1.id: use(c, 2, 2), k2.id: k2_use}
        assert await repo.quota_use(g.id, ids) == {k1.id: use(c, 2, 2), k2.id: k2_use}
        assert await repo.quota_use(e.id, ids) == {k1.id: use(e, 1, 1), k2.id: k2_use}
        assert await repo.quota_use(x.id, ids) == {}
        assert await repo.quota_use(p.id, []) == {}
