"""The catalog knows what the person holds: a registered class says so, "for me" leaves it out."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import RegistrationStatus
from tests.factories import TODAY, Chat, add_class, add_person, add_registration, add_unit, link


async def test_registered_and_clashing_classes(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    start = TODAY + dt.timedelta(days=20)
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        trang = await add_person(session, "0912000178", "Phạm Thu Trang", unit)
        held = await add_class(session, "KN-1", "Kỹ năng một", start=start, days=5)
        await add_class(session, "KN-2", "Kỹ năng hai", start=start + dt.timedelta(days=2))
        await add_class(session, "KN-3", "Kỹ năng ba", start=start + dt.timedelta(days=30))
        waiting = await add_class(
            session, "KN-4", "Kỹ năng bốn", start=start + dt.timedelta(days=60)
        )
        await add_registration(session, trang, held)
        await add_registration(session, trang, waiting, RegistrationStatus.WAITLISTED)
        await link(session, trang, "test", "trang")
    chat = Chat(sessionmaker, "trang")
    detail = await chat.say("/class KN-1")
    assert "📌 Đồng chí đã đăng ký lớp này (trạng thái: đã xác nhận)" in detail
    assert "đủ điều kiện" not in detail
    clash = await chat.say("/class KN-2")
    assert "Trùng thời gian với lớp KN-1" in clash
    eligible = await chat.say("/eligible")
    # Only KN-3: KN-1 and KN-4 are registered already, KN-2 clashes with KN-1.
    assert "KN-3" in eligible
    assert all(code not in eligible for code in ("KN-1", "KN-2", "KN-4"))
