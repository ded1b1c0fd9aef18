"""Unit heads through dispatch: /unit, a class's registrations, approve and reject."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import (
    ClassQuota,
    OutboxMessage,
    Person,
    Registration,
    RegistrationStatus,
    TrainingClass,
    Unit,
)
from handlers.unit_buttons import decode_unit, reason_tag
from tests.factories import NOW, TODAY, Chat, add_class, add_person, add_unit, link

S = RegistrationStatus
START = TODAY + dt.timedelta(days=20)


@dataclass
class World:
    head: Person
    learner: Person  # in a unit under the head's
    sibling: Person  # in a unit beside the head's
    waiting: Person  # on the waitlist of the full class
    klass: TrainingClass  # requires approval, 2 seats, quota for the head's unit
    other: TrainingClass  # only the sibling unit's
    pending: int  # the learner's pending registration in klass
    sibling_pending: int  # the sibling's pending registration in klass
    waitlisted: int


async def add_reg(
    session: AsyncSession, person: Person, klass: TrainingClass, status: S, **kw: object
) -> int:
    """Insert a registration and return its id."""
    registration = Registration(person_id=person.id, class_id=klass.id, status=status, **kw)
    session.add(registration)
    await session.flush()
    return registration.id


async def world(sm: async_sessionmaker[AsyncSession]) -> World:
    async with sm() as session, session.begin():
        province = await add_unit(session, "SNV", "Sở Nội vụ")
        sub = await add_unit(session, "CCVT", "Chi cục Văn thư", parent=province)
        sibling_unit = await add_unit(session, "STC", "Sở Tài chính")
        head = await add_person(session, "0912000001", "Trần Văn Trưởng", province)
        head.is_unit_head = True
        learner = await add_person(session, "0912000002", "Lê Thị Học", sub)
        sibling = await add_person(session, "0912000003", "Phạm Văn Khác", sibling_unit)
        waiting = await add_person(session, "0912000004", "Đỗ Văn Chờ", sub)
        admin = await add_person(session, "0912000009", "Quản Trị", sibling_unit)
        admin.is_admin = True
        klass = await add_class(
            session, "KN1", "Kỹ năng lãnh đạo", start=START, capacity=2, quotas={province: 5}
        )
        klass.requires_approval = True
        other = await add_class(
            session,
            "KN2",
            "Kỹ năng khác",
            start=START + dt.timedelta(days=10),
            quotas={sibling_unit: 3},
        )
        await add_class(session, "KN3", "Lớp không ai", start=START + dt.timedelta(days=30))
        pending = await add_reg(session, learner, klass, S.PENDING_APPROVAL)
        sibling_pending = await add_reg(session, sibling, klass, S.PENDING_APPROVAL)
        waitlisted = await add_reg(session, waiting, klass, S.WAITLISTED)
        await link(session, head, "test", "head")
        await link(session, learner, "test", "learner")
        await link(session, sibling, "test", "sibling")
        await link(session, admin, "test", "admin")
    return World(
        head, learner, sibling, waiting, klass, other, pending, sibling_pending, waitlisted
    )


async def status_of(sm: async_sessionmaker[AsyncSession], registration_id: int) -> Registration:
    async with sm() as session:
        registration = await session.get(Registration, registration_id)
        assert registration is not None
        return registration


async def outbox(sm: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sm() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def class_id_of(sm: async_sessionmaker[AsyncSession], code: str) -> int:
    async with sm() as session:
        return (
            await session.scalars(select(TrainingClass.id).where(TrainingClass.code == code))
        ).one()


async def test_unit_is_for_heads_only(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await world(sessionmaker)
    learner = Chat(sessionmaker, user_id="learner")
    text = await learner.say("/unit")
    assert "dành cho thủ trưởng đơn vị" in text
    assert "KN1" not in text
    visitor = Chat(sessionmaker, user_id="nobody")
    assert "dành cho thủ trưởng đơn vị" in await visitor.say("/unit")


async def test_head_sees_own_unit_and_sub_units_not_siblings(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    text = await head.say("/unit")
    assert "KN1" in text
    assert "KN2" not in text  # only the sibling unit has a quota
    assert "KN3" in text  # no quotas at all: open to every unit
    # The sibling's pending registration is not the head's: 1 pending, 1 waitlisted.
    assert "Sở Nội vụ: 1/5 chỉ tiêu, 1 chờ duyệt, 1 trong danh sách chờ" in text
    assert "(lớp không chia chỉ tiêu, mọi đơn vị đều đăng ký được)" in text
    kn3 = await class_id_of(sessionmaker, "KN3")
    assert head.data() == [f"uc:{w.klass.id}", f"uc:{kn3}"]
    detail = await head.press(f"uc:{w.klass.id}")
    assert "Lê Thị Học — Chi cục Văn thư" in detail
    assert "Đỗ Văn Chờ" in detail
    assert "Phạm Văn Khác" not in detail
    assert f"ap:{w.pending}" in head.data()
    assert f"ap:{w.sibling_pending}" not in head.data()


async def test_admin_sees_all_upcoming_classes(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    admin = Chat(sessionmaker, user_id="admin")
    text = await admin.say("/unit")
    assert all(code in text for code in ("KN1", "KN2", "KN3"))
    assert "Toàn trường: 2/2 chỗ, 2 chờ duyệt" in text
    detail = await admin.press(f"uc:{w.klass.id}")
    assert "Phạm Văn Khác" in detail
    assert "Lê Thị Học" in detail


async def test_approve_tells_the_learner_and_a_double_tap_is_polite(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    await head.say("/unit")
    await head.say("1")  # typed number opens the class
    text = await head.press(f"ap:{w.pending}")
    assert "Đã duyệt đăng ký của đồng chí Lê Thị Học" in text
    registration = await status_of(sessionmaker, w.pending)
    assert registration.status == S.CONFIRMED
    assert registration.decided_by_id == w.head.id
    notices = await outbox(sessionmaker)
    assert [(n.person_id, n.kind) for n in notices] == [(w.learner.id, "registration.approved")]
    assert "KN1" in str(notices[0].payload)
    again = await head.press(f"ap:{w.pending}")
    assert "đã được xử lý trước đó (trạng thái: đã xác nhận)" in again
    rejected_late = await head.press(f"rj:{w.pending}")
    assert "đã được xử lý trước đó" in rejected_late
    assert len(await outbox(sessionmaker)) == 1


async def test_reject_with_a_preset_reason_offers_the_seat_on(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    ask = await head.press(f"rj:{w.pending}")
    assert "Vì sao không duyệt" in ask
    assert head.data()[0] == f"rr:{w.pending}:1"
    text = await head.press(f"rr:{w.pending}:2")
    assert "Cần bố trí công tác tại đơn vị" in text
    registration = await status_of(sessionmaker, w.pending)
    assert registration.status == S.REJECTED
    assert registration.reason == "Cần bố trí công tác tại đơn vị trong thời gian học"
    assert (await status_of(sessionmaker, w.waitlisted)).status == S.OFFERED
    kinds = {(n.person_id, n.kind) for n in await outbox(sessionmaker)}
    assert kinds == {
        (w.learner.id, "registration.rejected"),
        (w.waiting.id, "registration.offered"),
    }


async def test_reject_with_a_typed_reason_and_cancel_leaves_it(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    await head.press(f"rj:{w.pending}")
    assert "Đã huỷ" in await head.say("/cancel")
    assert (await status_of(sessionmaker, w.pending)).status == S.PENDING_APPROVAL
    # After /cancel, text is not taken as a reason.
    await head.say("Chưa đủ điều kiện thâm niên")
    assert (await status_of(sessionmaker, w.pending)).status == S.PENDING_APPROVAL
    await head.press(f"rj:{w.pending}")
    asked = await head.say("Chưa đủ điều kiện thâm niên")
    assert (
        "Không duyệt đăng ký của đồng chí Lê Thị Học cho lớp KN1, "
        "lý do: «Chưa đủ điều kiện thâm niên»?"
    ) in asked
    assert (await status_of(sessionmaker, w.pending)).status == S.PENDING_APPROVAL
    assert head.data() == [
        f"rt:{w.pending}:{reason_tag('Chưa đủ điều kiện thâm niên')}",
        f"uc:{w.klass.id}",
    ]
    text = await head.press(head.data()[0])
    assert "Lý do: Chưa đủ điều kiện thâm niên" in text
    registration = await status_of(sessionmaker, w.pending)
    assert registration.status == S.REJECTED
    assert registration.reason == "Chưa đủ điều kiện thâm niên"
    notices = await outbox(sessionmaker)
    rejected = [n for n in notices if n.kind == "registration.rejected"]
    assert len(rejected) == 1
    assert "Chưa đủ điều kiện thâm niên" in str(rejected[0].payload)
    assert any(n.kind == "registration.offered" for n in notices)


async def test_forged_buttons_outside_scope_change_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    for data in (f"ap:{w.sibling_pending}", f"rj:{w.sibling_pending}", f"rr:{w.sibling_pending}:1"):
        assert "không thuộc đơn vị do đồng chí phụ trách" in await head.press(data)
    assert (await status_of(sessionmaker, w.sibling_pending)).status == S.PENDING_APPROVAL
    learner = Chat(sessionmaker, user_id="learner")
    assert "dành cho thủ trưởng đơn vị" in await learner.press(f"ap:{w.pending}")
    assert "dành cho thủ trưởng đơn vị" in await learner.press(f"uc:{w.klass.id}")
    assert (await status_of(sessionmaker, w.pending)).status == S.PENDING_APPROVAL
    assert await outbox(sessionmaker) == []
    # Unknown ids and garbage are stale buttons.
    assert "không còn dùng được" in await head.press("ap:999999")
    assert "không còn dùng được" in await head.press("ap:abc")


async def test_text_where_a_button_was_expected(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    await head.press(f"uc:{w.klass.id}")
    # A typed number presses the numbered button; other text is answered, not an error.
    await head.say("1")
    assert (await status_of(sessionmaker, w.pending)).status == S.CONFIRMED
    assert await head.say("xin chào") != ""
    assert await head.say("99") != ""


@pytest.mark.parametrize(
    "data",
    [
        "ap:",
        "ap:0",
        "ap:01",
        "ap:1:2",
        "rr:1",
        "rr:1:0",
        "rr:1:10",
        "nm:1",
        "nx:1",
        "ul:x",
        "zz:1",
        "ap:99999999999",
        "nd:-1",
        "np:1:٣",
        "rt:1",
        "rt:1:0",
        "rt:1:100000",
    ],
)
def test_garbage_button_data_decodes_to_none(data: str) -> None:
    assert decode_unit(data) is None


def test_button_data_decodes() -> None:
    from handlers import unit_buttons as ub

    assert decode_unit("rr:7:2") == ub.RejectFor(7, 2)
    assert decode_unit("rt:7:513") == ub.RejectTyped(7, 513)
    assert decode_unit(ub.reject_typed_data(7, "x" * 300)) == ub.RejectTyped(
        7, ub.reason_tag("x" * 300)
    )
    assert decode_unit("nx:42:9") == ub.Nominate(42, 9)
    assert decode_unit(ub.nominee_page_data(2**31 - 1, 9999)) == ub.NomineePage(2**31 - 1, 9999)


async def test_heads_find_unit_in_the_menu(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    await head.say("/help")
    assert "ul:1" in head.data()
    learner = Chat(sessionmaker, user_id="learner")
    await learner.say("/help")
    assert "ul:1" not in learner.data()


async def test_unit_classes_and_people_are_paged(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    async with sessionmaker() as session, session.begin():
        province_unit = await session.get(Unit, w.head.unit_id)
        assert province_unit is not None
        province = province_unit.id
        for n in range(6):
            extra = await add_class(
                session, f"P{n}", f"Lớp thêm {n}", start=START + dt.timedelta(days=n + 1)
            )
            session.add(ClassQuota(class_id=extra.id, unit_id=province, seats=2))
        for n in range(4):
            await add_person(session, f"0933000{n:03d}", f"Người {n}", province_unit)
    head = Chat(sessionmaker, user_id="head")
    first = await head.say("/unit")
    assert "(trang 1/2)" in first
    assert "ul:2" in head.data()
    second = await head.press("ul:2")
    assert "(trang 2/2)" in second
    assert "P5" in second
    assert "ul:1" in head.data()
    await head.press(f"nm:{w.klass.id}:1")
    assert f"nm:{w.klass.id}:2" in head.data()
    people = await head.press(f"nm:{w.klass.id}:2")
    assert "(trang 2/2)" in people


async def test_a_head_cannot_approve_their_own_registration(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    async with sessionmaker() as session, session.begin():
        own = await add_reg(session, w.head, w.other, S.PENDING_APPROVAL)
    head = Chat(sessionmaker, user_id="head")
    text = await head.press(f"ap:{own}")
    assert "không thể tự duyệt đăng ký của chính mình" in text
    assert (await status_of(sessionmaker, own)).status == S.PENDING_APPROVAL
    # The school's admin decides it instead.
    admin = Chat(sessionmaker, user_id="admin")
    await admin.press(f"ap:{own}")
    assert (await status_of(sessionmaker, own)).status == S.CONFIRMED


@pytest.mark.parametrize("typed", ["thôi", "Không", "HUỶ", "hủy", "cancel", "Thôi."])
async def test_typing_thoi_at_the_reason_step_rejects_nobody(
    sessionmaker: async_sessionmaker[AsyncSession], typed: str
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    await head.press(f"rj:{w.pending}")
    text = await head.say(typed)
    assert "Lê Thị Học vẫn chờ duyệt, không có gì thay đổi" in text
    assert "📘 Lớp KN1" in text  # back at the class
    registration = await status_of(sessionmaker, w.pending)
    assert (registration.status, registration.reason) == (S.PENDING_APPROVAL, None)
    # The step is gone: text typed next is not a reason either.
    await head.say("Chưa đủ điều kiện thâm niên")
    assert (await status_of(sessionmaker, w.pending)).status == S.PENDING_APPROVAL
    assert await outbox(sessionmaker) == []


async def test_a_typed_reason_waits_for_its_confirm_button(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    await head.press(f"rj:{w.pending}")
    await head.say("Lý do một")
    first_confirm = head.data()[0]
    # "Thôi" (typed or pressed) leaves the registration pending.
    assert "📘 Lớp KN1" in await head.say("thôi")
    assert (await status_of(sessionmaker, w.pending)).status == S.PENDING_APPROVAL
    # A confirm button of an older reason does not confirm a newer one.
    await head.press(f"rj:{w.pending}")
    await head.say("Lý do hai")
    asked_again = await head.press(first_confirm)
    assert "không còn được lưu" in asked_again
    assert "Vì sao không duyệt" in asked_again
    assert (await status_of(sessionmaker, w.pending)).status == S.PENDING_APPROVAL
    # A reason typed at the confirmation replaces the one asked about; "có" confirms it.
    await head.say("Lý do ba")
    replaced = await head.say("Lý do bốn")
    assert "«Lý do bốn»" in replaced
    assert "Lý do ba" not in replaced
    assert "Lý do: Lý do bốn" in await head.say("có")
    registration = await status_of(sessionmaker, w.pending)
    assert (registration.status, registration.reason) == (S.REJECTED, "Lý do bốn")


async def test_a_kept_reason_lapses_with_its_step(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    await head.press(f"rj:{w.pending}")
    await head.say("Cần người trực cơ quan")
    confirm = head.data()[0]
    head.now = NOW + dt.timedelta(minutes=31)
    text = await head.press(confirm)
    assert "không còn được lưu" in text
    assert (await status_of(sessionmaker, w.pending)).status == S.PENDING_APPROVAL


@pytest.mark.parametrize("interruption", ["button:zz:1", "button:ap:999999", "text:/khongco"])
async def test_a_stale_button_or_unknown_command_drops_the_reason_step(
    sessionmaker: async_sessionmaker[AsyncSession], interruption: str
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    await head.press(f"rj:{w.pending}")
    kind, _, value = interruption.partition(":")
    if kind == "button":
        assert "không còn dùng được" in await head.press(value)
    else:
        assert "/khongco" in await head.say(value)
    await head.say("kỹ năng lãnh đạo")  # a search now, not a reason
    assert (await status_of(sessionmaker, w.pending)).status == S.PENDING_APPROVAL
    await head.say("có")
    assert (await status_of(sessionmaker, w.pending)).status == S.PENDING_APPROVAL


def numbered_lines_match_buttons(chat: Chat) -> int:
    """Check that each numbered text line names what the button of that number does.

    In the console and Zalo, buttons are listed as numbered choices after the text, and
    typing a number presses one: a text line "2. X" must mean button 2 is about X.
    Return how many numbered lines there were.
    """
    from handlers.choices import buttons_of, reply_text
    from handlers.i18n import t

    labels = [t(button.label, "vi") for button in buttons_of(chat.last)]
    seen = 0
    for reply in chat.last:
        for line in reply_text(reply, "vi").splitlines():
            found = re.match(r"\s*(\d+)\. (.+?)(?: — | «|$)", line)
            if found:
                seen += 1
                number, name = int(found.group(1)), found.group(2)
                assert name in labels[number - 1], (line, labels)
    return seen


async def test_class_view_has_no_numbers_to_mistake_for_buttons(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    async with sessionmaker() as session, session.begin():
        sub = await session.get(Unit, w.learner.unit_id)
        assert sub is not None
        second = await add_person(session, "0912000010", "Nguyễn Thị Hai", sub)
        second_pending = await add_reg(session, second, w.klass, S.PENDING_APPROVAL)
    head = Chat(sessionmaker, user_id="head")
    text = await head.press(f"uc:{w.klass.id}")
    assert "  • Lê Thị Học — Chi cục Văn thư" in text
    assert "  • Nguyễn Thị Hai — Chi cục Văn thư" in text
    assert numbered_lines_match_buttons(head) == 0
    labels = text.split("\n\n")[-1]
    assert "1. ✅ Duyệt: Lê Thị Học" in labels
    assert "2. ❌ Không duyệt: Lê Thị Học" in labels
    assert "3. ✅ Duyệt: Nguyễn Thị Hai" in labels
    assert "4. ❌ Không duyệt: Nguyễn Thị Hai" in labels
    # A typed name presses nothing: it is not a button's words.
    await head.say("Nguyễn Thị Hai")
    assert (await status_of(sessionmaker, second_pending)).status == S.PENDING_APPROVAL
    # "2" is the button numbered 2, which names the person it is about.
    await head.press(f"uc:{w.klass.id}")
    assert "Vì sao không duyệt đăng ký của đồng chí Lê Thị Học" in await head.say("2")
    assert (await status_of(sessionmaker, w.pending)).status == S.PENDING_APPROVAL


async def test_long_names_are_shortened_on_buttons(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    long_name = "Tôn Nữ Thị Hoàng Yến Phương Thảo Nguyên"
    async with sessionmaker() as session, session.begin():
        person = await session.get(Person, w.learner.id)
        assert person is not None
        person.full_name = long_name
    head = Chat(sessionmaker, user_id="head")
    text = await head.press(f"uc:{w.klass.id}")
    assert f"• {long_name} — Chi cục Văn thư" in text
    assert "✅ Duyệt: Tôn Nữ Thị Hoàng Yến Ph…" in text


async def test_unit_and_nominee_lists_number_lines_as_their_buttons(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    await head.say("/unit")
    assert numbered_lines_match_buttons(head) >= 1
    await head.press(f"nm:{w.klass.id}:1")
    assert numbered_lines_match_buttons(head) == 2  # Lê Thị Học, Đỗ Văn Chờ
    await head.say("văn")
    assert numbered_lines_match_buttons(head) >= 1


async def test_a_sub_unit_head_sees_classes_under_the_parents_quota(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    async with sessionmaker() as session, session.begin():
        sub = await session.get(Unit, w.learner.unit_id)
        assert sub is not None
        sub_head = await add_person(session, "0912000020", "Trưởng Chi Cục", sub)
        sub_head.is_unit_head = True
        await link(session, sub_head, "test", "subhead")
        # Only the sub-unit's own quota: the province head sees it as the sub-units'.
        await add_class(
            session, "KN4", "Lớp chi cục", start=START + dt.timedelta(days=3), quotas={sub: 2}
        )
    head = Chat(sessionmaker, user_id="subhead")
    text = await head.say("/unit")
    # KN1's quota is the province's, which the sub-unit's people use.
    assert "KN1" in text
    assert (
        "Chi cục Văn thư: 1 đăng ký giữ chỗ, 1 chờ duyệt, 1 trong danh sách chờ; "
        "dùng chung chỉ tiêu của Sở Nội vụ: 1/5 đã dùng"
    ) in text
    assert "KN3" in text  # no quotas
    assert "Chi cục Văn thư: 0/2 chỉ tiêu" in text  # KN4, its own
    assert "KN2" not in text
    detail = await head.press(f"uc:{w.klass.id}")
    assert "dùng chung chỉ tiêu của Sở Nội vụ: 1/5 đã dùng" in detail
    assert f"ap:{w.pending}" in head.data()
    province = await Chat(sessionmaker, user_id="head").say("/unit")
    assert "chỉ tiêu của các đơn vị trực thuộc: 2 chỗ" in province  # KN4


async def test_a_head_can_nominate_for_a_class_without_quotas(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await world(sessionmaker)
    kn3 = await class_id_of(sessionmaker, "KN3")
    head = Chat(sessionmaker, user_id="head")
    await head.say("/unit")
    await head.press(f"uc:{kn3}")
    assert f"nm:{kn3}:1" in head.data()
    await head.press(f"nm:{kn3}:1")
    assert "Cử đồng chí Lê Thị Học" in await head.say("Lê Thị Học")  # its button's words
    assert "Đã cử đồng chí Lê Thị Học đi học lớp KN3" in await head.say("1")
