"""db/broadcasts.py: audiences counted exactly, queued once, stopped and reported."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import broadcasts, outbox
from db.broadcasts import Audience, AudienceCount, AudienceKind, BroadcastError, Progress
from db.models import (
    Broadcast,
    BroadcastStatus,
    ChannelAccount,
    OutboxMessage,
    OutboxStatus,
    Program,
    RegistrationStatus,
)
from tests.factories import NOW, TODAY, add_class, add_person, add_registration, add_unit, link

S = RegistrationStatus
PACE = outbox.Pace(interval={"telegram": 0.0}, per_chat=1.0, lease=dt.timedelta(minutes=1))


@dataclass
class Province:
    """Ids of a small province: a department with a sub-unit, a district, their people."""

    snv: int
    ccvt: int
    yth: int
    author: int
    class_id: int
    other_class_id: int


async def province(sessionmaker: async_sessionmaker[AsyncSession]) -> Province:
    """Seed units, people (linked, blocked, never linked), heads and registrations."""
    async with sessionmaker() as session, session.begin():
        school = await add_unit(session, "TCT", "Trường Chính trị tỉnh")
        snv = await add_unit(session, "SNV", "Sở Nội vụ")
        ccvt = await add_unit(session, "CCVT", "Chi cục Văn thư", parent=snv)
        yth = await add_unit(session, "YTH", "Huyện Yên Thành")
        author = await add_person(session, "0912000100", "Nguyễn Văn Quản", school)
        author.is_admin = True
        await link(session, author, "telegram", "100")
        # Sở Nội vụ: a linked head, a linked learner, one who blocked the bot, one never linked.
        head = await add_person(session, "0912000001", "Trần Văn Trưởng", snv)
        head.is_unit_head = True
        await link(session, head, "telegram", "1")
        learner = await add_person(session, "0912000002", "Lê Thị Học", snv)
        await link(session, learner, "telegram", "2")
        blocked = await add_person(session, "0912000003", "Phạm Văn Chặn", snv)
        session.add(
            ChannelAccount(
                person_id=blocked.id, channel="telegram", external_id="3", reachable=False
            )
        )
        await add_person(session, "0912000004", "Đỗ Thị Chưa", snv)
        # Chi cục Văn thư (under Sở Nội vụ): a linked learner and one never linked.
        sub = await add_person(session, "0912000005", "Vũ Văn Con", ccvt)
        await link(session, sub, "telegram", "5")
        await add_person(session, "0912000006", "Bùi Thị Chưa", ccvt)
        # Huyện Yên Thành: a linked head and a linked learner.
        district_head = await add_person(session, "0912000007", "Hoàng Văn Huyện", yth)
        district_head.is_unit_head = True
        await link(session, district_head, "telegram", "7")
        far = await add_person(session, "0912000008", "Đặng Thị Xa", yth)
        await link(session, far, "telegram", "8")
        klass = await add_class(
            session, "TC-01", "Trung cấp LLCT", program=Program.TRUNG_CAP_LLCT, start=TODAY
        )
        ended = await add_class(
            session,
            "TC-00",
            "Trung cấp LLCT khoá trước",
            program=Program.TRUNG_CAP_LLCT,
            start=TODAY - dt.timedelta(days=60),
        )
        other = await add_class(session, "KN-01", "Kỹ năng", start=TODAY + dt.timedelta(days=9))
        await add_registration(session, learner, klass, S.CONFIRMED)
        await add_registration(session, sub, klass, S.PENDING_APPROVAL)
        await add_registration(session, far, klass, S.WAITLISTED)  # not a participant
        await add_registration(session, blocked, klass, S.CANCELLED)  # not a participant
        await add_registration(session, far, ended, S.ATTENDED)  # the program's old class
        await add_registration(session, far, other, S.CONFIRMED)
        return Province(snv.id, ccvt.id, yth.id, author.id, klass.id, other.id)


async def count(
    sessionmaker: async_sessionmaker[AsyncSession], audience: Audience, scope_unit: int | None
) -> AudienceCount:
    async with sessionmaker() as session:
        scope = await broadcasts.scope_of(session, scope_unit)
        return await broadcasts.count_audience(session, audience, scope=scope, today=TODAY)


async def test_each_audience_is_counted_exactly_with_who_cannot_be_reached(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    everyone = Audience(AudienceKind.EVERYONE)
    units = Audience(AudienceKind.UNITS, unit_ids=(p.snv,))
    klass = Audience(AudienceKind.CLASS, class_id=p.class_id)
    heads = Audience(AudienceKind.HEADS)
    program = Audience(AudienceKind.PROGRAM, program=Program.TRUNG_CAP_LLCT)
    # Everyone linked: 7 accounts, one of which blocked the bot.
    assert await count(sessionmaker, everyone, None) == AudienceCount(7, 6, 0)
    # Sở Nội vụ with Chi cục Văn thư under it: 6 people, 3 linked and reachable, 1 blocked.
    assert await count(sessionmaker, units, None) == AudienceCount(6, 3, 2)
    assert (await count(sessionmaker, units, None)).unreachable == 1
    # The class's participants: confirmed and pending; not the waitlisted nor the cancelled.
    assert await count(sessionmaker, klass, None) == AudienceCount(2, 2, 0)
    assert await count(sessionmaker, heads, None) == AudienceCount(2, 2, 0)
    # The program's current classes only: the ended class's attendee is not counted.
    assert await count(sessionmaker, program, None) == AudienceCount(2, 2, 0)
    # A head of Sở Nội vụ reaches only their unit and the one under it.
    assert await count(sessionmaker, everyone, p.snv) == AudienceCount(4, 3, 0)
    assert await count(sessionmaker, heads, p.snv) == AudienceCount(1, 1, 0)
    assert await count(sessionmaker, Audience(AudienceKind.UNITS, (p.ccvt,)), p.snv) == (
        AudienceCount(2, 1, 1)
    )


async def draft(
    sessionmaker: async_sessionmaker[AsyncSession],
    author: int,
    audience: Audience | None,
    *,
    scope_unit: int | None = None,
) -> int:
    async with sessionmaker() as session, session.begin():
        made = await broadcasts.create_draft(
            session,
            author_id=author,
            scope_unit_id=scope_unit,
            text="Họp lúc 8 giờ",
            message={"lines": [{"key": "start.intro", "params": {}}], "buttons": []},
            origin_channel="telegram",
            origin_chat_id="100",
            now=NOW,
        )
        if audience is not None:
            made.audience = audience.as_json()
        return made.id


async def start(
    sessionmaker: async_sessionmaker[AsyncSession], broadcast_id: int, author: int
) -> Broadcast:
    async with sessionmaker() as session, session.begin():
        return await broadcasts.start(
            session, broadcast_id, author_id=author, scope_unit_id=None, now=NOW, today=TODAY
        )


async def outbox_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def test_start_queues_one_notice_per_reachable_person_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    broadcast_id = await draft(sessionmaker, p.author, Audience(AudienceKind.UNITS, (p.snv,)))
    started = await start(sessionmaker, broadcast_id, p.author)
    assert (started.status, started.recipients, started.never_linked, started.unreachable) == (
        BroadcastStatus.SENDING,
        3,
        2,
        1,
    )
    rows = await outbox_rows(sessionmaker)
    assert len(rows) == 3
    assert {row.idempotency_key for row in rows} == {
        f"broadcast:{broadcast_id}:{row.person_id}" for row in rows
    }
    assert all(
        (row.kind, row.status, row.broadcast_id, row.urgent, row.payload)
        == ("broadcast", OutboxStatus.QUEUED, broadcast_id, False, {})
        for row in rows
    )
    # A second start (a double tap) queues nothing: the draft is no longer one.
    with pytest.raises(BroadcastError) as refused:
        await start(sessionmaker, broadcast_id, p.author)
    assert refused.value.why == "not_draft"
    # Even run again as a draft (a crash between queuing and the status change is rolled
    # back whole, but say it were not), the idempotency keys hold: nobody is queued twice.
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Broadcast).where(Broadcast.id == broadcast_id).values(status="draft")
        )
    again = await start(sessionmaker, broadcast_id, p.author)
    assert again.recipients == 3
    assert len(await outbox_rows(sessionmaker)) == 3


@pytest.mark.parametrize(
    ("audience", "why"),
    [
        (None, "no_audience"),
        (Audience(AudienceKind.UNITS), "no_audience"),
        (Audience(AudienceKind.UNITS, (999,)), "out_of_scope"),
        (Audience(AudienceKind.CLASS, class_id=999), "out_of_scope"),
    ],
)
async def test_a_draft_without_a_usable_audience_is_not_started(
    sessionmaker: async_sessionmaker[AsyncSession], audience: Audience | None, why: str
) -> None:
    p = await province(sessionmaker)
    broadcast_id = await draft(sessionmaker, p.author, audience)
    with pytest.raises(BroadcastError) as refused:
        await start(sessionmaker, broadcast_id, p.author)
    assert refused.value.why == why
    assert await outbox_rows(sessionmaker) == []


async def test_a_head_cannot_start_a_broadcast_to_a_unit_outside_their_reach(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    broadcast_id = await draft(
        sessionmaker, p.author, Audience(AudienceKind.UNITS, (p.yth,)), scope_unit=p.snv
    )
    with pytest.raises(BroadcastError) as refused:
        async with sessionmaker() as session, session.begin():
            await broadcasts.start(
                session, broadcast_id, author_id=p.author, scope_unit_id=p.snv, now=NOW, today=TODAY
            )
    assert refused.value.why == "out_of_scope"
    with pytest.raises(BroadcastError) as not_yours:
        await start(sessionmaker, broadcast_id, p.author + 1)
    assert not_yours.value.why == "not_yours"


async def test_nobody_reachable_is_refused(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    p = await province(sessionmaker)
    async with sessionmaker() as session, session.begin():
        await session.execute(update(ChannelAccount).values(reachable=False))
    broadcast_id = await draft(sessionmaker, p.author, Audience(AudienceKind.EVERYONE))
    with pytest.raises(BroadcastError) as refused:
        await start(sessionmaker, broadcast_id, p.author)
    assert refused.value.why == "nobody"


async def test_claimed_notices_carry_the_broadcasts_message_and_follow_personal_notices(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    broadcast_id = await draft(sessionmaker, p.author, Audience(AudienceKind.HEADS))
    await start(sessionmaker, broadcast_id, p.author)
    async with sessionmaker() as session, session.begin():
        # A personal notice queued after the broadcast goes first all the same.
        session.add(
            OutboxMessage(
                idempotency_key="personal",
                person_id=p.author,
                kind="registration.approved",
                payload={"reply": {"lines": [], "buttons": []}},
                due_at=NOW + dt.timedelta(seconds=1),
            )
        )
    async with sessionmaker() as session, session.begin():
        claim = await outbox.claim_batch(
            session, ["telegram"], now=NOW + dt.timedelta(seconds=2), limit=1, pace=PACE
        )
    [first] = claim.notices
    assert first.kind == "registration.approved"
    async with sessionmaker() as session, session.begin():
        claim = await outbox.claim_batch(
            session, ["telegram"], now=NOW + dt.timedelta(seconds=2), limit=5, pace=PACE
        )
    assert [notice.kind for notice in claim.notices] == ["broadcast", "broadcast"]
    assert all(
        notice.payload["reply"]["lines"] == [{"key": "start.intro", "params": {}}]
        for notice in claim.notices
    )


async def test_stop_skips_what_is_queued_and_a_claimed_notice_is_not_sent_after(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    broadcast_id = await draft(sessionmaker, p.author, Audience(AudienceKind.EVERYONE))
    await start(sessionmaker, broadcast_id, p.author)
    later = NOW + dt.timedelta(seconds=1)
    async with sessionmaker() as session, session.begin():
        claim = await outbox.claim_batch(session, ["telegram"], now=later, limit=2, pace=PACE)
    sent, held = claim.notices
    async with sessionmaker() as session, session.begin():
        await outbox.mark_sent(session, sent, now=later, per_chat=1.0)
    async with sessionmaker() as session, session.begin():
        skipped = await broadcasts.stop(session, broadcast_id, by_id=p.author, now=later)
    assert skipped == 5
    # The notice claimed before the stop is no longer queued under its claim: not sent.
    async with sessionmaker() as session:
        assert not await outbox.is_claimed(session, held)
    async with sessionmaker() as session:
        progress = await broadcasts.progress(session, broadcast_id)
        stopped = await broadcasts.get(session, broadcast_id)
    assert progress == Progress(recipients=6, sent=1, skipped=5, unreachable=1)
    assert stopped is not None
    assert (stopped.status, stopped.stopped_by_id) == (BroadcastStatus.STOPPED, p.author)
    with pytest.raises(BroadcastError) as again:
        async with sessionmaker() as session, session.begin():
            await broadcasts.stop(session, broadcast_id, by_id=p.author, now=later)
    assert again.value.why == "finished"


async def test_progress_tells_blocked_from_failed_and_done_is_settled(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    broadcast_id = await draft(sessionmaker, p.author, Audience(AudienceKind.UNITS, (p.snv,)))
    await start(sessionmaker, broadcast_id, p.author)
    async with sessionmaker() as session, session.begin():
        claim = await outbox.claim_batch(session, ["telegram"], now=NOW, limit=5, pace=PACE)
        first, second, third = claim.notices
        await outbox.mark_sent(session, first, now=NOW, per_chat=1.0)
        await outbox.mark_failed(session, second, "unreachable: 403 Forbidden: bot was blocked")
        assert await broadcasts.settle_finished(session, NOW) == 0
        await outbox.mark_failed(session, third, "400 Bad Request: message is too long")
        assert await broadcasts.settle_finished(session, NOW) == 1
    async with sessionmaker() as session:
        progress = await broadcasts.progress(session, broadcast_id)
        done = await broadcasts.get(session, broadcast_id)
    assert progress == Progress(
        recipients=3, sent=1, blocked=1, failed=1, never_linked=2, unreachable=1
    )
    assert done is not None
    assert done.status == BroadcastStatus.DONE


async def test_the_progress_message_is_claimed_by_one_process_at_a_time(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    broadcast_id = await draft(sessionmaker, p.author, Audience(AudienceKind.HEADS))
    every = dt.timedelta(seconds=5)
    lease = dt.timedelta(seconds=30)
    async with sessionmaker() as session, session.begin():
        assert (
            await broadcasts.claim_progress(
                session, ["telegram"], now=NOW, lease=lease, every=every
            )
            == []
        )  # a draft has no progress
    await start(sessionmaker, broadcast_id, p.author)
    async with sessionmaker() as session, session.begin():
        [due] = await broadcasts.claim_progress(
            session, ["telegram"], now=NOW, lease=lease, every=every
        )
        assert (
            await broadcasts.claim_progress(session, ["zalo"], now=NOW, lease=lease, every=every)
            == []
        )
    assert (due.chat_id, due.message_id, due.progress.left) == ("100", None, 2)
    async with sessionmaker() as session, session.begin():
        # Leased: another process takes nothing.
        assert (
            await broadcasts.claim_progress(
                session, ["telegram"], now=NOW, lease=lease, every=every
            )
            == []
        )
        assert await broadcasts.record_progress(
            session, due, message_id="555", shown={"sent": 0}, now=NOW, reported=False
        )
    async with sessionmaker() as session, session.begin():
        # Shown just now: due again only after `every`.
        assert (
            await broadcasts.claim_progress(
                session, ["telegram"], now=NOW + dt.timedelta(seconds=1), lease=lease, every=every
            )
            == []
        )
        [again] = await broadcasts.claim_progress(
            session, ["telegram"], now=NOW + every, lease=lease, every=every
        )
    assert (again.message_id, again.shown) == ("555", {"sent": 0})
    # A late process whose lease was taken over records nothing.
    async with sessionmaker() as session, session.begin():
        assert not await broadcasts.record_progress(
            session, due, message_id="666", shown={}, now=NOW, reported=True
        )
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Broadcast)) == 1


async def test_a_broadcast_without_an_author_is_the_web_admins_and_no_persons(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    p = await province(sessionmaker)
    async with sessionmaker() as session, session.begin():
        made = await broadcasts.create_draft(
            session,
            author_id=None,
            scope_unit_id=None,
            text="Lịch nghỉ Tết",
            message={"lines": [{"key": "start.intro", "params": {}}], "buttons": []},
            now=NOW,
        )
        schools = made.id
    own = await draft(sessionmaker, p.author, Audience(AudienceKind.HEADS))
    async with sessionmaker() as session, session.begin():
        # A person (the chat) cannot take a draft without an author, nor the reverse.
        for broadcast_id, author in ((schools, p.author), (own, None)):
            with pytest.raises(BroadcastError) as refused:
                await broadcasts.edit_draft(session, broadcast_id, author, urgent=True)
            assert refused.value.why == "not_yours"
        assert [d.id for d in await broadcasts.drafts(session, None)] == [schools]
        assert [d.id for d in await broadcasts.drafts(session, p.author)] == [own]
        await broadcasts.edit_draft(
            session, schools, None, audience=Audience(AudienceKind.HEADS), urgent=True
        )
    async with sessionmaker() as session, session.begin():
        started = await broadcasts.start(
            session, schools, author_id=None, scope_unit_id=None, now=NOW, today=TODAY
        )
        assert (started.author_id, started.status, started.recipients) == (
            None,
            BroadcastStatus.SENDING,
            2,
        )
        assert broadcasts.manages(started, None, admin=True)
        # Only admins manage it: not a caller without a person who is no admin.
        assert not broadcasts.manages(started, None, admin=False)
        assert not broadcasts.manages(started, p.author, admin=False)
        assert await broadcasts.drafts(session, None) == []
    async with sessionmaker() as session, session.begin():
        assert await broadcasts.stop(session, schools, by_id=None, now=NOW) == 2
    async with sessionmaker() as session:
        stopped = await broadcasts.get(session, schools)
        assert stopped is not None
        assert (stopped.status, stopped.stopped_by_id) == (BroadcastStatus.STOPPED, None)
        # Paging through the started ones.
        latest = await broadcasts.recent(session, limit=1)
        older = await broadcasts.recent(session, limit=1, offset=1)
    assert [b.id for b in latest] == [schools]
    assert older == []
