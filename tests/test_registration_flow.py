"""Registering through the chat: detail, confirmation step, result; refusals, taps and restarts."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import (
    ClassStatus,
    Person,
    Registration,
    RegistrationStatus,
    TheoryLevel,
    TrainingClass,
    Unit,
)
from tests.factories import (
    NOW,
    TODAY,
    Chat,
    add_class,
    add_person,
    add_registration,
    add_unit,
    link,
)

S = RegistrationStatus
START = TODAY + dt.timedelta(days=20)


@dataclass(frozen=True)
class World:
    """Ids the tests use: anna (linked as "anna", born 1980, trung cấp) and her colleague."""

    anna: int
    colleague: int
    unit: int


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    """Insert a unit, Anna (linked) and a colleague (linked as "cuong")."""
    async with sessionmaker() as s, s.begin():
        unit = await add_unit(s, "SNV", "Sở Nội vụ")
        anna = await add_person(
            s, "0912000001", "Nguyễn Thị An", unit, birth_year=1980,
            theory_level=TheoryLevel.TRUNG_CAP,
        )  # fmt: skip
        colleague = await add_person(s, "0912000002", "Lê Văn Cường", unit)
        await link(s, anna, "test", "anna")
        await link(s, colleague, "test", "cuong")
    return World(anna.id, colleague.id, unit.id)


async def _class(
    sessionmaker: async_sessionmaker[AsyncSession],
    code: str = "KN-01",
    *,
    requires_approval: bool = False,
    **kw: object,
) -> TrainingClass:
    async with sessionmaker() as s, s.begin():
        kw.setdefault("start", START)
        klass = await add_class(s, code, "Kỹ năng lãnh đạo, quản lý", **kw)  # type: ignore[arg-type]
        klass.requires_approval = requires_approval
    return klass


async def _rows(sm: async_sessionmaker[AsyncSession], class_id: int) -> list[tuple[int, S]]:
    async with sm() as s:
        stmt = (
            select(Registration.person_id, Registration.status)
            .where(Registration.class_id == class_id)
            .order_by(Registration.id)
        )
        return [(person_id, status) for person_id, status in (await s.execute(stmt)).all()]


async def _fill(
    sm: async_sessionmaker[AsyncSession], klass: TrainingClass, statuses: list[S]
) -> None:
    async with sm() as s, s.begin():
        unit = await add_unit(s, "STC", "Sở Tài chính")
        for n, status in enumerate(statuses):
            person = await add_person(s, f"09130000{n:02d}", f"Người {n}", unit)
            await add_registration(s, person, klass, status)


async def test_register_from_the_detail_confirm_then_a_seat(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    klass = await _class(sessionmaker, capacity=2, location="Hội trường A")
    anna = Chat(sessionmaker, user_id="anna")
    detail = await anna.press(f"cd:{klass.id}")
    assert "📝 Đăng ký" in detail
    assert f"rg:{klass.id}" in anna.data()
    ask = await anna.press(f"rg:{klass.id}")
    assert "Đồng chí xác nhận đăng ký lớp KN-01 «Kỹ năng lãnh đạo, quản lý»?" in ask
    assert "Thời gian: từ 21/12/2026 đến 25/12/2026" in ask
    assert "Địa điểm: Hội trường A" in ask
    assert "Hình thức: Tập trung" in ask
    assert "Còn 2 chỗ trống" in ask
    assert "phê duyệt" not in ask
    assert anna.data() == [f"rc:{klass.id}", f"cd:{klass.id}"]
    assert "Xác nhận đăng ký" in ask
    assert "Thôi" in ask
    assert await _rows(sessionmaker, klass.id) == []  # asking registers nothing
    done = await anna.press(f"rc:{klass.id}")
    assert "✅ Đăng ký thành công! Đồng chí đã có chỗ trong lớp KN-01" in done
    assert "/my" in done
    assert await _rows(sessionmaker, klass.id) == [(world.anna, S.CONFIRMED)]
    # The detail now leads to the registration instead of offering to register again.
    await anna.press(f"cd:{klass.id}")
    assert f"rg:{klass.id}" not in anna.data()
    assert "my" in anna.data()


async def test_a_full_class_puts_the_person_on_the_waitlist_with_a_position(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    klass = await _class(sessionmaker, capacity=1)
    await _fill(sessionmaker, klass, [S.CONFIRMED, S.WAITLISTED, S.WAITLISTED])
    anna = Chat(sessionmaker, user_id="anna")
    ask = await anna.press(f"rg:{klass.id}")
    assert "Lớp đã hết chỗ: đồng chí sẽ vào danh sách chờ (dự kiến vị trí số 3)" in ask
    done = await anna.press(f"rc:{klass.id}")
    assert "vị trí số 3 trong danh sách chờ" in done
    assert (await _rows(sessionmaker, klass.id))[-1] == (world.anna, S.WAITLISTED)
    again = await anna.press(f"rc:{klass.id}")
    assert "Đồng chí đã đăng ký lớp KN-01 «Kỹ năng lãnh đạo, quản lý» rồi" in again
    assert "trạng thái: trong danh sách chờ" in again
    assert "vị trí số 3 trong danh sách chờ" in again


async def test_a_class_that_needs_approval_gives_a_pending_registration(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    klass = await _class(sessionmaker, requires_approval=True)
    anna = Chat(sessionmaker, user_id="anna")
    ask = await anna.press(f"rg:{klass.id}")
    assert "cần thủ trưởng đơn vị phê duyệt" in ask
    done = await anna.press(f"rc:{klass.id}")
    assert "đang chờ thủ trưởng đơn vị phê duyệt" in done
    assert await _rows(sessionmaker, klass.id) == [(world.anna, S.PENDING_APPROVAL)]


async def test_a_double_tap_registers_once(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    klass = await _class(sessionmaker)
    anna = Chat(sessionmaker, user_id="anna")
    await anna.press(f"rg:{klass.id}")
    first = await anna.press(f"rc:{klass.id}")
    second = await anna.press(f"rc:{klass.id}")
    assert "Đăng ký thành công" in first
    assert "Đăng ký thành công" not in second
    assert "rồi (trạng thái: đã xác nhận)" in second
    assert await _rows(sessionmaker, klass.id) == [(world.anna, S.CONFIRMED)]


async def test_a_double_tap_at_the_same_instant_registers_once(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    klass = await _class(sessionmaker)
    taps = [Chat(sessionmaker, user_id="anna").press(f"rc:{klass.id}") for _ in range(2)]
    texts = await asyncio.gather(*taps)
    assert sum("Đăng ký thành công" in text for text in texts) == 1
    assert sum("rồi (trạng thái: đã xác nhận)" in text for text in texts) == 1
    assert await _rows(sessionmaker, klass.id) == [(world.anna, S.CONFIRMED)]


async def test_confirm_works_after_a_restart_and_after_the_step_expired(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    klass = await _class(sessionmaker)
    await Chat(sessionmaker, user_id="anna").press(f"rg:{klass.id}")
    # A new process: a new Chat with nothing in memory; the buttons shown are in the DB.
    restarted = Chat(sessionmaker, user_id="anna")
    done = await restarted.say("1")
    assert "Đăng ký thành công" in done
    other = await _class(sessionmaker, "KN-02", start=START + dt.timedelta(days=30))
    await Chat(sessionmaker, user_id="anna").press(f"rg:{other.id}")
    later = Chat(sessionmaker, user_id="anna", now=NOW + dt.timedelta(hours=3))
    assert "Đăng ký thành công" in await later.press(f"rc:{other.id}")


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ({"deadline": TODAY - dt.timedelta(days=1)}, "Đã hết hạn đăng ký (hạn cuối 30/11/2026)"),
        ({"max_age": 40}, "Năm 2026 đồng chí 46 tuổi, quá độ tuổi quy định (không quá 40 tuổi)"),
        (
            {"theory_level": TheoryLevel.CAO_CAP},
            "Lớp yêu cầu trình độ lý luận chính trị từ Cao cấp trở lên; "
            "trình độ hiện tại của đồng chí: Trung cấp",
        ),
        ({"status": ClassStatus.CLOSED}, "Lớp đã ngừng nhận đăng ký"),
        ({"status": ClassStatus.CANCELLED}, "Lớp đã bị huỷ"),
    ],
)
async def test_each_refusal_is_explained(
    sessionmaker: async_sessionmaker[AsyncSession],
    world: World,
    setup: dict[str, object],
    expected: str,
) -> None:
    klass = await _class(sessionmaker, **setup)
    anna = Chat(sessionmaker, user_id="anna")
    await anna.press(f"cd:{klass.id}")
    if "status" in setup or "deadline" in setup:
        assert f"rg:{klass.id}" not in anna.data()  # no Register on a closed class
    text = await anna.press(f"rg:{klass.id}")
    assert "⛔ Đồng chí chưa thể đăng ký lớp KN-01" in text
    assert expected in text
    assert f"rc:{klass.id}" not in anna.data()
    # Even a forged confirm is refused, with the same reasons.
    text = await anna.press(f"rc:{klass.id}")
    assert expected in text
    assert await _rows(sessionmaker, klass.id) == []


async def test_the_deadline_day_itself_is_still_open(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    klass = await _class(sessionmaker, deadline=TODAY)
    anna = Chat(sessionmaker, user_id="anna")
    assert "Đồng chí xác nhận đăng ký" in await anna.press(f"rg:{klass.id}")
    assert "Đăng ký thành công" in await anna.press(f"rc:{klass.id}")


async def test_already_registered_quota_and_clash_are_explained(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    async with sessionmaker() as s, s.begin():
        unit = await s.get(Unit, world.unit)
        assert unit is not None
        held = await add_class(s, "HELD", "Lớp đang học", start=START, days=5)
        clash = await add_class(s, "CLASH", "Lớp trùng", start=START + dt.timedelta(days=2))
        quota = await add_class(
            s, "QUOTA", "Lớp chỉ tiêu", start=START + dt.timedelta(days=30), quotas={unit: 1}
        )
        anna = await s.get(Person, world.anna)
        colleague = await s.get(Person, world.colleague)
        assert anna is not None
        assert colleague is not None
        await add_registration(s, anna, held)
        await add_registration(s, colleague, quota)
    chat = Chat(sessionmaker, user_id="anna")
    text = await chat.press(f"rg:{held.id}")
    assert "Đồng chí đã đăng ký lớp này (trạng thái: đã xác nhận); xem /my." in text
    text = await chat.press(f"rg:{clash.id}")
    assert "Trùng thời gian với lớp HELD «Lớp đang học» (21/12/2026 – 25/12/2026)" in text
    text = await chat.press(f"rg:{quota.id}")
    assert "Sở Nội vụ đã dùng hết chỉ tiêu của lớp (1/1)" in text


async def test_a_refusal_at_confirm_time_is_explained(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    async with sessionmaker() as s, s.begin():
        unit = await s.get(Unit, world.unit)
        assert unit is not None
        klass = await add_class(s, "QUOTA", "Lớp chỉ tiêu", start=START, quotas={unit: 1})
    anna = Chat(sessionmaker, user_id="anna")
    cuong = Chat(sessionmaker, user_id="cuong")
    assert "Đồng chí xác nhận đăng ký" in await anna.press(f"rg:{klass.id}")
    await cuong.press(f"rg:{klass.id}")
    assert "Đăng ký thành công" in await cuong.press(f"rc:{klass.id}")
    late = await anna.press(f"rc:{klass.id}")
    assert "⛔ Đồng chí chưa thể đăng ký lớp QUOTA" in late
    assert "Sở Nội vụ đã dùng hết chỉ tiêu của lớp (1/1)" in late
    assert await _rows(sessionmaker, klass.id) == [(world.colleague, S.CONFIRMED)]


async def test_a_visitor_is_told_to_link_their_phone(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    klass = await _class(sessionmaker)
    visitor = Chat(sessionmaker, user_id="stranger")
    assert "📝 Đăng ký (cần liên kết số điện thoại)" in await visitor.press(f"cd:{klass.id}")
    assert f"rg:{klass.id}" in visitor.data()
    for data in (f"rg:{klass.id}", f"rc:{klass.id}", "my"):
        text = await visitor.press(data)
        assert "cần liên kết số điện thoại" in text
        assert "/start" in text
    assert await _rows(sessionmaker, klass.id) == []


@pytest.mark.parametrize("data", ["rc:999999", "rg:999999", "rc:0", "rc:abc", "oa:abc", "rg:"])
async def test_stale_and_forged_buttons_are_answered_politely(
    sessionmaker: async_sessionmaker[AsyncSession], world: World, data: str
) -> None:
    text = await Chat(sessionmaker, user_id="anna").press(data)
    assert "Nút này không còn dùng được nữa" in text


async def test_typed_answers_at_the_confirmation_step(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    klass = await _class(sessionmaker)
    anna = Chat(sessionmaker, user_id="anna")
    await anna.press(f"rg:{klass.id}")
    for text in ("xin chào", "kỹ năng", "có lẽ"):
        reply = await anna.say(text)
        assert "trả lời bằng một nút" in reply
    assert await _rows(sessionmaker, klass.id) == []
    no = await anna.say("không")
    assert "Mã lớp: KN-01" in no  # back to the class
    assert await _rows(sessionmaker, klass.id) == []
    await anna.press(f"rg:{klass.id}")
    assert "Đăng ký thành công" in await anna.say("có")
    assert await _rows(sessionmaker, klass.id) == [(world.anna, S.CONFIRMED)]


async def test_typing_the_button_label_confirms_and_english_works(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    klass = await _class(sessionmaker)
    anna = Chat(sessionmaker, user_id="anna")
    ask = await anna.press(f"rg:{klass.id}", language="en")
    assert "Confirm your registration for class KN-01" in ask
    assert "Registered! You have a seat in class KN-01" in await anna.say(
        "xac nhan dang ky", language="en"
    )
