"""/broadcast in the chat: write, choose the audience, preview, send, stop (SQLite, PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import (
    Broadcast,
    BroadcastStatus,
    ChannelAccount,
    OutboxMessage,
    OutboxStatus,
    Program,
    RegistrationStatus,
)
from db.repos import Repos
from handlers.broadcast_buttons import PROGRAMS, Do, decode_broadcast
from handlers.choices import reply_text
from handlers.dispatch import dispatch
from handlers.notices import decode_reply
from handlers.types import Attachment, AttachmentKind, Incoming
from tests.factories import (
    NOW,
    TODAY,
    Chat,
    add_class,
    add_person,
    add_registration,
    add_unit,
    link,
    render,
)

S = RegistrationStatus


@dataclass
class Province:
    """Ids of the seeded province (see `province`)."""

    snv: int
    ccvt: int
    yth: int
    class_id: int
    names: dict[str, int]


async def province(sessionmaker: async_sessionmaker[AsyncSession]) -> Province:
    """Seed an admin, a head of Sở Nội vụ (with a sub-unit) and people who can or cannot be reached.

    Chat accounts on channel "test" are the chats of tests.factories.Chat (user ids).
    """
    async with sessionmaker() as session, session.begin():
        school = await add_unit(session, "TCT", "Trường Chính trị tỉnh")
        snv = await add_unit(session, "SNV", "Sở Nội vụ")
        ccvt = await add_unit(session, "CCVT", "Chi cục Văn thư", parent=snv)
        yth = await add_unit(session, "YTH", "Huyện Yên Thành")
        admin = await add_person(session, "0912000100", "Nguyễn Văn Quản", school)
        admin.is_admin = True
        await link(session, admin, "test", "admin")
        head = await add_person(session, "0912000001", "Trần Văn Trưởng", snv)
        head.is_unit_head = True
        await link(session, head, "test", "head")
        learner = await add_person(session, "0912000002", "Lê Thị Học", snv)
        await link(session, learner, "test", "learner")
        blocked = await add_person(session, "0912000003", "Phạm Văn Chặn", snv)
        account = ChannelAccount(person_id=blocked.id, channel="test", external_id="blocked")
        account.reachable = False
        session.add(account)
        await add_person(session, "0912000004", "Đỗ Thị Chưa", snv)
        sub = await add_person(session, "0912000005", "Vũ Văn Con", ccvt)
        await link(session, sub, "test", "sub")
        district_head = await add_person(session, "0912000007", "Hoàng Văn Huyện", yth)
        district_head.is_unit_head = True
        await link(session, district_head, "test", "district")
        far = await add_person(session, "0912000008", "Đặng Thị Xa", yth)
        await link(session, far, "test", "far")
        klass = await add_class(
            session,
            "TC-01",
            "Trung cấp lý luận chính trị",
            program=Program.TRUNG_CAP_LLCT,
            start=TODAY + dt.timedelta(days=3),
        )
        await add_registration(session, learner, klass, S.CONFIRMED)
        await add_registration(session, far, klass, S.CONFIRMED)
        await add_registration(session, sub, klass, S.WAITLISTED)
        names = {
            person.full_name: person.id
            for person in (admin, head, learner, blocked, sub, district_head, far)
        }
        return Province(snv.id, ccvt.id, yth.id, klass.id, names)


def button(chat: Chat, do: Do, *, index: int = 0) -> str:
    """Return the data of the `index`th button of that kind last shown."""
    found = [data for data in chat.data() if (b := decode_broadcast(data)) and b.do == do]
    assert len(found) > index, chat.data()
    return found[index]


async def queued_people(sessionmaker: async_sessionmaker[AsyncSession]) -> set[int]:
    async with sessionmaker() as session:
        return set((await session.scalars(select(OutboxMessage.person_id))).all())


async def write(chat: Chat, text: str = "Họp giao ban lúc 8 giờ.\nPhòng 201.") -> str:
    """Start /broadcast and send the announcement; return the replies as text."""
    asked = await chat.say("/broadcast")
    assert "Thông báo mới" in asked
    return await chat.say(text)


async def test_an_admin_writes_previews_and_sends_to_everyone_linked(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    admin = Chat(sessionmaker, "admin")
    shown = await write(admin)
    # The announcement as recipients will see it, line breaks kept, then the question.
    header = "📣 Thông báo của Trường Chính trị tỉnh (Nguyễn Văn Quản):"
    assert f"{header}\n\nHọp giao ban lúc 8 giờ.\nPhòng 201." in shown
    assert "Gửi thông báo #1 đến ai?" in shown
    preview = await admin.press(button(admin, Do.KIND, index=0))
    assert "Người nhận: mọi người đã liên kết tài khoản chat với bot." in preview
    # 7 linked accounts: 6 reachable, 1 blocked the bot; "everyone linked" has no one unlinked.
    assert "Tổng số 7 người: 6 người nhận được qua chat; 0 người chưa liên kết" in preview
    assert "1 người đã chặn bot" in preview
    assert "🕘 Thường" in preview
    sent = await admin.press(button(admin, Do.SEND))
    assert "Thông báo #1 đang được gửi đến 6 người" in sent
    assert await queued_people(sessionmaker) == {
        person_id for name, person_id in p.names.items() if name != "Phạm Văn Chặn"
    }
    async with sessionmaker() as session:
        broadcast = (await session.scalars(select(Broadcast))).one()
    assert (broadcast.status, broadcast.urgent, broadcast.origin_chat_id) == (
        BroadcastStatus.SENDING,
        False,
        "admin",
    )
    told = decode_reply(broadcast.message)
    assert reply_text(told, "en") == (
        "📣 Announcement from Trường Chính trị tỉnh (Nguyễn Văn Quản):\n\n"
        "Họp giao ban lúc 8 giờ.\nPhòng 201."
    )


@pytest.mark.parametrize(
    ("kind", "expected", "count"),
    [
        # Sở Nội vụ and Chi cục Văn thư under it: 5 people, 3 reachable, 1 never linked, 1 blocked.
        ("units", {"Trần Văn Trưởng", "Lê Thị Học", "Vũ Văn Con"}, "Tổng số 5 người: 3 người"),
        # Confirmed participants only: not the waitlisted one.
        ("class", {"Lê Thị Học", "Đặng Thị Xa"}, "Tổng số 2 người: 2 người"),
        ("heads", {"Trần Văn Trưởng", "Hoàng Văn Huyện"}, "Tổng số 2 người: 2 người"),
        ("program", {"Lê Thị Học", "Đặng Thị Xa"}, "Tổng số 2 người: 2 người"),
    ],
)
async def test_each_audience_gets_exactly_its_people(
    sessionmaker: async_sessionmaker[AsyncSession], kind: str, expected: set[str], count: str
) -> None:
    p = await province(sessionmaker)
    admin = Chat(sessionmaker, "admin")
    await write(admin)
    kinds = {"units": 1, "class": 2, "heads": 3, "program": 4}
    shown = await admin.press(button(admin, Do.KIND, index=kinds[kind]))
    if kind == "units":
        assert "☐ Sở Nội vụ" in shown
        assert "☐ ↳ Chi cục Văn thư" in shown
        snv = next(d for d in admin.data() if d.startswith(f"bu:1:{p.snv}:"))
        chosen = await admin.press(snv)
        assert "☑ Sở Nội vụ" in chosen
        assert "☑ ↳ Chi cục Văn thư" in chosen  # included with the unit above it
        assert "Đã chọn: Sở Nội vụ." in chosen
        shown = await admin.press(button(admin, Do.PREVIEW))
        assert "Người nhận: cán bộ của Sở Nội vụ (gồm các đơn vị trực thuộc)." in shown
        assert "1 người chưa liên kết tài khoản chat; 1 người đã chặn bot" in shown
    elif kind == "class":
        assert "TC-01 «Trung cấp lý luận chính trị»" in shown
        assert "2 học viên" in shown
        shown = await admin.press(button(admin, Do.CLASS))
        assert "Người nhận: học viên lớp TC-01" in shown
    elif kind == "program":
        trung_cap = f"bp:1:{PROGRAMS.index(Program.TRUNG_CAP_LLCT) + 1}"
        assert trung_cap in admin.data()
        shown = await admin.press(trung_cap)
        assert "học viên các lớp Trung cấp lý luận chính trị - hành chính" in shown
    assert count in shown
    await admin.press(button(admin, Do.SEND))
    assert await queued_people(sessionmaker) == {p.names[name] for name in expected}


async def test_a_unit_head_reaches_only_their_units_and_a_forged_unit_is_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    head = Chat(sessionmaker, "head")
    asked = await head.say("/broadcast")
    assert "gửi được đến cán bộ của Sở Nội vụ và các đơn vị trực thuộc" in asked
    await head.say("Chiều nay nghỉ.")
    units = await head.press(button(head, Do.KIND, index=1))
    assert "Sở Nội vụ" in units
    assert "Chi cục Văn thư" in units
    assert "Huyện Yên Thành" not in units
    # A forged button for a unit outside the head's reach changes nothing.
    refused = await head.press(f"bu:1:{p.yth}:1")
    assert "không thuộc phạm vi đồng chí được gửi thông báo" in refused
    assert "Chưa chọn đơn vị nào." in refused
    async with sessionmaker() as session:
        draft = (await session.scalars(select(Broadcast))).one()
    assert draft.audience == {"kind": "units", "unit_ids": []}
    # Everyone linked, for a head, is everyone linked in their units.
    await head.press("ba:1")
    preview = await head.press(button(head, Do.KIND, index=0))
    assert "mọi người đã liên kết của Sở Nội vụ và các đơn vị trực thuộc" in preview
    assert "Tổng số 4 người: 3 người" in preview
    await head.press(button(head, Do.SEND))
    assert await queued_people(sessionmaker) == {
        p.names["Trần Văn Trưởng"],
        p.names["Lê Thị Học"],
        p.names["Vũ Văn Con"],
    }


async def test_another_authors_draft_and_broadcast_cannot_be_touched(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await province(sessionmaker)
    admin = Chat(sessionmaker, "admin")
    await write(admin)
    await admin.press(button(admin, Do.KIND, index=0))
    send = button(admin, Do.SEND)
    head = Chat(sessionmaker, "head")
    for data in ("bk:1:1", "bz:1", send, "bx:1"):
        assert "Thông báo #1 không phải của đồng chí." in await head.press(data)
    assert "Thông báo #1 đang được gửi" in await admin.press(send)
    # Heads see and stop only their own broadcasts; the admin's goes on.
    assert "Thông báo #1 không phải của đồng chí." in await head.press("bs:1")
    assert "Không có thông báo nào đang gửi." in await head.say("/broadcast stop")
    async with sessionmaker() as session:
        broadcast = (await session.scalars(select(Broadcast))).one()
    assert broadcast.status == BroadcastStatus.SENDING


async def test_only_admins_and_unit_heads_may_broadcast(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await province(sessionmaker)
    for user in ("learner", "visitor"):
        chat = Chat(sessionmaker, user)
        answer = await chat.say("/broadcast")
        assert "Gửi thông báo dành cho cán bộ quản lý của Trường" in answer
        # Not waiting for an announcement: the next text is read as usual.
        assert "Gửi thông báo dành cho" not in await chat.say("Họp lúc 8 giờ")
        assert "Gửi thông báo dành cho" in await chat.press("bk:1:1")
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Broadcast)) == 0


async def test_a_double_tap_on_send_sends_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await province(sessionmaker)
    admin = Chat(sessionmaker, "admin")
    await write(admin)
    await admin.press(button(admin, Do.KIND, index=3))
    send = button(admin, Do.SEND)
    first = await admin.press(send)
    second = await admin.press(send)
    assert "Thông báo #1 đang được gửi đến 2 người" in first
    assert "Thông báo #1 đã được gửi đi; không gửi lại lần nữa." in second
    assert "Đã gửi 0/2 · còn lại 2 · lỗi 0" in second
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 2


async def test_a_send_button_of_an_older_preview_does_not_send_a_changed_draft(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await province(sessionmaker)
    admin = Chat(sessionmaker, "admin")
    await write(admin)
    await admin.press(button(admin, Do.KIND, index=3))
    old_send = button(admin, Do.SEND)
    urgent = await admin.press(button(admin, Do.URGENT))
    assert "⚡ Khẩn: gửi ngay, kể cả trong giờ nghỉ ban đêm." in urgent
    answer = await admin.press(old_send)
    assert "Thông báo đã thay đổi sau lần xem trước đó" in answer
    assert await queued_people(sessionmaker) == set()
    await admin.press(button(admin, Do.SEND))
    async with sessionmaker() as session:
        rows = (await session.scalars(select(OutboxMessage))).all()
    assert len(rows) == 2
    assert all(row.urgent for row in rows)


async def test_writing_keeps_line_breaks_refuses_empty_and_too_long_text_and_cancel_works(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await province(sessionmaker)
    admin = Chat(sessionmaker, "admin")
    await admin.say("/broadcast")
    # A sticker or an empty message: asked again, still waiting for the text.
    assert "Chưa có nội dung" in render(await admin.send(""))
    too_long = "x" * 4001
    assert "Thông báo dài 4001 ký tự, quá giới hạn 4000 ký tự." in await admin.say(too_long)
    # A number is the announcement, not a button press; longer than any chat question too.
    long_text = "1. " + "Nội dung rất dài. " * 40
    shown = await admin.say(long_text)
    assert "Nội dung rất dài." in shown
    async with sessionmaker() as session:
        draft = (await session.scalars(select(Broadcast))).one()
    assert draft.text == long_text.strip()
    await admin.say("/broadcast")
    assert "Đã huỷ." in await admin.say("/cancel")
    # After /cancel the next text is a search, not an announcement.
    searched = await admin.say("trung cap")
    assert "TC-01" in searched
    assert "Gửi thông báo #2 đến ai?" not in searched
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Broadcast)) == 1


async def test_a_draft_can_be_rewritten_with_a_photo_and_dropped(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await province(sessionmaker)
    admin = Chat(sessionmaker, "admin")
    await write(admin)
    await admin.press(button(admin, Do.KIND, index=3))
    asked = await admin.press(button(admin, Do.REWRITE))
    assert "gửi nội dung mới cho thông báo #1" in asked
    photo = Attachment(AttachmentKind.PHOTO, "test", "photo-file-id")
    incoming = Incoming(
        channel="test", chat_id="admin", user_id="admin", text="Lịch học mới", attachment=photo
    )
    async with sessionmaker() as session, session.begin():
        answer = await dispatch(incoming, Repos(session), now=NOW, settings=admin.settings)
    announcement, _preview = answer.replies
    assert announcement.attachment == photo
    text = render(answer.replies)
    assert "Đã sửa nội dung thông báo." in text
    assert "📎 Kèm một ảnh." in text
    assert "Người nhận: thủ trưởng các đơn vị." in text
    async with sessionmaker() as session:
        draft = (await session.scalars(select(Broadcast))).one()
    assert draft.text == "Lịch học mới"
    assert decode_reply(draft.message).attachment == photo
    admin.last = answer.replies
    dropped = await admin.press(button(admin, Do.DROP))
    assert "Đã huỷ thông báo #1; không gửi gì cả." in dropped
    assert "Thông báo #1 đã được huỷ trước đó" in await admin.press("bg:1:1")
    assert await queued_people(sessionmaker) == set()


async def test_units_are_found_by_a_typed_name_without_diacritics(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    admin = Chat(sessionmaker, "admin")
    await write(admin)
    await admin.press(button(admin, Do.KIND, index=1))
    found = await admin.say("yen thanh")
    assert "Đơn vị khớp «yen thanh»: 1" in found
    assert "☐ Huyện Yên Thành" in found
    chosen = await admin.press(f"bu:1:{p.yth}:0")
    assert "☑ Huyện Yên Thành" in chosen
    assert "Đã chọn: Huyện Yên Thành." in chosen
    preview = await admin.press(button(admin, Do.PREVIEW))
    assert "Tổng số 2 người: 2 người" in preview


async def test_stop_by_command_and_status(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await province(sessionmaker)
    admin = Chat(sessionmaker, "admin")
    assert "Chưa có thông báo nào được gửi." in await admin.say("/broadcast status")
    assert "Không có thông báo nào đang gửi." in await admin.say("/broadcast stop")
    await write(admin, "Thông báo thứ nhất")
    await admin.press(button(admin, Do.KIND, index=3))
    await admin.press(button(admin, Do.SEND))
    status = await admin.say("/broadcast status")
    assert "Thông báo #1 «Thông báo thứ nhất» đang gửi:" in status
    assert "Đã gửi 0/2 · còn lại 2 · lỗi 0" in status
    assert "bs:1" in admin.data()
    stopped = await admin.say("/broadcast stop")
    assert "Đã dừng thông báo #1: 2 tin chưa gửi sẽ không được gửi." in stopped
    assert "Thông báo #1 «Thông báo thứ nhất» đã dừng." in stopped
    assert "Không gửi do đã dừng: 2" in stopped
    again = await admin.say("/broadcast stop 1")
    assert "Thông báo #1 đã kết thúc, không còn gì để dừng." in again
    assert "Không có thông báo #9." in await admin.say("/broadcast stop 9")
    assert "Cách dùng: /broadcast" in await admin.say("/broadcast foo")
    async with sessionmaker() as session:
        statuses = set((await session.scalars(select(OutboxMessage.status))).all())
    assert statuses == {OutboxStatus.SKIPPED}


async def test_help_names_broadcast_for_admins_and_heads_only(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await province(sessionmaker)
    admin_help = await Chat(sessionmaker, "admin").say("/help")
    head_help = await Chat(sessionmaker, "head").say("/help")
    learner_help = await Chat(sessionmaker, "learner").say("/help")
    assert "• /broadcast — gửi thông báo đến mọi người, các đơn vị" in admin_help
    assert "• /broadcast — gửi thông báo đến cán bộ của đơn vị mình" in head_help
    assert "/broadcast" not in learner_help
