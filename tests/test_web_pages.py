"""The web admin pages do what staff expect: classes, decisions, units, people, failures."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import AsyncIterator

import openpyxl
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import (
    AuditEntry,
    ChannelAccount,
    ClassQuota,
    ClassStatus,
    OutboxMessage,
    OutboxStatus,
    Registration,
    RegistrationStatus,
    TrainingClass,
)
from tests.factories import add_person, link
from tests.web_support import Site, Visitor, admin_site, visible_text
from tests.web_world import World, build_world

S = RegistrationStatus


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    return await build_world(sessionmaker)


@pytest.fixture
async def site(sessionmaker: async_sessionmaker[AsyncSession], world: World) -> AsyncIterator[Site]:
    async with admin_site(sessionmaker) as site:
        yield site


@pytest.fixture
async def admin(site: Site) -> Visitor:
    return await site.visitor().logged_in("admin")


def class_form(**values: str) -> dict[str, str]:
    """Return a valid new-class form, with `values` changed."""
    start = dt.date.today() + dt.timedelta(days=40)
    return {
        "code": "CNKT-2027",
        "title": "Bồi dưỡng cập nhật kiến thức",
        "program": "cap_nhat_kien_thuc",
        "form": "full_time",
        "location": "Hội trường A",
        "start_date": start.isoformat(),
        "end_date": (start + dt.timedelta(days=4)).isoformat(),
        "registration_deadline": (start - dt.timedelta(days=7)).isoformat(),
        "capacity": "40",
        "max_age": "",
        "required_theory_level": "",
        "unit_quotas": "YTH:10;DCH:10",
        "requires_approval": "true",
        "online_url": "",
    } | values


async def audit_actions(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessionmaker() as session:
        stmt = select(AuditEntry.action).where(AuditEntry.action != "login").order_by(AuditEntry.id)
        return list((await session.scalars(stmt)).all())


async def notices(sessionmaker: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def test_create_a_class_from_the_form(
    admin: Visitor, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await admin.page("/classes/new")
    response = await admin.post("/classes/new", class_form())
    assert response.status == 303
    location = response.headers["Location"]
    page = visible_text(await admin.page(location))
    assert "Đã mở lớp mới" in page
    assert "CNKT-2027" in page
    async with sessionmaker() as session:
        created = await session.scalar(
            select(TrainingClass).where(TrainingClass.code == "CNKT-2027")
        )
        assert created is not None
        assert created.capacity == 40
        assert created.requires_approval
        assert created.status == ClassStatus.OPEN
        assert created.search_text == "cnkt-2027 boi duong cap nhat kien thuc"
        quotas = (
            await session.scalars(select(ClassQuota.seats).where(ClassQuota.class_id == created.id))
        ).all()
        assert sorted(quotas) == [10, 10]
    assert await audit_actions(sessionmaker) == ["class.create"]


async def test_a_bad_class_form_names_each_problem_and_creates_nothing(
    admin: Visitor, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    start = dt.date.today() + dt.timedelta(days=40)
    await admin.page("/classes/new")
    bad = class_form(
        end_date=(start - dt.timedelta(days=1)).isoformat(),
        unit_quotas="YTH:10;NOPE:5",
        capacity="0",
    )
    response = await admin.post("/classes/new", bad)
    assert response.status == 422
    page = visible_text(admin.last_text)
    assert "Chưa lưu" in page
    assert "is before start_date" in page
    assert "'NOPE' is not a known unit" in page
    assert "capacity '0' is not a positive whole number" in page
    # What was typed stays in the form.
    assert 'value="YTH:10;NOPE:5"' in admin.last_text
    response = await admin.post("/classes/new", class_form(code="KN-01"))
    assert response.status == 422
    assert "Đã có lớp mã KN-01" in visible_text(admin.last_text)
    async with sessionmaker() as session:
        count = len((await session.scalars(select(TrainingClass.id))).all())
    assert count == 2
    assert await audit_actions(sessionmaker) == []


async def test_editing_dates_and_location_writes_the_row_for_the_change_notice(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    announced = {"start_date": "2026-01-01", "location": "old"}
    async with sessionmaker() as session, session.begin():
        training_class = await session.get(TrainingClass, world.shared.id)
        assert training_class is not None
        training_class.announced = announced
        before = training_class.start_date
    await admin.page(f"/classes/{world.shared.id}/edit")
    new_start = before + dt.timedelta(days=7)
    form = class_form(
        code="ignored",
        title="Bồi dưỡng kỹ năng lãnh đạo",
        program="ky_nang",
        start_date=new_start.isoformat(),
        end_date=(new_start + dt.timedelta(days=4)).isoformat(),
        registration_deadline=(new_start - dt.timedelta(days=7)).isoformat(),
        location="Hội trường B",
        capacity="3",
        unit_quotas="YTH:1;DCH:2",
    )
    response = await admin.post(f"/classes/{world.shared.id}/edit", form)
    assert response.status == 303
    assert response.headers["Location"].endswith("done=saved")
    async with sessionmaker() as session:
        edited = await session.get(TrainingClass, world.shared.id)
        assert edited is not None
        assert edited.code == "KN-01"  # the code is not changed by the form
        assert edited.start_date == new_start
        assert edited.location == "Hội trường B"
        # The notification engine's sweep compares with this and tells registrants.
        assert edited.announced == announced
        entry = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "class.edit"))
        ).one()
    assert set(entry.details["changed"]) == {
        "start_date",
        "end_date",
        "registration_deadline",
        "location",
    }
    assert entry.details["changed"]["location"] == ["Trường Chính trị tỉnh", "Hội trường B"]
    # The web sends no notice itself.
    assert await notices(sessionmaker) == []


async def test_capacity_cannot_go_below_held_seats_and_a_raise_offers_seats_on(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        waiting = await add_person(session, "0912000191", "Trần Văn Chờ", world.yen_thanh)
        session.add(
            Registration(person_id=waiting.id, class_id=world.shared.id, status=S.WAITLISTED)
        )
        training_class = await session.get(TrainingClass, world.shared.id)
        assert training_class is not None
        training_class.capacity = 2  # the two pending registrations hold both seats
        training_class.requires_approval = False
    edit = class_form(
        title="Bồi dưỡng kỹ năng lãnh đạo",
        start_date=world.shared.start_date.isoformat(),
        end_date=world.shared.end_date.isoformat(),
        registration_deadline=world.shared.registration_deadline.isoformat(),
        unit_quotas="",
    )
    await admin.page(f"/classes/{world.shared.id}/edit")
    response = await admin.post(f"/classes/{world.shared.id}/edit", edit | {"capacity": "1"})
    assert response.status == 422
    assert "không được ít hơn 2 chỗ" in visible_text(admin.last_text)
    response = await admin.post(f"/classes/{world.shared.id}/edit", edit | {"capacity": "3"})
    assert response.status == 303
    async with sessionmaker() as session:
        offered = await session.scalar(
            select(Registration).where(Registration.person_id == waiting.id)
        )
        assert offered is not None
        assert offered.status == S.OFFERED
    assert [n.kind for n in await notices(sessionmaker)] == ["registration.offered"]


async def test_close_and_reopen_a_class(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await admin.page(f"/classes/{world.shared.id}")
    assert (await admin.post(f"/classes/{world.shared.id}/close")).status == 303
    page = visible_text(await admin.page(f"/classes/{world.shared.id}?done=closed"))
    assert "Đã đóng đăng ký" in page
    assert "Mở lại đăng ký" in page
    assert (await admin.post(f"/classes/{world.shared.id}/reopen")).status == 303
    async with sessionmaker() as session:
        training_class = await session.get(TrainingClass, world.shared.id)
        assert training_class is not None
        assert training_class.status == ClassStatus.OPEN
    assert await audit_actions(sessionmaker) == ["class.close", "class.reopen"]


async def test_decisions_go_through_the_seat_rules_and_tell_the_learners(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        training_class = await session.get(TrainingClass, world.shared.id)
        assert training_class is not None
        training_class.capacity = 2
        waiting = await add_person(session, "0912000192", "Lê Thị Chờ", world.dien_chau)
        session.add(
            Registration(person_id=waiting.id, class_id=world.shared.id, status=S.WAITLISTED)
        )
    page = visible_text(await admin.page(f"/classes/{world.shared.id}"))
    assert "Chờ thủ trưởng đơn vị duyệt (2)" in page
    assert "Lê Thị Chờ" in page
    assert (await admin.post(f"/registrations/{world.own_pending.id}/approve")).status == 303
    response = await admin.post(f"/registrations/{world.other_pending.id}/reject", {"preset": "2"})
    assert response.status == 303
    # Deciding again is refused: it is no longer pending.
    response = await admin.post(f"/registrations/{world.own_pending.id}/approve")
    assert "error=not_pending" in response.headers["Location"]
    page = visible_text(await admin.page(response.headers["Location"]))
    assert "không còn chờ duyệt" in page
    async with sessionmaker() as session:
        rows = await session.execute(select(Registration.person_id, Registration.status))
        statuses = {person_id: status for person_id, status in rows}
    assert statuses == {
        world.learner.id: S.CONFIRMED,
        world.other.id: S.REJECTED,
        waiting.id: S.OFFERED,  # the rejected seat, offered on
    }
    sent = await notices(sessionmaker)
    assert [(n.kind, n.person_id) for n in sent] == [
        ("registration.approved", world.learner.id),
        ("registration.rejected", world.other.id),
        ("registration.offered", waiting.id),
    ]
    assert sent[0].idempotency_key == f"approved:{world.own_pending.id}"
    assert await audit_actions(sessionmaker) == ["registration.approve", "registration.reject"]


async def test_a_rejection_needs_a_reason(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await admin.page(f"/classes/{world.shared.id}")
    response = await admin.post(f"/registrations/{world.own_pending.id}/reject", {"preset": "9"})
    assert "error=reason_needed" in response.headers["Location"]
    async with sessionmaker() as session:
        registration = await session.get(Registration, world.own_pending.id)
        assert registration is not None
        assert registration.status == S.PENDING_APPROVAL


async def test_cancel_frees_the_seat_for_the_waitlist_in_order(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        training_class = await session.get(TrainingClass, world.shared.id)
        assert training_class is not None
        training_class.capacity = 2
        first = await add_person(session, "0912000193", "Người Chờ Một", world.dien_chau)
        second = await add_person(session, "0912000194", "Người Chờ Hai", world.dien_chau)
        for person in (first, second):
            session.add(
                Registration(person_id=person.id, class_id=world.shared.id, status=S.WAITLISTED)
            )
    page = visible_text(await admin.page(f"/classes/{world.shared.id}"))
    assert page.index("1 Người Chờ Một") < page.index("2 Người Chờ Hai")
    response = await admin.post(f"/registrations/{world.other_pending.id}/cancel")
    assert response.status == 303
    async with sessionmaker() as session:
        cancelled = await session.get(Registration, world.other_pending.id)
        assert cancelled is not None
        assert cancelled.status == S.CANCELLED
        assert cancelled.reason == "cancelled_by_staff"
        offered = await session.scalar(
            select(Registration).where(Registration.person_id == first.id)
        )
        assert offered is not None
        assert offered.status == S.OFFERED
    assert [n.kind for n in await notices(sessionmaker)] == [
        "registration.cancelled_by_staff",
        "registration.offered",
    ]


async def test_the_unit_view_counts_registrations_against_the_binding_quota(
    admin: Visitor, world: World
) -> None:
    page = visible_text(await admin.page(f"/units/{world.yen_thanh.id}"))
    assert "KN-01" in page
    assert "NV-02" not in page  # Diễn Châu's class only
    # Yên Thành: quota 1, used 1 (the learner's pending registration), 1 pending, none waiting.
    start = world.shared.start_date.strftime("%d/%m/%Y")
    assert f"KN-01 Bồi dưỡng kỹ năng lãnh đạo {start} 1 1 1 0" in page
    units = visible_text(await admin.page("/units"))
    assert "Huyện Yên Thành" in units
    assert "Huyện Diễn Châu" in units


async def test_people_show_their_link_status_and_filter_by_it(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        await link(session, world.learner, "telegram", "111")
        await link(session, world.other, "telegram", "222")
        account = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.external_id == "222")
        )
        assert account is not None
        account.reachable = False
    page = visible_text(await admin.page("/people"))
    assert "Phạm Thu Trang 0912000178 Huyện Yên Thành Đã liên kết" in page
    assert "Hồ Văn Nam 0912000190 Huyện Diễn Châu Không liên lạc được" in page
    assert "Lý Đình Trung Thủ trưởng 0912000175 Huyện Yên Thành Chưa liên kết" in page
    never = visible_text(await admin.page("/people?link=never"))
    assert "Lý Đình Trung" in never
    assert "Phạm Thu Trang" not in never
    by_name = visible_text(await admin.page("/people?q=pham+thu"))
    assert "Phạm Thu Trang" in by_name
    assert "Hồ Văn Nam" not in by_name


async def test_delivery_failures_by_reason_latest_first(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    now = dt.datetime.now(dt.UTC)
    async with sessionmaker() as session, session.begin():
        for number, (reason, hours) in enumerate(
            [
                ("unreachable: 403 Forbidden: bot was blocked by the user", 3),
                ("400 chat not found", 1),
                ("unreachable: 403 Forbidden: bot was blocked by the user", 2),
            ]
        ):
            session.add(
                OutboxMessage(
                    idempotency_key=f"k{number}",
                    person_id=world.learner.id,
                    kind="registration.approved",
                    payload={},
                    status=OutboxStatus.FAILED,
                    due_at=now - dt.timedelta(hours=hours),
                    last_error=reason,
                )
            )
        session.add(
            OutboxMessage(
                idempotency_key="sent",
                person_id=world.other.id,
                kind="x",
                payload={},
                status=OutboxStatus.SENT,
            )
        )
    page = visible_text(await admin.page("/failures"))
    assert page.index("400 chat not found 1") < page.index("bot was blocked by the user 2")
    assert "Hồ Văn Nam" not in page
    assert "3 tin" in page
    only = visible_text(await admin.page("/failures?reason=400+chat+not+found"))
    assert "1 tin" in only


async def test_export_a_class_roster_to_xlsx(site: Site, admin: Visitor, world: World) -> None:
    response = await admin.get(f"/classes/{world.shared.id}/registrations.xlsx")
    assert response.status == 200
    assert "attachment" in response.headers["Content-Disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(await response.read())).active
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert rows[0] == [
        "class_code",
        "full_name",
        "phone",
        "unit_code",
        "unit_name",
        "status",
        "registered_at",
    ]
    assert sorted(row[1] for row in rows[1:]) == ["Hồ Văn Nam", "Phạm Thu Trang"]
    head = await site.visitor().logged_in("head")
    response = await head.get(f"/classes/{world.shared.id}/registrations.xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(await response.read())).active
    assert [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)] == ["Phạm Thu Trang"]


async def test_the_audit_log_filters_by_account_and_action(admin: Visitor, world: World) -> None:
    await admin.page(f"/classes/{world.shared.id}")
    await admin.post(f"/classes/{world.shared.id}/close")
    await admin.post(f"/registrations/{world.own_pending.id}/approve")
    page = visible_text(await admin.page("/audit"))
    assert "class.close" in page
    assert "registration.approve" in page
    filtered = visible_text(await admin.page("/audit?action=class.close&user=admin"))
    assert "class.close" in filtered
    assert "registration.approve KN-01" not in filtered
    assert "Phạm Thu Trang — KN-01" not in filtered
    by_target = visible_text(await admin.page("/audit?q=ph%E1%BA%A1m"))
    assert "Phạm Thu Trang — KN-01" in by_target


async def test_the_pages_switch_to_english_and_back(admin: Visitor) -> None:
    assert "Lớp học" in visible_text(await admin.page("/classes"))
    response = await admin.get("/lang/en?next=/classes")
    assert response.status == 303
    assert response.headers["Location"] == "/classes"
    page = visible_text(await admin.page("/classes"))
    assert "Classes" in page
    assert "Log out" in page
    await admin.get("/lang/vi?next=https://evil.example/")
    assert "Đăng xuất" in visible_text(await admin.page("/classes"))
