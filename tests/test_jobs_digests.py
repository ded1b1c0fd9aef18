"""Daily reports: a unit head's digest only when something changed in their units, and the
admins' summary; each once a day at its configured local time, a missed day run late once."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import OutboxMessage, OutboxStatus, Registration, RegistrationStatus
from tests.factories import add_class, add_registration
from tests.jobs_support import SETTINGS, local, queued, run_job
from tests.test_jobs_unit_alerts import province

START = dt.date(2026, 12, 20)


async def registered(
    sessionmaker: async_sessionmaker[AsyncSession],
    person_id: int,
    class_id: int,
    status: RegistrationStatus,
    *,
    created: dt.datetime,
    updated: dt.datetime | None = None,
) -> None:
    async with sessionmaker() as session, session.begin():
        session.add(
            Registration(
                person_id=person_id,
                class_id=class_id,
                status=status,
                created_at=created,
                updated_at=updated or created,
            )
        )


async def test_heads_get_a_digest_of_their_units_only_when_something_changed(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    world = await province(sessionmaker)
    people = world.people
    async with sessionmaker() as session, session.begin():
        klass = await add_class(session, "K9", "Bồi dưỡng kỹ năng", start=START)
    day = local(2026, 12, 1, 17)
    await registered(
        sessionmaker,
        people["learner"].id,
        klass.id,
        RegistrationStatus.CONFIRMED,
        created=day - dt.timedelta(hours=3),
    )
    await registered(
        sessionmaker,
        people["villager"].id,
        klass.id,
        RegistrationStatus.CANCELLED,
        created=day - dt.timedelta(days=3),
        updated=day - dt.timedelta(hours=1),
    )
    # Daily at 17:00: not before.
    assert not await run_job(sessionmaker, "head_digest", day - dt.timedelta(minutes=1))
    assert await run_job(sessionmaker, "head_digest", day)
    digests = await queued(sessionmaker, kind="unit.digest")
    # The province's head sees every unit below; the other district saw no change.
    assert sorted(q.row.person_id for q in digests) == sorted(
        [people["top_head"].id, people["head"].id]
    )
    district = next(q for q in digests if q.row.person_id == people["head"].id)
    text = district.text()
    assert "Tình hình đăng ký ngày 01/12/2026 — Huyện ủy Yên Thành" in text
    assert "K9 «Bồi dưỡng kỹ năng» (20/12/2026): 1 đăng ký mới, 1 huỷ hoặc bị từ chối" in text
    assert "hiện có 1 đã xác nhận, 0 chờ duyệt, 0 chờ chỗ" in text
    assert "1 new, 1 cancelled or rejected" in district.text("en")
    assert district.buttons == ["ul:1"]
    # Nothing changed by the next day: no digest.
    assert await run_job(sessionmaker, "head_digest", day + dt.timedelta(days=1))
    assert len(await queued(sessionmaker, kind="unit.digest")) == 2
    # Down at 17:00 on the third day: the digest goes at 20:00, covering since the last.
    await registered(
        sessionmaker,
        people["head"].id,
        klass.id,
        RegistrationStatus.PENDING_APPROVAL,
        created=day + dt.timedelta(days=1, hours=1),
    )
    late = day + dt.timedelta(days=2, hours=3)
    assert await run_job(sessionmaker, "head_digest", late)
    assert not await run_job(sessionmaker, "head_digest", late + dt.timedelta(hours=1))
    third = [q for q in await queued(sessionmaker, kind="unit.digest")][2:]
    assert len(third) == 2
    assert (
        "1 đăng ký mới, 0 huỷ hoặc bị từ chối; hiện có 1 đã xác nhận, 1 chờ duyệt"
        in third[0].text()
    )


async def test_admins_get_a_daily_summary_with_full_classes_and_failures(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    world = await province(sessionmaker)
    people = world.people
    settings = dataclasses.replace(
        SETTINGS, chat=dataclasses.replace(SETTINGS.chat, admins=(people["other_head"].phone,))
    )
    at = local(2026, 12, 2, 7, 30)
    async with sessionmaker() as session, session.begin():
        people["top_head"].is_admin = True
        session.add(people["top_head"])
        full = await add_class(session, "K20", "Lớp gần đầy", start=START, capacity=2)
        await add_class(session, "K21", "Lớp còn chỗ", start=START, capacity=30)
        await add_registration(session, people["learner"], full)
        await add_registration(
            session, people["villager"], full, RegistrationStatus.PENDING_APPROVAL
        )
        await add_registration(session, people["head"], full, RegistrationStatus.WAITLISTED)
        await session.execute(update(Registration).values(created_at=at - dt.timedelta(hours=5)))
        for number, (status, error) in enumerate(
            [
                (OutboxStatus.SENT, None),
                (OutboxStatus.FAILED, "unreachable: no reachable account"),
                (OutboxStatus.FAILED, "unreachable: no reachable account"),
                (OutboxStatus.QUEUED, None),
            ]
        ):
            session.add(
                OutboxMessage(
                    idempotency_key=f"t{number}",
                    person_id=people["learner"].id,
                    kind="test",
                    payload={},
                    status=status,
                    last_error=error,
                    due_at=at - dt.timedelta(hours=2),
                )
            )
    assert not await run_job(sessionmaker, "admin_summary", at - dt.timedelta(minutes=1), settings)
    assert await run_job(sessionmaker, "admin_summary", at, settings)
    summaries = await queued(sessionmaker, kind="admin.summary")
    assert sorted(q.row.person_id for q in summaries) == sorted(
        [people["top_head"].id, people["other_head"].id]
    )
    text = summaries[0].text()
    assert "Báo cáo ngày 02/12/2026" in text
    assert (
        "Đăng ký mới: 3 (1 đã xác nhận, 1 chờ duyệt, 1 chờ chỗ, 0 đã huỷ hoặc bị từ chối)" in text
    )
    assert "K20 «Lớp gần đầy» (20/12/2026): 2/2 chỗ, 1 người chờ" in text
    assert "K21" not in text
    assert "Tin nhắn tự động: 1 đã gửi, 2 không gửi được, 1 đang chờ gửi" in text
    assert "2 × unreachable: no reachable account" in text
