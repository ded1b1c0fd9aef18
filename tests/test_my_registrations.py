"""/my through the chat: statuses and next steps, cancel, offers, calendar files."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.console import run_console, save_document
from bot.config import Settings
from db.models import (
    ClassSession,
    ClassStatus,
    OutboxMessage,
    Registration,
    RegistrationStatus,
    TrainingClass,
)
from handlers.notices import decode_reply
from handlers.types import Document
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
VN = dt.timezone(dt.timedelta(hours=7))


@dataclass(frozen=True)
class People:
    """Anna, Bình and Cường, linked as "anna", "binh" and "cuong"."""

    anna: int
    binh: int
    cuong: int


@pytest.fixture
async def people(sessionmaker: async_sessionmaker[AsyncSession]) -> People:
    """Insert a unit and three linked people."""
    async with sessionmaker() as s, s.begin():
        unit = await add_unit(s, "SNV", "Sở Nội vụ")
        found = []
        for n, (name, user) in enumerate(
            [("Nguyễn Thị An", "anna"), ("Trần Văn Bình", "binh"), ("Lê Văn Cường", "cuong")]
        ):
            person = await add_person(s, f"091200000{n}", name, unit)
            await link(s, person, "test", user)
            found.append(person.id)
    return People(*found)


async def _class(
    sm: async_sessionmaker[AsyncSession], code: str, *, start: dt.date = START, **kw: object
) -> TrainingClass:
    async with sm() as s, s.begin():
        return await add_class(s, code, f"Lớp {code}", start=start, **kw)  # type: ignore[arg-type]


async def _register(
    sm: async_sessionmaker[AsyncSession],
    person_id: int,
    klass: TrainingClass,
    status: S,
    **fields: object,
) -> int:
    async with sm() as s, s.begin():
        registration = Registration(person_id=person_id, class_id=klass.id, status=status, **fields)
        s.add(registration)
        await s.flush()
        return registration.id


async def _status(sm: async_sessionmaker[AsyncSession], registration_id: int) -> S:
    async with sm() as s:
        registration = await s.get(Registration, registration_id)
        assert registration is not None
        return registration.status


async def _outbox(sm: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sm() as s:
        return list(await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def test_my_lists_statuses_with_next_steps_and_buttons(
    sessionmaker: async_sessionmaker[AsyncSession], people: People
) -> None:
    sm = sessionmaker
    confirmed = await _class(sm, "A-01", location="Hội trường A")
    async with sm() as s, s.begin():
        s.add(
            ClassSession(
                class_id=confirmed.id,
                starts_at=dt.datetime(2026, 12, 21, 7, 30, tzinfo=VN),
                ends_at=dt.datetime(2026, 12, 21, 11, 0, tzinfo=VN),
                topic="Khai giảng",
            )
        )
    waiting = await _class(sm, "B-01", start=START + dt.timedelta(days=10), capacity=1)
    offered = await _class(sm, "C-01", start=START + dt.timedelta(days=20), capacity=1)
    pending = await _class(sm, "D-01", start=START + dt.timedelta(days=30))
    rejected = await _class(sm, "E-01", start=START + dt.timedelta(days=40))
    old = await _class(sm, "F-01", start=START + dt.timedelta(days=50))
    await _register(sm, people.binh, waiting, S.CONFIRMED)
    await _register(sm, people.cuong, waiting, S.WAITLISTED)
    ids = {
        "A": await _register(sm, people.anna, confirmed, S.CONFIRMED),
        "B": await _register(sm, people.anna, waiting, S.WAITLISTED),
        "C": await _register(
            sm,
            people.anna,
            offered,
            S.OFFERED,
            offer_expires_at=dt.datetime(2026, 12, 2, 10, 0, tzinfo=VN),
        ),
        "D": await _register(sm, people.anna, pending, S.PENDING_APPROVAL),
        "E": await _register(
            sm, people.anna, rejected, S.REJECTED, reason="Đơn vị đang thiếu người", updated_at=NOW
        ),
    }
    await _register(sm, people.anna, old, S.CANCELLED, updated_at=NOW - dt.timedelta(days=40))
    anna = Chat(sm, user_id="anna")
    text = await anna.say("/my")
    assert "Các đăng ký của đồng chí (5):" in text
    # Bullets, not numbers: typed numbers press the buttons.
    assert "• A-01 «Lớp A-01» (21/12/2026 – 25/12/2026): đã xác nhận" in text
    assert "Học tại Hội trường A, bắt đầu từ 07:30 ngày 21/12/2026" in text
    assert "B-01 «Lớp B-01» (31/12/2026 – 04/01/2027): trong danh sách chờ" in text
    assert "Vị trí số 2 trong danh sách chờ" in text
    assert "vui lòng nhận chỗ trước 10:00 ngày 02/12/2026" in text
    assert "Đang chờ thủ trưởng đơn vị phê duyệt." in text
    assert "E-01 «Lớp E-01» (30/01/2027 – 03/02/2027): không được duyệt" in text
    assert "Lý do không duyệt: Đơn vị đang thiếu người" in text
    assert "F-01" not in text  # ended more than 30 days ago
    assert anna.data() == [
        f"ic:{ids['A']}",
        f"mc:{ids['A']}",
        f"mc:{ids['B']}",
        f"oa:{ids['C']}",
        f"od:{ids['C']}",
        f"mc:{ids['D']}",
    ]
    english = await anna.say("/my", language="en")
    assert "Number 2 on the waitlist" in english
    assert "Reason given: Đơn vị đang thiếu người" in english


async def test_my_when_empty_and_for_a_visitor(
    sessionmaker: async_sessionmaker[AsyncSession], people: People
) -> None:
    anna = Chat(sessionmaker, user_id="anna")
    assert "Đồng chí chưa có đăng ký nào" in await anna.say("/my")
    assert anna.data() == ["cl:p=1"]
    assert "cần liên kết số điện thoại" in await Chat(sessionmaker, user_id="x").say("/my")


async def test_cancel_asks_first_then_frees_the_seat_for_the_first_waitlisted(
    sessionmaker: async_sessionmaker[AsyncSession], people: People
) -> None:
    sm = sessionmaker
    klass = await _class(sm, "K-01", capacity=1)
    mine = await _register(sm, people.anna, klass, S.CONFIRMED)
    binh_id = await _register(sm, people.binh, klass, S.WAITLISTED)
    cuong_id = await _register(sm, people.cuong, klass, S.WAITLISTED)
    anna = Chat(sm, user_id="anna")
    await anna.say("/my")
    ask = await anna.press(f"mc:{mine}")
    assert "Đồng chí chắc chắn muốn huỷ đăng ký lớp K-01" in ask
    assert "chuyển cho người tiếp theo trong danh sách chờ" in ask
    assert anna.data() == [f"mx:{mine}", "my"]
    assert await _status(sm, mine) == S.CONFIRMED
    # Random text at the question cancels nothing.
    assert "trả lời bằng một nút" in await anna.say("để tôi nghĩ")
    assert await _status(sm, mine) == S.CONFIRMED
    done = await anna.say("1")
    assert "Đã huỷ đăng ký lớp K-01 «Lớp K-01»" in done
    assert await _status(sm, mine) == S.CANCELLED
    assert await _status(sm, binh_id) == S.OFFERED
    assert await _status(sm, cuong_id) == S.WAITLISTED
    (notice,) = await _outbox(sm)
    assert notice.person_id == people.binh
    assert notice.kind == "registration.offered"
    reply = decode_reply(notice.payload["reply"])
    assert [b.data for row in reply.buttons for b in row] == [f"oa:{binh_id}", f"od:{binh_id}"]
    # Cancelled, it still shows in /my, without buttons; a second cancel is refused politely.
    assert "K-01 «Lớp K-01» (21/12/2026 – 25/12/2026): đã huỷ" in await anna.say("/my")
    assert "đã được huỷ hoặc đã kết thúc" in await anna.press(f"mx:{mine}")
    # Bình takes the seat with the button of the notice.
    binh = Chat(sm, user_id="binh")
    accepted = await binh.press(f"oa:{binh_id}")
    assert "✅ Đồng chí đã nhận chỗ trong lớp K-01" in accepted
    assert await _status(sm, binh_id) == S.CONFIRMED
    assert "không còn chờ đồng chí xác nhận" in await binh.press(f"oa:{binh_id}")


async def test_cancelling_a_waitlisted_registration_offers_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], people: People
) -> None:
    klass = await _class(sessionmaker, "K-01", capacity=1)
    await _register(sessionmaker, people.binh, klass, S.CONFIRMED)
    mine = await _register(sessionmaker, people.anna, klass, S.WAITLISTED)
    anna = Chat(sessionmaker, user_id="anna")
    ask = await anna.press(f"mc:{mine}")
    assert "chuyển cho người tiếp theo" not in ask
    assert "Đã huỷ đăng ký" in await anna.press(f"mx:{mine}")
    assert await _outbox(sessionmaker) == []


async def test_no_cancel_once_the_class_has_started(
    sessionmaker: async_sessionmaker[AsyncSession], people: People
) -> None:
    # Started at 00:00 today, school time (NOW is 01:00 on TODAY in Vietnam).
    klass = await _class(sessionmaker, "K-01", start=TODAY)
    mine = await _register(sessionmaker, people.anna, klass, S.CONFIRMED)
    anna = Chat(sessionmaker, user_id="anna")
    await anna.say("/my")
    assert f"mc:{mine}" not in anna.data()
    assert "Lớp đã bắt đầu nên không thể huỷ" in await anna.press(f"mc:{mine}")
    assert "Lớp đã bắt đầu nên không thể huỷ" in await anna.press(f"mx:{mine}")
    assert await _status(sessionmaker, mine) == S.CONFIRMED


async def test_decline_passes_the_seat_on(
    sessionmaker: async_sessionmaker[AsyncSession], people: People
) -> None:
    sm = sessionmaker
    klass = await _class(sm, "K-01", capacity=1)
    offer = await _register(
        sm, people.anna, klass, S.OFFERED, offer_expires_at=NOW + dt.timedelta(hours=5)
    )
    next_id = await _register(sm, people.binh, klass, S.WAITLISTED)
    text = await Chat(sm, user_id="anna").press(f"od:{offer}")
    assert "Đồng chí đã từ chối chỗ trong lớp K-01" in text
    assert await _status(sm, offer) == S.CANCELLED
    assert await _status(sm, next_id) == S.OFFERED
    assert [(n.person_id, n.kind) for n in await _outbox(sm)] == [
        (people.binh, "registration.offered")
    ]


async def test_accepting_a_lapsed_offer_is_explained_and_passes_the_seat_on(
    sessionmaker: async_sessionmaker[AsyncSession], people: People
) -> None:
    sm = sessionmaker
    klass = await _class(sm, "K-01", capacity=1)
    offer = await _register(
        sm, people.anna, klass, S.OFFERED, offer_expires_at=NOW - dt.timedelta(minutes=1)
    )
    next_id = await _register(sm, people.binh, klass, S.WAITLISTED)
    text = await Chat(sm, user_id="anna").press(f"oa:{offer}")
    assert "chỗ giữ cho đồng chí ở lớp K-01 «Lớp K-01» đã hết hạn xác nhận" in text
    assert await _status(sm, offer) == S.CANCELLED
    assert await _status(sm, next_id) == S.OFFERED
    assert [n.person_id for n in await _outbox(sm)] == [people.binh]
    assert "hết hạn xác nhận" in await Chat(sm, user_id="anna").say("/my")


async def test_accepting_an_offer_in_an_approval_class_awaits_the_unit_head(
    sessionmaker: async_sessionmaker[AsyncSession], people: People
) -> None:
    klass = await _class(sessionmaker, "K-01", capacity=1)
    async with sessionmaker() as s, s.begin():
        fresh = await s.get(TrainingClass, klass.id)
        assert fresh is not None
        fresh.requires_approval = True
    offer = await _register(
        sessionmaker, people.anna, klass, S.OFFERED, offer_expires_at=NOW + dt.timedelta(hours=5)
    )
    text = await Chat(sessionmaker, user_id="anna").press(f"oa:{offer}")
    assert "đăng ký đang chờ thủ trưởng đơn vị phê duyệt" in text
    assert await _status(sessionmaker, offer) == S.PENDING_APPROVAL


async def test_someone_elses_or_unknown_registrations_are_refused_politely(
    sessionmaker: async_sessionmaker[AsyncSession], people: People
) -> None:
    klass = await _class(sessionmaker, "K-01")
    binhs = await _register(sessionmaker, people.binh, klass, S.CONFIRMED)
    anna = Chat(sessionmaker, user_id="anna")
    for data in (f"mx:{binhs}", f"mc:{binhs}", f"ic:{binhs}", f"oa:{binhs}", "mx:999999"):
        assert "Không tìm thấy đăng ký này của đồng chí" in await anna.press(data)
    assert await _status(sessionmaker, binhs) == S.CONFIRMED
    assert "không còn chờ đồng chí xác nhận" in await Chat(sessionmaker, user_id="binh").press(
        f"oa:{binhs}"
    )


async def test_calendar_file_of_a_confirmed_class(
    sessionmaker: async_sessionmaker[AsyncSession], people: People
) -> None:
    klass = await _class(sessionmaker, "K-01", location="Hội trường A, tầng 2")
    mine = await _register(sessionmaker, people.anna, klass, S.CONFIRMED)
    waiting = await _class(sessionmaker, "W-01", start=START + dt.timedelta(days=10), capacity=0)
    queued = await _register(sessionmaker, people.anna, waiting, S.WAITLISTED)
    anna = Chat(sessionmaker, user_id="anna")
    (reply,) = await anna.send(button=f"ic:{mine}")
    assert reply.document is not None
    assert reply.document.filename == "K-01.ics"
    assert reply.document.mime_type == "text/calendar"
    content = reply.document.content.decode()
    assert content.startswith("BEGIN:VCALENDAR\r\n")
    assert "DTSTART;VALUE=DATE:20261221\r\n" in content
    assert "LOCATION:Hội trường A\\, tầng 2\r\n" in content
    assert f"UID:class-{klass.id}@trainingbot" in content
    assert "Lịch học lớp K-01" in await anna.press(f"ic:{mine}")
    assert "Học tại Hội trường A, tầng 2, bắt đầu từ 21/12/2026." in await anna.say("/my")
    (refused,) = await anna.send(button=f"ic:{queued}")
    assert refused.document is None
    assert "Chỉ gửi được lịch học cho đăng ký đã xác nhận" in await anna.press(f"ic:{queued}")


def test_the_console_saves_a_document_under_var_calendar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = save_document(Document("K-01.ics", b"BEGIN:VCALENDAR\r\n", "text/calendar"))
    assert path == Path("var/calendar/K-01.ics")
    assert (tmp_path / "var" / "calendar" / "K-01.ics").read_bytes() == b"BEGIN:VCALENDAR\r\n"


async def test_console_registers_and_saves_the_calendar_file(
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    today = dt.datetime.now(Settings().bot.zone).date()  # the console uses the clock
    async with sessionmaker() as s, s.begin():
        unit = await add_unit(s, "TCT", "Trường Chính trị tỉnh")
        await add_person(s, "0912000102", "Trần Thu Trang", unit)
        await add_class(s, "KN-01", "Kỹ năng", start=today + dt.timedelta(days=10))
    monkeypatch.chdir(tmp_path)
    stdout = io.StringIO()
    status = await run_console(
        sessionmaker,
        Settings(),
        as_phone="0912000102",
        language=None,
        stdin=io.StringIO("/class KN-01\n2\n1\n1\n"),
        stdout=stdout,
    )
    out = stdout.getvalue()
    assert status == 0
    assert "Đồng chí xác nhận đăng ký lớp KN-01 «Kỹ năng»?" in out
    assert "✅ Đăng ký thành công!" in out
    assert "📎 Đã lưu tệp: var/calendar/KN-01.ics" in out
    saved = (tmp_path / "var" / "calendar" / "KN-01.ics").read_bytes()
    assert saved.startswith(b"BEGIN:VCALENDAR\r\n")


async def test_a_cancelled_class_says_so_and_offers_no_buttons(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        anna = await add_person(session, "0912000001", "Nguyễn Thị Anna", unit)
        klass = await add_class(
            session,
            "K-01",
            "Lớp bị huỷ",
            start=TODAY + dt.timedelta(days=20),
            status=ClassStatus.CANCELLED,
        )
        await add_registration(session, anna, klass)
        await link(session, anna, "test", "anna")
    chat = Chat(sessionmaker, user_id="anna")
    text = await chat.say("/my")
    assert "Lớp đã bị huỷ; đồng chí không cần làm gì thêm." in text
    assert chat.data() == []


async def test_a_nominee_who_cancels_in_my_is_reported_to_the_head(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        head = await add_person(session, "0912000002", "Trần Văn Trưởng", unit)
        anna = await add_person(session, "0912000001", "Nguyễn Thị Anna", unit)
        klass = await add_class(session, "K-02", "Lớp cử đi", start=TODAY + dt.timedelta(days=20))
        registration = Registration(
            person_id=anna.id, class_id=klass.id, status=S.CONFIRMED, registered_by_id=head.id
        )
        session.add(registration)
        await link(session, anna, "test", "anna")
    chat = Chat(sessionmaker, user_id="anna")
    await chat.press(f"mc:{registration.id}")
    await chat.press(f"mx:{registration.id}")
    async with sessionmaker() as session:
        notices = list(await session.scalars(select(OutboxMessage)))
    assert [(n.person_id, n.kind) for n in notices] == [(head.id, "registration.nominee_left")]
    assert "Nguyễn Thị Anna" in str(notices[0].payload)
