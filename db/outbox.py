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

from db.leases import LeaseLost, claim_next, held, lease_free
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
    # The claim's lease_until: the row is settled only while it is still this (leases.py).
    token: dt.datetime


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
    row, external_id, language = (
        await session.execute(stmt.execution_options(populate_existing=True))
    ).one()
    return Notice(row.id, external_id, language, row.payload, row.attempts, now + lease)


async def _settle(session: AsyncSession, notice: Notice, values: dict[str, Any]) -> None:
    """Update the notice if still queued under its claim's lease, else raise LeaseLost."""
    result = await session.execute(
        update(OutboxMessage)
        .where(
            held(OutboxMessage, notice.id, notice.token),
            OutboxMessage.status == OutboxStatus.QUEUED,
        )
        .values(**values)
        .returning(OutboxMessage.id)
    )
    if result.scalar() is None:
        raise LeaseLost(f"outbox row {notice.id}")


async def mark_sent(session: AsyncSession, notice: Notice, channel: str, now: dt.datetime) -> None:
    """Record that the notice was delivered on `channel`."""
    values = {"status": OutboxStatus.SENT, "channel": channel, "sent_at": now, "lease_until": None}
    await _settle(session, notice, values)


async def mark_failed(session: AsyncSession, notice: Notice, channel: str, reason: str) -> None:
    """Record that the notice cannot be delivered (e.g. the person blocked the bot)."""
    values = {
        "status": OutboxStatus.FAILED,
        "channel": channel,
        "last_error": reason[:1000],
        "lease_until": None,
        "attempts": OutboxMessage.attempts + 1,
    }
    await _settle(session, notice, values)


async def postpone(session: AsyncSession, notice: Notice, *, until: dt.datetime) -> None:
    """Send the notice after `until` (Telegram asked to wait): no attempt is counted."""
    await _settle(session, notice, {"lease_until": until})


async def retry_later(
    session: AsyncSession, notice: Notice, reason: str, *, now: dt.datetime, delay: dt.timedelta
) -> bool:
    """Count a failed attempt and retry after `delay`, or end FAILED; return True if FAILED."""
    if notice.attempts + 1 >= MAX_ATTEMPTS:
        values: dict[str, Any] = {"status": OutboxStatus.FAILED, "lease_until": None}
    else:
        values = {"lease_until": now + delay}
    values |= {"attempts": OutboxMessage.attempts + 1, "last_error": reason[:1000]}
    await _settle(session, notice, values)
    return notice.attempts + 1 >= MAX_ATTEMPTS
