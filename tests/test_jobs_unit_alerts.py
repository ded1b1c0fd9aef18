"""Unit heads are told of approvals waiting too long, unfilled quotas near the deadline and
people the bot can no longer reach; each once, and to the heads who look after the unit."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import ChannelAccount, Person, Registration, RegistrationStatus, Unit
from tests.factories import add_class, add_person, add_registration, add_unit, link
from tests.jobs_support import SETTINGS, local, queued, run_job

NOW = local(2026, 12, 1, 9)
START = dt.date(2026, 12, 20)


@dataclasses.dataclass
class Province:
    units: dict[str, Unit]
    people: dict[str, Person]
    class_id: int = 0


async def person(
    session: AsyncSession, phone: str, name: str, unit: Unit, *, head: bool = False
) -> Person:
    created = await add_person(session, phone, name, unit)
    created.is_unit_head = head
    await session.flush()
    return created


async def province(sessionmaker: async_sessionmaker[AsyncSession]) -> Province:
    """A province committee over a district (with a head) over a commune (without)."""
    async with sessionmaker() as session, session.begin():
        top = await add_unit(session, "TU", "Tỉnh ủy")
        district = await add_unit(session, "YTH", "Huyện ủy Yên Thành", top)
        commune = await add_unit(session, "XA", "Đảng ủy xã Bảo Thành", district)
        other = await add_unit(session, "DC", "Huyện ủy Diễn Châu", top)
        people = {
            "top_head": await person(session, "0912000301", "Trần Văn Tỉnh", top, head=True),
            "head": await person(session, "0912000302", "Lê Thị Huyện", district, head=True),
            "learner": await person(session, "0912000303", "Phạm Thu Trang", district),
            "villager": await person(session, "0912000304", "Nguyễn Văn Xã", commune),
            "other_head": await person(session, "0912000305", "Hồ Văn Châu", other, head=True),
        }
        units = {"top": top, "district": district, "commune": commune, "other": other}
    return Province(units, people)


async def test_approvals_waiting_over_a_day_are_brought_to_the_nearest_heads_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    world = await province(sessionmaker)
    people = world.people
    async with sessionmaker() as session, session.begin():
        klass = await add_class(session, "K9", "Bồi dưỡng kỹ năng", start=START)
        for key in ("learner", "villager", "head"):
            await add_registration(session, people[key], klass, RegistrationStatus.PENDING_APPROVAL)
        await session.execute(update(Registration).values(created_at=NOW))
    # The job runs every 15 minutes.
    later = NOW + dt.timedelta(hours=23, minutes=44)
    assert await run_job(sessionmaker, "overdue_approvals", later)
    assert await queued(sessionmaker) == []
    assert await run_job(sessionmaker, "overdue_approvals", NOW + dt.timedelta(hours=24))
    alerts = await queued(sessionmaker, kind="unit.approvals_waiting")
    # The commune has no head: its learner is the district head's; the district head's own
    # registration goes up to the province's head.
    assert {q.row.person_id: q.text().count("• ") for q in alerts} == {
        people["head"].id: 2,
        people["top_head"].id: 1,
    }
    district = next(q for q in alerts if q.row.person_id == people["head"].id)
    text = district.text()
    assert "Có 2 đăng ký đã chờ đồng chí duyệt quá 24 giờ" in text
    assert "Phạm Thu Trang — lớp K9 «Bồi dưỡng kỹ năng»" in text
    assert "Nguyễn Văn Xã" in text
    assert "Lê Thị Huyện" not in text
    assert district.buttons == [f"uc:{klass.id}", "ul:1"]
    assert await run_job(sessionmaker, "overdue_approvals", NOW + dt.timedelta(hours=30))
    assert len(await queued(sessionmaker, kind="unit.approvals_waiting")) == 2


async def test_a_quota_unfilled_near_the_deadline_warns_its_heads_once_with_who_registered(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    world = await province(sessionmaker)
    people, units = world.people, world.units
    deadline = dt.date(2026, 12, 10)
    async with sessionmaker() as session, session.begin():
        klass = await add_class(
            session,
            "K10",
            "Cập nhật kiến thức",
            start=START,
            deadline=deadline,
            quotas={units["district"]: 3, units["other"]: 1},
        )
        await add_registration(session, people["learner"], klass)
        await add_registration(session, people["villager"], klass, RegistrationStatus.WAITLISTED)
        await add_registration(session, people["other_head"], klass)
    # Four days before: not yet. Three days before (the job runs hourly): the district
    # (1 of 3) is warned, the other unit (1 of 1) is not.
    assert await run_job(sessionmaker, "deadline_warnings", local(2026, 12, 6, 23, 59))
    assert await queued(sessionmaker) == []
    assert await run_job(sessionmaker, "deadline_warnings", local(2026, 12, 7, 1, 0))
    warnings = await queued(sessionmaker, kind="unit.deadline_warning")
    assert [q.row.person_id for q in warnings] == [people["head"].id]
    text = warnings[0].text()
    assert "Còn 3 ngày nữa là hết hạn đăng ký lớp K10" in text
    assert "Chỉ tiêu của Huyện ủy Yên Thành: mới có 1/3 chỗ được đăng ký" in text
    assert "• Phạm Thu Trang — đã xác nhận" in text
    assert "• Nguyễn Văn Xã — trong danh sách chờ" in text
    assert warnings[0].buttons == [f"uc:{klass.id}"]
    assert "only 1 of 3 seats are taken" in warnings[0].text("en")
    assert await run_job(sessionmaker, "deadline_warnings", local(2026, 12, 8, 9, 0))
    assert len(await queued(sessionmaker, kind="unit.deadline_warning")) == 1


async def test_the_deadline_day_itself_warns_and_after_it_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    world = await province(sessionmaker)
    settings = dataclasses.replace(SETTINGS, deadline_warning_days=0)
    async with sessionmaker() as session, session.begin():
        await add_class(
            session,
            "K11",
            "Nghiệp vụ",
            start=START,
            deadline=dt.date(2026, 12, 10),
            quotas={world.units["district"]: 2},
        )
    assert await run_job(sessionmaker, "deadline_warnings", local(2026, 12, 9, 9), settings)
    assert await queued(sessionmaker) == []
    assert await run_job(sessionmaker, "deadline_warnings", local(2026, 12, 10, 9), settings)
    (warning,) = await queued(sessionmaker, kind="unit.deadline_warning")
    assert "Hôm nay (10/12/2026) là hạn cuối đăng ký lớp K11" in warning.text()
    assert "Chưa có ai của đơn vị đăng ký" in warning.text()


async def test_someone_who_blocked_the_bot_is_reported_to_their_head_and_nominator(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    world = await province(sessionmaker)
    people = world.people
    async with sessionmaker() as session, session.begin():
        klass = await add_class(session, "K12", "Đảng viên mới", start=START)
        await add_registration(session, people["villager"], klass)
        await session.execute(update(Registration).values(registered_by_id=people["other_head"].id))
        await link(session, people["villager"], "telegram", "501")
        await link(session, people["learner"], "telegram", "502")
    assert await run_job(sessionmaker, "unreachable_people", NOW)
    assert await queued(sessionmaker) == []
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(ChannelAccount)
            .where(ChannelAccount.external_id == "501")
            .values(reachable=False, unreachable_since=NOW + dt.timedelta(minutes=2))
        )
    assert await run_job(sessionmaker, "unreachable_people", NOW + dt.timedelta(minutes=5))
    assert await run_job(sessionmaker, "unreachable_people", NOW + dt.timedelta(minutes=10))
    reports = await queued(sessionmaker, kind="unit.person_unreachable")
    assert [q.row.person_id for q in reports] == [people["head"].id, people["other_head"].id]
    text = reports[0].text()
    assert "Không gửi được tin nhắn cho đồng chí Nguyễn Văn Xã (Đảng ủy xã Bảo Thành)" in text
    assert "qua Telegram" in text
    assert "Đồng chí ấy đang đăng ký các lớp: K12." in text


async def test_someone_still_reachable_on_another_channel_is_not_reported(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    world = await province(sessionmaker)
    villager = world.people["villager"]
    async with sessionmaker() as session, session.begin():
        await link(session, villager, "telegram", "501")
        await link(session, villager, "zalo", "z501")
        await session.execute(
            update(ChannelAccount)
            .where(ChannelAccount.external_id == "501")
            .values(reachable=False, unreachable_since=NOW)
        )
    assert await run_job(sessionmaker, "unreachable_people", NOW + dt.timedelta(minutes=1))
    assert await queued(sessionmaker) == []
