"""Answered updates are kept a week to recognise redeliveries, then deleted; failures stay."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import inbox
from db.models import InboundUpdate, InboxStatus
from tests.factories import NOW


async def test_purge_deletes_old_answered_updates_only(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    week_ago = NOW - dt.timedelta(days=7)
    rows = [
        ("1", InboxStatus.ANSWERED, week_ago - dt.timedelta(seconds=1)),  # goes
        ("2", InboxStatus.ANSWERED, week_ago + dt.timedelta(seconds=1)),
        ("3", InboxStatus.FAILED, week_ago - dt.timedelta(days=30)),
        ("4", InboxStatus.RECEIVED, week_ago - dt.timedelta(days=30)),
    ]
    async with sessionmaker() as session, session.begin():
        for key, status, received_at in rows:
            assert await inbox.store(session, "telegram", key, "111", {"update_id": int(key)})
            await session.execute(
                update(InboundUpdate)
                .where(InboundUpdate.update_key == key)
                .values(status=status, received_at=received_at)
            )
    async with sessionmaker() as session, session.begin():
        assert await inbox.purge_answered(session, before=week_ago) == 1
    async with sessionmaker() as session:
        kept = list(
            await session.scalars(select(InboundUpdate.update_key).order_by(InboundUpdate.id))
        )
    assert kept == ["2", "3", "4"]
