"""Claim queued notices (outbox rows) for people reachable on one channel, and settle them.

A minimal delivery queue for the chat channels; the notification engine of a later issue
replaces it (with rate limits and a choice of channel per person).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.leases import claim_next, lease_free
from db.models import ChannelAccount, Conversation, OutboxMessage, OutboxStatus

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Notice:
    """A claimed outbox row: where to send it and in which language."""

    id: int
    external_id: str
    language: str | None
    payload: dict[str, Any]
    attempts: int


async def claim_notice(
    session: AsyncSession, channel: str, *, now: dt.datetime, lease: dt.timedelta
) -> Notice | None:
    """Lease the oldest due notice whose person has a reachable account on `channel`.

    Notices for people without such an account stay queued for another channel.
    """
    reachable = select(ChannelAccount.person_id).where(
        ChannelAccount.channel == channel, ChannelAccount.reachable.is_(True)
    )
    pick = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == OutboxStatus.QUEUED,
            OutboxMessage.due_at <= now,
            OutboxMessage.person_id.in_(reachable),
            lease_free(OutboxMessage, now),
        )
        .order_by(OutboxMessage.due_at, OutboxMessage.id)
        .limit(1)
    )
    row_id = await claim_next(session, OutboxMessage, pick, now=now, lease=lease)
    if row_id is None:
        return None
    stmt = (
        select(OutboxMessage, ChannelAccount.external_id, Conversation.language)
        .join(ChannelAccount, ChannelAccount.person_id == OutboxMessage.person_id)
        .outerjoin(
            Conversation,
            (Conversation.channel == ChannelAccount.channel)
            & (Conversation.chat_id == ChannelAccount.external_id),
        )
        .where(OutboxMessage.id == row_id, ChannelAccount.channel == channel)
    )
    row, external_id, language = (await session.execute(stmt)).one()
    return Notice(row.id, external_id, language, row.payload, row.attempts)


async def mark_sent(session: AsyncSession, notice_id: int, channel: str, now: dt.datetime) -> None:
    """Record that the notice was delivered on `channel`."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == notice_id)
        .values(status=OutboxStatus.SENT, channel=channel, sent_at=now, lease_until=None)
    )


async def mark_failed(session: AsyncSession, notice_id: int, channel: str, reason: str) -> None:
    """Record that the notice cannot be delivered (e.g. the person blocked the bot)."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == notice_id)
        .values(
            status=OutboxStatus.FAILED,
            channel=channel,
            last_error=reason[:1000],
            lease_until=None,
            attempts=OutboxMessage.attempts + 1,
        )
    )


async def retry_later(
    session: AsyncSession, notice_id: int, reason: str, *, now: dt.datetime, delay: dt.timedelta
) -> bool:
    """Count a failed attempt and retry after `delay`, or end FAILED; return True if FAILED."""
    row = await session.get(OutboxMessage, notice_id, populate_existing=True)
    if row is None:
        return True
    row.attempts += 1
    row.last_error = reason[:1000]
    if row.attempts >= MAX_ATTEMPTS:
        row.status = OutboxStatus.FAILED
        row.lease_until = None
        return True
    row.lease_until = now + delay
    return False
