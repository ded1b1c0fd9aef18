"""A small province for web admin tests: two districts, their people, classes and accounts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import (
    AccountRole,
    Person,
    Registration,
    RegistrationStatus,
    TrainingClass,
    Unit,
)
from tests.factories import add_class, add_person, add_unit
from tests.web_support import add_account


@dataclass
class World:
    """Ids of what the tests act on."""

    province: Unit
    yen_thanh: Unit
    dien_chau: Unit
    head: Person  # head of Yên Thành
    learner: Person  # in Yên Thành
    other: Person  # in Diễn Châu
    shared: TrainingClass  # quotas for both districts, needs approval
    dien_chau_only: TrainingClass  # a quota for Diễn Châu only
    own_pending: Registration  # the Yên Thành learner's, pending
    other_pending: Registration  # the Diễn Châu person's, pending


async def build_world(
    sessionmaker: async_sessionmaker[AsyncSession], today: dt.date | None = None
) -> World:
    """Insert the province, two accounts ("admin", "head") and two pending registrations."""
    start = (today or dt.date.today()) + dt.timedelta(days=30)
    async with sessionmaker() as session, session.begin():
        province = await add_unit(session, "TINH", "Tỉnh Nghệ An")
        yen_thanh = await add_unit(session, "YTH", "Huyện Yên Thành", province)
        dien_chau = await add_unit(session, "DCH", "Huyện Diễn Châu", province)
        head = await add_person(session, "0912000175", "Lý Đình Trung", yen_thanh)
        head.is_unit_head = True
        learner = await add_person(session, "0912000178", "Phạm Thu Trang", yen_thanh)
        other = await add_person(session, "0912000190", "Hồ Văn Nam", dien_chau)
        shared = await add_class(
            session,
            "KN-01",
            "Bồi dưỡng kỹ năng lãnh đạo",
            start=start,
            capacity=3,
            quotas={yen_thanh: 1, dien_chau: 2},
        )
        shared.requires_approval = True
        dien_chau_only = await add_class(
            session, "NV-02", "Nghiệp vụ Diễn Châu", start=start, quotas={dien_chau: 5}
        )
        own_pending = Registration(
            person_id=learner.id, class_id=shared.id, status=RegistrationStatus.PENDING_APPROVAL
        )
        other_pending = Registration(
            person_id=other.id, class_id=shared.id, status=RegistrationStatus.PENDING_APPROVAL
        )
        session.add_all([own_pending, other_pending])
        await session.flush()
        await add_account(session, "admin")
        await add_account(session, "head", AccountRole.UNIT_HEAD, head)
    return World(
        province,
        yen_thanh,
        dien_chau,
        head,
        learner,
        other,
        shared,
        dien_chau_only,
        own_pending,
        other_pending,
    )
