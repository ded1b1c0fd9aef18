"""Broadcasts in the web admin: write, preview with exact counts, send once, progress, stop, report.

Over real HTTP against the admin on SQLite and PostgreSQL; the queuing, counting and
stopping are db/broadcasts.py's, the same the chat uses. The delivery engine is stood in
for by marking notices as it would (tests/test_web_browser.py runs the real one).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import ZnsSettings, ZnsTemplate, ZnsTemplates
from db import broadcasts
from db.models import (
    AuditEntry,
    Broadcast,
    BroadcastStatus,
    ChannelAccount,
    OutboxMessage,
    OutboxStatus,
    Program,
    UnitKind,
)
from handlers.i18n import t
from handlers.notices import decode_reply
from tests.factories import add_person, add_unit, link
from tests.web_support import Site, Visitor, admin_site, visible_text, web_settings
from tests.web_world import World, build_world

TEXT = "Lịch học tuần tới\nđổi sang hội trường B."


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    """The web world, with chat accounts: two linked in Yên Thành, one blocked, one never."""
    world = await build_world(sessionmaker)
    async with sessionmaker() as session, session.begin():
        await link(session, world.head, "telegram", "175")
        await link(session, world.learner, "telegram", "178")
        await link(session, world.other, "telegram", "190")
        blocked = await add_person(session, "0912000181", "Trần Văn Chặn", world.yen_thanh)
        session.add(
            ChannelAccount(
                person_id=blocked.id, channel="telegram", external_id="181", reachable=False
            )
        )
        await add_person(session, "0912000182", "Ngô Thị Chưa", world.yen_thanh)
    return world


@pytest.fixture
async def site(sessionmaker: async_sessionmaker[AsyncSession], world: World) -> AsyncIterator[Site]:
    async with admin_site(sessionmaker) as site:
        yield site


@pytest.fixture
async def admin(site: Site) -> Visitor:
    return await site.visitor().logged_in("admin")


async def audit_actions(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessionmaker() as session:
        stmt = select(AuditEntry.action).where(AuditEntry.action != "login").order_by(AuditEntry.id)
        return list((await session.scalars(stmt)).all())


async def notices(sessionmaker: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def the_broadcast(sessionmaker: async_sessionmaker[AsyncSession]) -> Broadcast:
    async with sessionmaker() as session:
        return (await session.scalars(select(Broadcast))).one()


async def write(visitor: Visitor, **form: str | list[str]) -> str:
    """Post the new-broadcast form; return the preview's address."""
    await visitor.page("/broadcasts/new")
    response = await visitor.post("/broadcasts/new", {"text": TEXT, **form})
    assert response.status == 303, visible_text(visitor.last_text)[:500]
    location = response.headers["Location"]
    assert re.fullmatch(r"/broadcasts/\d+", location)
    return location


async def send(visitor: Visitor, preview: str) -> str:
    """Press Send on the preview; return where it leads."""
    page = await visitor.page(preview)
    tag = re.search(r'name="tag" value="(\d+)"', page)
    assert tag is not None
    response = await visitor.post(f"{preview}/send", {"tag": tag[1]})
    assert response.status == 303
    return response.headers["Location"]


async def deliver(sessionmaker: async_sessionmaker[AsyncSession], *, fail: int = 0) -> None:
    """Settle the queued notices as the delivery engine would: sent, the first `fail` blocked."""
    async with sessionmaker() as session, session.begin():
        ids = (
            await session.scalars(
                select(OutboxMessage.id)
                .where(OutboxMessage.status == OutboxStatus.QUEUED)
                .order_by(OutboxMessage.id)
            )
        ).all()
        for number, notice_id in enumerate(ids):
            values: dict[str, object] = {"status": OutboxStatus.SENT}
            if number < fail:
                values = {"status": OutboxStatus.FAILED, "last_error": "unreachable: 403 blocked"}
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id == notice_id).values(**values)
            )


async def test_an_admin_writes_previews_sends_and_watches_a_broadcast_to_the_end(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    form = visible_text(await admin.page("/broadcasts/new"))
    assert "Huyện Yên Thành" in form
    assert "Huyện Diễn Châu" in form
    assert "chỉ gửi văn bản" in form  # no file upload: the channels carry platform file ids
    preview = await write(admin, kind="units", unit=str(world.yen_thanh.id))
    page = visible_text(await admin.page(preview))
    # What recipients read: the school's header (no roster person behind this account).
    assert "📣 Thông báo của Nhà trường: Lịch học tuần tới đổi sang hội trường B." in page
    assert "Các đơn vị chọn (gồm các đơn vị trực thuộc): Huyện Yên Thành" in page
    # Yên Thành: the head and the learner linked, one blocked the bot, one never linked.
    assert "Số người 4 Nhận được qua chat 2 Chưa liên kết tài khoản chat 1" in page
    assert "Đã chặn bot hoặc không liên lạc được 1" in page
    assert "Gửi đến 2 người" in page
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0

    location = await send(admin, preview)
    assert location == f"{preview}?done=started"
    broadcast = await the_broadcast(sessionmaker)
    assert (broadcast.status, broadcast.author_id, broadcast.origin_channel) == (
        BroadcastStatus.SENDING,
        None,
        None,
    )
    assert (broadcast.recipients, broadcast.never_linked, broadcast.unreachable) == (2, 1, 1)
    queued = await notices(sessionmaker)
    assert {n.person_id for n in queued} == {world.head.id, world.learner.id}
    assert all(n.broadcast_id == broadcast.id and not n.urgent for n in queued)
    message = decode_reply(broadcast.message)
    assert t(message.lines[0], "vi") == "📣 Thông báo của Nhà trường:"
    assert t(message.lines[1], "vi") == TEXT

    going = await admin.page(location)
    assert '<meta http-equiv="refresh" content="5">' in going
    text = visible_text(going)
    assert "Đã bắt đầu gửi." in text
    assert "Đã gửi 0 / 2 Còn lại 2 Lỗi 0" in text
    assert "Dừng gửi…" in text
    assert "Nhà trường (tài khoản quản trị)" in text
    assert "admin · soạn bản nháp" in text
    assert "admin · gửi" in text
    listed = visible_text(await admin.page("/broadcasts"))
    assert "Đang gửi Đã gửi 0/2 · còn lại 2 · lỗi 0" in listed

    await deliver(sessionmaker, fail=1)
    done = await admin.page(preview)
    assert "http-equiv" not in done  # over: the page stops reloading
    report = visible_text(done)
    assert "Đã gửi xong" in report
    assert "Kết quả Đã nhận 1 Đã chặn bot hoặc không liên lạc được 2 Gửi lỗi 0" in report
    assert "Chưa liên kết tài khoản chat 1" in report
    assert "Dừng gửi" not in report
    assert await audit_actions(sessionmaker) == ["broadcast.draft", "broadcast.send"]
    async with sessionmaker() as session:
        sent = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "broadcast.send"))
        ).one()
    assert (sent.username, sent.target_id, sent.details["recipients"]) == (
        "admin",
        str(broadcast.id),
        2,
    )


async def test_a_double_submit_of_send_starts_one_broadcast(
    site: Site, admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    preview = await write(admin, kind="everyone")
    page = await admin.page(preview)
    tag = re.search(r'name="tag" value="(\d+)"', page)
    assert tag is not None
    answers = await asyncio.gather(
        *(admin.post(f"{preview}/send", {"tag": tag[1]}) for _ in range(3))
    )
    locations = sorted(answer.headers["Location"] for answer in answers)
    assert locations == [
        f"{preview}?done=started",
        f"{preview}?error=not_draft",
        f"{preview}?error=not_draft",
    ]
    assert "đã được gửi hoặc đã bỏ trước đó" in visible_text(
        await admin.page(f"{preview}?error=not_draft")
    )
    # Everyone linked and reachable, once each.
    assert len(await notices(sessionmaker)) == 3
    assert await audit_actions(sessionmaker) == ["broadcast.draft", "broadcast.send"]
    # The back button and Send again: nothing more; nor can it be changed now.
    response = await admin.post(f"{preview}/send", {"tag": tag[1]})
    assert response.headers["Location"] == f"{preview}?error=not_draft"
    response = await admin.get(f"{preview}/edit")
    assert response.headers["Location"] == f"{preview}?error=not_draft"
    response = await admin.post(f"{preview}/edit", {"text": "Khác", "kind": "heads"})
    assert response.headers["Location"] == f"{preview}?error=not_draft"
    assert len(await notices(sessionmaker)) == 3
    assert (await the_broadcast(sessionmaker)).text == TEXT


async def test_a_double_submit_of_the_new_form_makes_one_draft_and_a_changed_one_another(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    form = await admin.page("/broadcasts/new")
    key = re.search(r'name="form_key" value="([A-Za-z0-9_-]+)"', form)
    assert key is not None
    written = {"text": TEXT, "kind": "units", "unit": str(world.yen_thanh.id), "form_key": key[1]}
    answers = await asyncio.gather(*(admin.post("/broadcasts/new", written) for _ in range(3)))
    locations = {answer.headers["Location"] for answer in answers}
    assert len(locations) == 1
    async with sessionmaker() as session:
        drafts = (await session.scalars(select(Broadcast))).all()
    assert [f"/broadcasts/{draft.id}" for draft in drafts] == list(locations)
    assert await audit_actions(sessionmaker) == ["broadcast.draft"]
    # Back to the same form, the text changed: a second draft, nothing typed is lost.
    response = await admin.post("/broadcasts/new", {**written, "text": "Lịch mới"})
    assert response.status == 303
    assert response.headers["Location"] not in locations
    async with sessionmaker() as session:
        texts = sorted((await session.scalars(select(Broadcast.text))).all())
    assert texts == sorted([TEXT, "Lịch mới"])
    # A new form has a new key.
    again = re.search(
        r'name="form_key" value="([A-Za-z0-9_-]+)"', await admin.page("/broadcasts/new")
    )
    assert again is not None
    assert again[1] != key[1]


async def test_a_send_from_an_older_preview_does_not_send_a_changed_draft(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    preview = await write(admin, kind="heads")
    old = re.search(r'name="tag" value="(\d+)"', await admin.page(preview))
    assert old is not None
    # Changed in another tab: now to Diễn Châu, urgent.
    await admin.page(f"{preview}/edit")
    response = await admin.post(
        f"{preview}/edit",
        {"text": TEXT, "kind": "units", "unit": str(world.dien_chau.id), "urgent": "1"},
    )
    assert response.status == 303
    response = await admin.post(f"{preview}/send", {"tag": old[1]})
    assert response.headers["Location"] == f"{preview}?error=changed"
    assert "thay đổi sau khi đồng chí xem trước" in visible_text(
        await admin.page(response.headers["Location"])
    )
    assert await notices(sessionmaker) == []
    # Sent from the new preview, it goes to Diễn Châu, urgent.
    await send(admin, preview)
    [notice] = await notices(sessionmaker)
    assert (notice.person_id, notice.urgent) == (world.other.id, True)
    assert await audit_actions(sessionmaker) == [
        "broadcast.draft",
        "broadcast.edit",
        "broadcast.send",
    ]


async def test_urgency_is_set_once_and_a_dropped_draft_is_never_sent(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    preview = await write(admin, kind="program", program=Program.KY_NANG.value)
    page = visible_text(await admin.page(preview))
    # The two pending registrations of KN-01 hold seats in a class of the program.
    assert "Học viên một chương trình (các lớp đang học và sắp học): Bồi dưỡng kỹ năng" in page
    assert "Gửi đến 2 người" in page
    assert "Không khẩn" in page
    for _ in range(2):  # a double click marks it urgent once
        assert (await admin.post(f"{preview}/urgent", {"urgent": "1"})).status == 303
    assert (await the_broadcast(sessionmaker)).urgent
    assert "Gửi ngay, cả trong giờ yên lặng." in visible_text(await admin.page(preview))
    response = await admin.post(f"{preview}/drop")
    assert response.headers["Location"] == "/broadcasts?done=dropped"
    assert "Đã bỏ bản nháp" in visible_text(await admin.page(response.headers["Location"]))
    assert (await the_broadcast(sessionmaker)).status == BroadcastStatus.CANCELLED
    assert "Bản nháp này đã bỏ" in visible_text(await admin.page(preview))
    # Its old Send button sends nothing.
    response = await admin.post(f"{preview}/send", {"tag": "1"})
    assert response.headers["Location"] == f"{preview}?error=not_draft"
    assert await notices(sessionmaker) == []
    assert await audit_actions(sessionmaker) == [
        "broadcast.draft",
        "broadcast.urgent",
        "broadcast.drop",
    ]


async def test_stop_skips_what_is_left_once_and_the_report_says_so(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    preview = await write(admin, kind="everyone")
    await send(admin, preview)
    await admin.page(preview)
    response = await admin.post(f"{preview}/stop")
    assert response.headers["Location"] == f"{preview}?done=stopped"
    assert {n.status for n in await notices(sessionmaker)} == {OutboxStatus.SKIPPED}
    assert (await the_broadcast(sessionmaker)).status == BroadcastStatus.STOPPED
    # Stopping again (a double click, another tab) changes nothing and says so.
    response = await admin.post(f"{preview}/stop")
    assert response.headers["Location"] == f"{preview}?done=already_over"
    page = visible_text(await admin.page(response.headers["Location"]))
    assert "đã gửi xong hoặc đã dừng trước đó" in page
    assert "Đã dừng" in page
    assert "Đã nhận 0" in page
    assert "Không gửi do đã dừng 3" in page
    assert await audit_actions(sessionmaker) == [
        "broadcast.draft",
        "broadcast.send",
        "broadcast.stop",
    ]


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        ({"text": "  ", "kind": "everyone"}, "Chưa có nội dung thông báo"),
        ({"text": "x" * 4001, "kind": "everyone"}, "dài quá 4000 ký tự"),
        ({"text": TEXT}, "Đồng chí chọn người nhận"),
        ({"text": TEXT, "kind": "nobody"}, "Đồng chí chọn người nhận"),
        ({"text": TEXT, "kind": "units"}, "chọn ít nhất một đơn vị"),
        ({"text": TEXT, "kind": "units", "unit": "99999"}, "không thuộc phạm vi"),
        ({"text": TEXT, "kind": "units", "unit": "abc"}, "không thuộc phạm vi"),
        ({"text": TEXT, "kind": "class"}, "Đồng chí chọn một lớp"),
        ({"text": TEXT, "kind": "class", "class_id": "99999"}, "không có trong các lớp"),
        ({"text": TEXT, "kind": "class", "class_id": "abc"}, "không có trong các lớp"),
        ({"text": TEXT, "kind": "program", "program": "nope"}, "chọn một chương trình"),
    ],
)
async def test_a_bad_form_says_what_is_wrong_keeps_what_was_typed_and_saves_nothing(
    admin: Visitor,
    sessionmaker: async_sessionmaker[AsyncSession],
    form: dict[str, str],
    problem: str,
) -> None:
    await admin.page("/broadcasts/new")
    response = await admin.post("/broadcasts/new", form)
    assert response.status == 422
    assert problem in visible_text(admin.last_text)
    if form["text"].strip() and len(form["text"]) < 100:
        assert "Lịch học tuần tới\nđổi sang hội trường B.</textarea>" in admin.last_text
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Broadcast)) == 0
    assert await audit_actions(sessionmaker) == []


async def test_a_class_audience_offers_the_classes_with_participants(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    form = visible_text(await admin.page("/broadcasts/new"))
    assert "KN-01 Bồi dưỡng kỹ năng lãnh đạo" in form  # two pending registrations
    assert "NV-02" not in form  # nobody registered
    preview = await write(admin, kind="class", class_id=str(world.shared.id))
    page = visible_text(await admin.page(preview))
    assert "Học viên một lớp: KN-01 Bồi dưỡng kỹ năng lãnh đạo" in page
    assert "Gửi đến 2 người" in page


async def test_a_unit_head_writes_as_themselves_to_their_units_only(
    site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    head = await site.visitor().logged_in("head")
    form = visible_text(await head.page("/broadcasts/new"))
    assert "Huyện Yên Thành" in form
    assert "Huyện Diễn Châu" not in form
    assert "Tỉnh Nghệ An" not in form
    preview = await write(head, kind="everyone")
    page = visible_text(await head.page(preview))
    assert "📣 Thông báo của Huyện Yên Thành (Lý Đình Trung):" in page
    assert "trong phạm vi Huyện Yên Thành và các đơn vị trực thuộc" in page
    # Everyone linked within Yên Thành: the head and the learner, not Diễn Châu's.
    assert "Số người 3 Nhận được qua chat 2" in page
    await send(head, preview)
    broadcast = await the_broadcast(sessionmaker)
    assert (broadcast.author_id, broadcast.scope_unit_id) == (world.head.id, world.yen_thanh.id)
    assert {n.person_id for n in await notices(sessionmaker)} == {world.head.id, world.learner.id}
    # It is theirs in the chat too: /broadcast status lists their own.
    async with sessionmaker() as session:
        theirs = await broadcasts.recent(session, author_id=world.head.id)
    assert [b.id for b in theirs] == [broadcast.id]
    listed = visible_text(await head.page("/broadcasts"))
    assert "Lý Đình Trung" in listed
    # The admin sees it too, with who wrote it.
    admin = await site.visitor().logged_in("admin")
    assert "Lý Đình Trung" in visible_text(await admin.page("/broadcasts"))


async def test_a_chat_draft_continued_on_the_web_keeps_its_photo(
    site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    photo = {"kind": "photo", "channel": "telegram", "file_id": "AgAC-photo", "filename": None}
    async with sessionmaker() as session, session.begin():
        draft = await broadcasts.create_draft(
            session,
            author_id=world.head.id,
            scope_unit_id=world.yen_thanh.id,
            text="Ảnh lịch học",
            message={"lines": [], "buttons": [], "attachment": photo},
            origin_channel="telegram",
            origin_chat_id="175",
            now=dt.datetime.now(dt.UTC),
        )
    head = await site.visitor().logged_in("head")
    listed = visible_text(await head.page("/broadcasts"))
    assert f"#{draft.id} Ảnh lịch học" in listed
    edit = visible_text(await head.page(f"/broadcasts/{draft.id}/edit"))
    assert "giữ nguyên" in edit
    response = await head.post(
        f"/broadcasts/{draft.id}/edit", {"text": "Ảnh lịch học mới", "kind": "heads"}
    )
    assert response.status == 303
    assert "Kèm một ảnh" in visible_text(await head.page(f"/broadcasts/{draft.id}"))
    async with sessionmaker() as session:
        kept = await session.get(Broadcast, draft.id)
        assert kept is not None
        assert kept.message["attachment"]["file_id"] == "AgAC-photo"
        assert kept.text == "Ảnh lịch học mới"


async def test_the_school_is_named_as_in_the_roster(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        school = await add_unit(session, "TCT", "Trường Chính trị tỉnh Nghệ An", world.province)
        school.kind = UnitKind.SCHOOL
    preview = await write(admin, kind="heads")
    assert "📣 Thông báo của Trường Chính trị tỉnh Nghệ An:" in visible_text(
        await admin.page(preview)
    )


async def test_people_without_a_chat_are_counted_and_queued_by_zns_when_broadcasts_have_a_template(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    """With a broadcast template on, the web preview counts the never linked and the blocked
    as reached by ZNS, Send counts them, and their notices are queued (the chat's rule)."""
    settings = web_settings().model_copy(
        update={
            "zns": ZnsSettings(
                enabled=True,
                app_id="1",
                secret_key=SecretStr("app-secret"),
                oa_secret_key=SecretStr("oa-secret"),
                templates=ZnsTemplates(
                    broadcast=ZnsTemplate(template_id="901", fields={"noi_dung": "text"})
                ),
            )
        }
    )
    async with admin_site(sessionmaker, settings) as site:
        admin = await site.visitor().logged_in("admin")
        preview = await write(admin, kind="units", unit=str(world.yen_thanh.id))
        page = visible_text(await admin.page(preview))
        assert "Số người 4 Nhận được qua chat 2" in page
        assert "Nhận qua tin nhắn Zalo (ZNS) tới số điện thoại 2" in page
        assert "có tính phí theo từng tin" in page
        assert "Gửi đến 4 người" in page
        await send(admin, preview)
    broadcast = await the_broadcast(sessionmaker)
    assert broadcast.recipients == 4
    queued = {n.person_id for n in await notices(sessionmaker)}
    assert len(queued) == 4
    assert {world.head.id, world.learner.id} < queued
