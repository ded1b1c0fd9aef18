"""Nominations through dispatch: a head sends someone to a class; the nominee may decline."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import OutboxMessage, Person, Registration, RegistrationStatus, TrainingClass
from db.registrations import NOMINATION_DECLINED
from tests.factories import TODAY, Chat, add_class, add_person, add_unit, link
from tests.test_unit_head import add_reg, outbox

S = RegistrationStatus
START = TODAY + dt.timedelta(days=20)


@dataclass
class World:
    head: Person
    nominee: Person  # linked, in a sub-unit
    silent: Person  # not linked to any chat
    old: Person  # too old for the class
    outsider: Person  # a sibling unit's
    filler: Person
    waiting: Person
    klass: TrainingClass  # 2 seats, age limit 50, requires approval
    full: TrainingClass  # 1 seat, taken


async def world(sm: async_sessionmaker[AsyncSession]) -> World:
    async with sm() as session, session.begin():
        province = await add_unit(session, "SNV", "Sở Nội vụ")
        sub = await add_unit(session, "CCVT", "Chi cục Văn thư", parent=province)
        sibling_unit = await add_unit(session, "STC", "Sở Tài chính")
        head = await add_person(session, "0912000001", "Trần Văn Trưởng", province)
        head.is_unit_head = True
        nominee = await add_person(session, "0912000002", "Lê Thị Học", sub)
        silent = await add_person(session, "0912000003", "Ngô Văn Im", sub)
        old = await add_person(session, "0912000004", "Vũ Văn Cao", province, birth_year=1960)
        outsider = await add_person(session, "0912000005", "Phạm Văn Khác", sibling_unit)
        filler = await add_person(session, "0987000006", "Hoàng Thị Đầy", sibling_unit)
        waiting = await add_person(session, "0987000007", "Đỗ Văn Chờ", sibling_unit)
        klass = await add_class(
            session, "KN1", "Kỹ năng lãnh đạo", start=START, capacity=2, max_age=50
        )
        klass.requires_approval = True
        full = await add_class(
            session, "KN2", "Lớp đã đầy", start=START + dt.timedelta(days=10), capacity=1
        )
        await add_reg(session, filler, full, S.CONFIRMED)
        await link(session, head, "test", "head")
        await link(session, nominee, "test", "nominee")
        await link(session, outsider, "test", "outsider")
        await link(session, waiting, "test", "waiting")
    return World(head, nominee, silent, old, outsider, filler, waiting, klass, full)


async def registrations(
    sm: async_sessionmaker[AsyncSession], klass: TrainingClass
) -> list[Registration]:
    async with sm() as session:
        stmt = (
            select(Registration).where(Registration.class_id == klass.id).order_by(Registration.id)
        )
        return list((await session.scalars(stmt)).all())


async def test_nominate_from_the_list_confirms_and_tells_the_nominee(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    await head.press(f"uc:{w.klass.id}")
    assert f"nm:{w.klass.id}:1" in head.data()
    listing = await head.press(f"nm:{w.klass.id}:1")
    assert "Lê Thị Học — Chi cục Văn thư" in listing
    assert "Phạm Văn Khác" not in listing  # a sibling unit's
    assert f"np:{w.klass.id}:{w.nominee.id}" in head.data()
    confirm = await head.press(f"np:{w.klass.id}:{w.nominee.id}")
    assert "Cử đồng chí Lê Thị Học (Chi cục Văn thư) đi học lớp KN1" in confirm
    assert not await registrations(sessionmaker, w.klass)  # nothing until confirmed
    done = await head.press(f"nx:{w.klass.id}:{w.nominee.id}")
    assert "Đã cử đồng chí Lê Thị Học đi học lớp KN1" in done
    assert "chưa liên kết" not in done
    (registration,) = await registrations(sessionmaker, w.klass)
    # The nomination is the approval, though the class requires one.
    assert registration.status == S.CONFIRMED
    assert registration.registered_by_id == w.head.id
    (notice,) = await outbox(sessionmaker)
    assert (notice.person_id, notice.kind) == (w.nominee.id, "registration.nominated")
    assert f"nd:{registration.id}" in str(notice.payload)
    # Pressing again: already registered, explained.
    # Pressing again (a double tap): already registered, with the status; nothing failed.
    again = await head.press(f"nx:{w.klass.id}:{w.nominee.id}")
    assert "Đồng chí Lê Thị Học đã có đăng ký lớp KN1 (trạng thái: đã xác nhận)" in again
    assert "Chưa thể cử" not in again
    assert "xem /my" not in again
    assert len(await registrations(sessionmaker, w.klass)) == 1


async def test_typed_name_or_phone_filters_the_people(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    await head.press(f"nm:{w.klass.id}:1")
    by_name = await head.say("ngo van")
    assert "Ngô Văn Im" in by_name
    assert "Lê Thị Học" not in by_name
    assert head.data()[0] == f"np:{w.klass.id}:{w.silent.id}"
    by_phone = await head.say("000002")
    assert "Lê Thị Học" in by_phone
    assert "Ngô Văn Im" not in by_phone
    # Typing a number presses that button of the matches.
    assert "Cử đồng chí Lê Thị Học" in await head.say("1")
    # Someone of another unit is not found, even by their exact phone.
    await head.press(f"nm:{w.klass.id}:1")
    assert "Không tìm thấy" in await head.say("0912000005")


async def test_a_nominee_without_a_chat_is_reported_unreachable(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    done = await head.press(f"nx:{w.klass.id}:{w.silent.id}")
    assert "Đã cử đồng chí Ngô Văn Im" in done
    assert "Ngô Văn Im chưa liên kết tài khoản với bot" in done


async def test_outside_scope_and_ineligible_and_full(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    for data in (f"np:{w.klass.id}:{w.outsider.id}", f"nx:{w.klass.id}:{w.outsider.id}"):
        assert "không thuộc đơn vị do đồng chí phụ trách" in await head.press(data)
    assert not await registrations(sessionmaker, w.klass)
    old = await head.press(f"nx:{w.klass.id}:{w.old.id}")
    assert "Chưa thể cử đồng chí Vũ Văn Cao đi học lớp KN1" in old
    # The age limit, explained about the nominee, not to the head as if it were theirs.
    assert "Năm 2026 đồng chí Vũ Văn Cao 66 tuổi, quá độ tuổi quy định" in old
    assert not await registrations(sessionmaker, w.klass)
    full = await head.press(f"nx:{w.full.id}:{w.nominee.id}")
    assert "danh sách chờ, vị trí thứ 1" in full
    statuses = [r.status for r in await registrations(sessionmaker, w.full)]
    assert statuses == [S.CONFIRMED, S.WAITLISTED]
    # A learner cannot nominate.
    learner = Chat(sessionmaker, user_id="nominee")
    assert "dành cho thủ trưởng đơn vị" in await learner.press(f"nx:{w.klass.id}:{w.silent.id}")
    assert not await registrations(sessionmaker, w.klass)


async def test_nominee_declines_head_told_seat_offered_on(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    filler_id = (await registrations(sessionmaker, w.full))[0].id
    async with sessionmaker() as session, session.begin():
        filler_reg = await session.get(Registration, filler_id)
        assert filler_reg is not None
        filler_reg.status = S.CANCELLED  # the nominee gets the one seat
    head = Chat(sessionmaker, user_id="head")
    await head.press(f"nx:{w.full.id}:{w.nominee.id}")
    async with sessionmaker() as session, session.begin():
        await add_reg(session, w.waiting, w.full, S.WAITLISTED)
    nominated = [
        r for r in await registrations(sessionmaker, w.full) if r.person_id == w.nominee.id
    ]
    (registration,) = nominated
    assert registration.status == S.CONFIRMED
    # Someone else (the head, another learner) cannot decline it.
    for user in ("head", "outsider", "stranger"):
        text = await Chat(sessionmaker, user_id=user).press(f"nd:{registration.id}")
        assert "dành cho người được cử đi học" in text
    nominee = Chat(sessionmaker, user_id="nominee")
    text = await nominee.press(f"nd:{registration.id}")
    assert "Đồng chí đã từ chối cử đi học lớp KN2" in text
    rows = {r.person_id: r for r in await registrations(sessionmaker, w.full)}
    assert rows[w.nominee.id].status == S.CANCELLED
    assert rows[w.nominee.id].reason == NOMINATION_DECLINED
    assert rows[w.waiting.id].status == S.OFFERED
    notices = await outbox(sessionmaker)
    assert [(n.person_id, n.kind) for n in notices] == [
        (w.nominee.id, "registration.nominated"),
        (w.head.id, "registration.nomination_declined"),
        (w.waiting.id, "registration.offered"),
    ]
    assert "chỗ học được chuyển cho người tiếp theo" in await declined_notice(sessionmaker)
    again = await nominee.press(f"nd:{registration.id}")
    assert "Không thể từ chối" in again
    assert len(await outbox(sessionmaker)) == 3


async def test_only_a_nomination_can_be_declined_as_one(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    async with sessionmaker() as session, session.begin():
        own = await add_reg(session, w.nominee, w.klass, S.CONFIRMED)
    text = await Chat(sessionmaker, user_id="nominee").press(f"nd:{own}")
    assert "dành cho người được cử đi học" in text
    async with sessionmaker() as session:
        assert (await session.scalars(select(OutboxMessage))).first() is None


async def test_a_head_is_not_listed_and_cannot_nominate_themselves(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    listing = await head.press(f"nm:{w.klass.id}:1")
    assert "Lê Thị Học" in listing
    assert "Trần Văn Trưởng" not in listing
    assert not any(d.endswith(f":{w.head.id}") for d in head.data() if d.startswith("np:"))
    assert "Không tìm thấy" in await head.say("Trần Văn Trưởng")
    assert "Không tìm thấy" in await head.say("0912000001")
    # A forged or old button: refused politely, pointing to registering like anyone.
    for data in (f"np:{w.klass.id}:{w.head.id}", f"nx:{w.klass.id}:{w.head.id}"):
        text = await head.press(data)
        assert "không thể tự cử mình đi học" in text
        assert f"rg:{w.klass.id}" in head.data()
    assert not await registrations(sessionmaker, w.klass)
    assert await outbox(sessionmaker) == []


async def test_an_admin_cannot_nominate_themselves_either(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    async with sessionmaker() as session, session.begin():
        admin = await session.get(Person, w.outsider.id)
        assert admin is not None
        admin.is_admin = True
    chat = Chat(sessionmaker, user_id="outsider")
    listing = await chat.press(f"nm:{w.klass.id}:1")
    assert "Lê Thị Học" in listing  # admins may nominate anyone else
    assert "Phạm Văn Khác" not in listing
    assert "không thể tự cử mình đi học" in await chat.press(f"nx:{w.klass.id}:{w.outsider.id}")
    assert not await registrations(sessionmaker, w.klass)


async def test_refusals_name_the_nominee_not_the_head(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    async with sessionmaker() as session, session.begin():
        # The nominee holds a seat in a class on the same days, and is waitlisted in KN2.
        clash = await add_class(session, "KN9", "Lớp trùng", start=START + dt.timedelta(days=2))
        await add_reg(session, w.nominee, clash, S.CONFIRMED)
        await add_reg(session, w.nominee, w.full, S.WAITLISTED)
    head = Chat(sessionmaker, user_id="head")
    text = await head.press(f"nx:{w.klass.id}:{w.nominee.id}")
    assert "Chưa thể cử đồng chí Lê Thị Học đi học lớp KN1" in text
    assert "Trùng thời gian với lớp KN9 «Lớp trùng»" in text
    assert "mà đồng chí Lê Thị Học đang có chỗ học" in text
    assert "mà đồng chí đang tham gia" not in text
    waitlisted = await head.press(f"nx:{w.full.id}:{w.nominee.id}")
    assert "Đồng chí Lê Thị Học đã có đăng ký lớp KN2 (trạng thái: " in waitlisted
    assert "Đồng chí đã đăng ký lớp này" not in waitlisted
    assert "/my" not in waitlisted
    english = await head.press(f"nx:{w.klass.id}:{w.nominee.id}", "en")
    assert "in which Lê Thị Học holds a place" in english


def test_every_refusal_has_a_text_about_the_nominee() -> None:
    from db.rules import Reason, Refusal
    from handlers.i18n import t
    from handlers.labels import refusal_about

    facts = {"deadline": START, "max_age": 50, "year": 2026, "age": 60, "unit": "Sở Nội vụ"}
    facts |= {"seats": 2, "used": 2, "status": "waitlisted", "required": "trung_cap"}
    facts |= {"have": None, "code": "KN9", "title": "Lớp", "start": START, "end": START}
    for refusal in Refusal:
        for language in ("vi", "en"):
            text = t(refusal_about(Reason(refusal, dict(facts)), "Lê Thị Học"), language)
            assert text.startswith("• ")
            assert "{" not in text
            assert "đồng chí đã" not in text.lower()
            assert "đồng chí đang" not in text.lower()
            assert " you" not in text.lower()


async def declined_notice(sm: async_sessionmaker[AsyncSession]) -> str:
    """Return the head's notice of a declined nomination, as the console prints it."""
    from handlers.choices import render_numbered
    from handlers.notices import decode_reply

    (notice,) = [n for n in await outbox(sm) if n.kind == "registration.nomination_declined"]
    return "\n".join(render_numbered([decode_reply(notice.payload["reply"])], "vi"))


async def test_a_waitlisted_nominee_declining_passes_no_seat_on(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    assert "danh sách chờ, vị trí thứ 1" in await head.press(f"nx:{w.full.id}:{w.nominee.id}")
    (registration,) = [
        r for r in await registrations(sessionmaker, w.full) if r.person_id == w.nominee.id
    ]
    await Chat(sessionmaker, user_id="nominee").press(f"nd:{registration.id}")
    text = await declined_notice(sessionmaker)
    assert "Lê Thị Học đã từ chối cử đi học lớp KN2" in text
    assert "đang trong danh sách chờ nên không có chỗ học nào thay đổi" in text
    assert "người tiếp theo" not in text


async def test_a_seat_declined_with_nobody_waiting_goes_back_to_the_class(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    head = Chat(sessionmaker, user_id="head")
    await head.press(f"nx:{w.klass.id}:{w.nominee.id}")
    (registration,) = await registrations(sessionmaker, w.klass)
    await Chat(sessionmaker, user_id="nominee").press(f"nd:{registration.id}")
    text = await declined_notice(sessionmaker)
    assert "chỗ học của đồng chí ấy được trả lại cho lớp" in text
    assert "người tiếp theo" not in text
