"""The offer sweep ends lapsed offers, passes the seat on and queues both notices once."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import registrations as regs
from db.models import OutboxMessage, Person
from handlers.choices import render_numbered
from handlers.notices import decode_reply
from handlers.types import ChatSettings
from jobs.offers import sweep_offers
from tests.factories import NOW, TODAY, add_class, add_person, add_unit

SETTINGS = ChatSettings()


async def test_sweep_passes_a_lapsed_offer_on_and_tells_both(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U", "Sở Nội vụ")
        klass = await add_class(
            session, "K7", "Kỹ năng soạn thảo", start=TODAY + dt.timedelta(days=20), capacity=1
        )
        people = [await add_person(session, f"091200000{n}", f"Người {n}", unit) for n in range(3)]
    ids = []
    for person in people:
        async with sessionmaker() as session, session.begin():
            fresh = await session.get(Person, person.id)
            assert fresh is not None
            result = await regs.register(
                session, fresh, klass.id, today=TODAY, now=NOW, zone=SETTINGS.zone
            )
            assert isinstance(result, regs.Registered)
            ids.append(result.registration.id)
    async with sessionmaker() as session, session.begin():
        await regs.cancel(
            session, ids[0], people[0].id, now=NOW, zone=SETTINGS.zone, window=SETTINGS.offer_window
        )

    async def sweep(now: dt.datetime) -> int:
        async with sessionmaker() as session, session.begin():
            return await sweep_offers(session, now, SETTINGS)

    assert await sweep(NOW + dt.timedelta(hours=23)) == 0
    later = NOW + dt.timedelta(hours=24)
    assert await sweep(later) == 1
    assert await sweep(later) == 0

    async with sessionmaker() as session:
        rows = list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    assert [(r.person_id, r.kind) for r in rows] == [
        (people[1].id, "registration.offer_lapsed"),
        (people[2].id, "registration.offered"),
    ]
    lapsed, offered = (decode_reply(r.payload["reply"]) for r in rows)
    assert "đã hết hạn xác nhận" in render_numbered([lapsed], "vi")[0]
    text = render_numbered([offered], "vi")[0]
    # Offered at 01:00 local on 2 Dec, held 24 hours.
    assert "Lớp K7 «Kỹ năng soạn thảo»" in text
    assert "trước 01:00 ngày 03/12/2026" in text
    assert [b.data for row in offered.buttons for b in row] == [f"oa:{ids[2]}", f"od:{ids[2]}"]
