"""People without a reachable chat, reached by ZNS: what broadcasts count and queue, what a
unit head is told when someone blocks the bot or a nominee never linked, and that the one
rule (db.zns.goes_by_zns) is the one the delivery claim routes by (SQLite, PostgreSQL).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import broadcasts, outbox, zns
from db.broadcasts import Audience, AudienceKind
from db.models import ChannelAccount, OutboxMessage, Person
from handlers.broadcast_buttons import Do
from handlers.types import ChatSettings
from jobs.timing import NotifySettings
from tests.factories import NOW, TODAY, Chat, add_class, add_registration, link, render
from tests.jobs_support import SETTINGS, queued, run_job
from tests.test_broadcast_flow import Province, button, province, queued_people, write
from tests.test_jobs_unit_alerts import NOW as JOB_NOW
from tests.test_jobs_unit_alerts import START
from tests.test_jobs_unit_alerts import province as alert_province
from tests.test_nomination import world

# Broadcasts have a ZNS template that is on, and reminders and class changes too.
ZNS_ON = ChatSettings(
    zns_kinds=frozenset({"broadcast", "class.reminder", "class.changed", "class.cancelled"})
)


async def person_id(sessionmaker: async_sessionmaker[AsyncSession], phone: str) -> int:
    async with sessionmaker() as session:
        found = await session.scalar(select(Person.id).where(Person.phone == phone))
    assert found is not None
    return int(found)


def units_of(p: Province) -> Audience:
    """Return the audience "Sở Nội vụ and the units under it"."""
    return Audience(AudienceKind.UNITS, unit_ids=(p.snv,))


async def test_broadcast_counts_and_queues_people_without_a_chat_when_zns_carries_broadcasts(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    # Sở Nội vụ and its Chi cục: a head, a learner and Con on chat; Chặn blocked the bot;
    # Chưa never linked.
    async with sessionmaker() as session:
        without = await broadcasts.count_audience(session, units_of(p), scope=None, today=TODAY)
        with_zns = await broadcasts.count_audience(
            session, units_of(p), scope=None, today=TODAY, zns_kinds=ZNS_ON.zns_kinds
        )
        other_kinds = await broadcasts.count_audience(
            session, units_of(p), scope=None, today=TODAY, zns_kinds={"class.reminder"}
        )
    assert (without.total, without.reachable, without.never_linked, without.unreachable) == (
        5,
        3,
        1,
        1,
    )
    assert (without.by_zns, without.recipients) == (0, 3)
    # With ZNS: the blocked one and the one never linked go by ZNS; nobody gets nothing.
    assert (with_zns.reachable, with_zns.by_zns, with_zns.recipients) == (3, 2, 5)
    assert (with_zns.never_linked, with_zns.unreachable) == (0, 0)
    # A ZNS template for other kinds only changes nothing for broadcasts.
    assert other_kinds == without
    async with sessionmaker() as session, session.begin():
        draft = await broadcasts.create_draft(
            session,
            author_id=p.names["Nguyễn Văn Quản"],
            scope_unit_id=None,
            text="x",
            message={},
            now=NOW,
        )
        await broadcasts.edit_draft(
            session, draft.id, p.names["Nguyễn Văn Quản"], audience=units_of(p)
        )
        started = await broadcasts.start(
            session,
            draft.id,
            author_id=p.names["Nguyễn Văn Quản"],
            scope_unit_id=None,
            now=NOW,
            today=TODAY,
            zns_kinds=ZNS_ON.zns_kinds,
        )
        assert (started.recipients, started.never_linked, started.unreachable) == (5, 0, 0)
        queued_ids = set(
            (
                await session.scalars(
                    select(OutboxMessage.person_id).where(OutboxMessage.broadcast_id == draft.id)
                )
            ).all()
        )
        by_rule = set(
            (
                await session.scalars(
                    select(Person.id).where(Person.id.in_(queued_ids), zns.goes_by_zns())
                )
            ).all()
        )
    assert len(queued_ids) == 5
    assert by_rule == {p.names["Phạm Văn Chặn"], *(queued_ids - set(p.names.values()))}
    # The delivery claim routes the same people by ZNS: the rule is one.
    route = outbox.ZnsRoute(
        "app", frozenset({"broadcast"}), zns.Guard(), TODAY, NOW + dt.timedelta(days=1)
    )
    pace = outbox.Pace(interval={"test": 0.001, "zns": 0.001}, per_chat=0, lease=dt.timedelta(60))
    async with sessionmaker() as session, session.begin():
        claim = await outbox.claim_batch(
            session,
            ["test"],
            now=NOW + dt.timedelta(seconds=1),
            limit=50,
            pace=pace,
            zns_route=route,
        )
    assert {n.person_id for n in claim.notices if n.channel == "zns"} == by_rule
    assert {n.person_id for n in claim.notices if n.channel == "test"} == queued_ids - by_rule


async def test_a_broadcast_without_a_zns_template_queues_only_chats_as_before(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    admin_id = p.names["Nguyễn Văn Quản"]
    async with sessionmaker() as session, session.begin():
        draft = await broadcasts.create_draft(
            session, author_id=admin_id, scope_unit_id=None, text="x", message={}, now=NOW
        )
        await broadcasts.edit_draft(session, draft.id, admin_id, audience=units_of(p))
        started = await broadcasts.start(
            session, draft.id, author_id=admin_id, scope_unit_id=None, now=NOW, today=TODAY
        )
    assert (started.recipients, started.never_linked, started.unreachable) == (3, 1, 1)


async def test_the_preview_says_how_many_go_by_zns_and_send_counts_them(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    admin = Chat(sessionmaker, "admin", settings=ZNS_ON)
    await write(admin)
    await admin.press(button(admin, Do.KIND, index=1))
    await admin.press(next(d for d in admin.data() if d.startswith(f"bu:1:{p.snv}:")))
    preview = await admin.press(button(admin, Do.PREVIEW))
    assert (
        "Tổng số 5 người: 3 người nhận được qua chat; 2 người nhận qua tin nhắn Zalo (ZNS) "
        "tới số điện thoại; 0 người chưa liên kết tài khoản chat; 0 người đã chặn bot"
    ) in preview
    assert "có tính phí theo từng tin, chỉ gồm phần chữ" in preview
    assert "Gửi cho 5 người" in preview
    sent = await admin.press(button(admin, Do.SEND))
    assert "đang được gửi đến 5 người" in sent
    assert await queued_people(sessionmaker) == {
        *(p.names[name] for name in ("Trần Văn Trưởng", "Lê Thị Học", "Vũ Văn Con")),
        p.names["Phạm Văn Chặn"],
        await person_id(sessionmaker, "0912000004"),  # Đỗ Thị Chưa, never linked
    }


async def test_without_zns_for_broadcasts_the_preview_is_as_before(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    # ZNS carries reminders, not broadcasts.
    admin = Chat(
        sessionmaker, "admin", settings=ChatSettings(zns_kinds=frozenset({"class.reminder"}))
    )
    await write(admin)
    await admin.press(button(admin, Do.KIND, index=1))
    await admin.press(next(d for d in admin.data() if d.startswith(f"bu:1:{p.snv}:")))
    preview = await admin.press(button(admin, Do.PREVIEW))
    assert "3 người nhận được qua chat; 1 người chưa liên kết tài khoản chat" in preview
    assert "ZNS" not in preview
    assert "Gửi cho 3 người" in preview


async def block_villager(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """The villager, registered for K12, blocks the bot on their only chat."""
    world_ = await alert_province(sessionmaker)
    villager = world_.people["villager"]
    async with sessionmaker() as session, session.begin():
        klass = await add_class(session, "K12", "Đảng viên mới", start=START)
        await add_registration(session, villager, klass)
        await link(session, villager, "telegram", "501")
        await session.execute(
            update(ChannelAccount)
            .where(ChannelAccount.external_id == "501")
            .values(reachable=False, unreachable_since=JOB_NOW)
        )


def with_zns(kinds: frozenset[str]) -> NotifySettings:
    """Return the jobs' settings with ZNS carrying `kinds`."""
    return dataclasses.replace(SETTINGS, chat=dataclasses.replace(SETTINGS.chat, zns_kinds=kinds))


async def test_someone_who_blocked_the_bot_is_reported_with_what_still_reaches_them_by_zns(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await block_villager(sessionmaker)
    later = JOB_NOW + dt.timedelta(minutes=1)
    assert await run_job(sessionmaker, "unreachable_people", later, with_zns(ZNS_ON.zns_kinds))
    (report,) = await queued(sessionmaker, kind="unit.person_unreachable")
    text = report.text()
    assert "Không gửi được tin nhắn cho đồng chí Nguyễn Văn Xã" in text
    assert "Đồng chí ấy đang đăng ký các lớp: K12." in text
    assert "Bot vẫn gửi tới số điện thoại của đồng chí ấy" in text
    assert "• nhắc lịch trước buổi học" in text
    assert "• lớp đổi lịch, đổi địa điểm hoặc bị huỷ" in text
    assert "• thông báo chung" in text
    assert "mời nhận chỗ trống" not in text  # offers have no template here
    assert "Các thông báo khác đồng chí ấy không nhận được" in text
    # Not the hint for someone the bot cannot reach at all.
    assert "liên hệ trực tiếp để báo lịch học" not in text


async def test_without_zns_the_head_is_told_to_reach_them_directly(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await block_villager(sessionmaker)
    assert await run_job(sessionmaker, "unreachable_people", JOB_NOW + dt.timedelta(minutes=1))
    (report,) = await queued(sessionmaker, kind="unit.person_unreachable")
    assert "liên hệ trực tiếp để báo lịch học" in report.text()
    assert "ZNS" not in report.text()


async def test_a_nominee_never_linked_is_told_of_the_nomination_by_zns_when_it_has_a_template(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    kinds = frozenset({"registration.nominated", "class.reminder"})
    head = Chat(sessionmaker, user_id="head", settings=ChatSettings(zns_kinds=kinds))
    done = await head.press(f"nx:{w.klass.id}:{w.silent.id}")
    assert "Đã cử đồng chí Ngô Văn Im" in done
    assert "bot sẽ báo việc cử đi học qua tin nhắn Zalo (ZNS)" in done
    assert "Đồng chí ấy chỉ từ chối được khi mở bot." in done
    assert "• nhắc lịch trước buổi học" in done
    assert "• được cử đi học" not in done  # said above already
    assert "chưa thể báo tin cho đồng chí ấy" not in done


async def test_a_nominee_never_linked_without_a_nomination_template_is_to_be_told_directly(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    w = await world(sessionmaker)
    kinds = frozenset({"class.reminder"})
    head = Chat(sessionmaker, user_id="head", settings=ChatSettings(zns_kinds=kinds))
    done = await head.press(f"nx:{w.klass.id}:{w.silent.id}")
    # The nomination itself does not reach him: the head tells him; reminders will.
    assert "Ngô Văn Im chưa liên kết tài khoản với bot" in done
    assert "• nhắc lịch trước buổi học" in done
    # A nominee on chat gets no such lines.
    await head.press(f"nx:{w.klass.id}:{w.nominee.id}")
    assert "ZNS" not in head_text(head)


def head_text(chat: Chat) -> str:
    """Return the chat's last replies as text."""
    return render(chat.last)
