"""The inbox: platform updates stored before they are acknowledged, handled from the store.

An update's life: RECEIVED (stored; the platform may now forget it) → HANDLED (answered in
the database, the rendered replies kept in `replies`, in the same unit of work as the
flow's changes) → ANSWERED (replies sent). A crash between HANDLED and ANSWERED resends
the replies once more; a crash before HANDLED handles the update again. An update that
keeps failing ends FAILED after MAX_ATTEMPTS, so its chat goes on.

A worker settles an update only while it holds the lease it claimed (the `token`, see
db/leases.py); otherwise `LeaseLost` is raised, to roll back the caller's unit of work.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.leases import LeaseLost, claim_next, held, lease_free
from db.models import InboundUpdate, InboxStatus
from db.session import upsert_insert

MAX_ATTEMPTS = 3
UNFINISHED = (InboxStatus.RECEIVED, InboxStatus.HANDLED)


async def store(
    session: AsyncSession, channel: str, update_key: str, chat_id: str, payload: dict[str, Any]
) -> bool:
    """Store one update; return False when the same update was stored before (a redelivery)."""
    result = await session.execute(
        upsert_insert(session, InboundUpdate)
        .values(
            channel=channel,
            update_key=update_key,
            chat_id=chat_id,
            payload=payload,
            status=InboxStatus.RECEIVED,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["channel", "update_key"])
        .returning(InboundUpdate.id)
    )
    return result.scalar() is not None


async def claim(
    session: AsyncSession, channel: str, *, now: dt.datetime, lease: dt.timedelta
) -> InboundUpdate | None:
    """Lease the oldest unfinished update of a chat that has no earlier unfinished one.

    An update is unfinished while RECEIVED (to handle) or HANDLED (replies to send); the
    caller looks at `status` to know which, and passes its `lease_until` as the token to
    what settles it. Taking only a chat's oldest unfinished update keeps each chat's order
    even with workers in several processes; a lease that expired (its worker crashed or is
    too slow) lets another worker take the update again.
    """
    earlier = aliased(InboundUpdate)
    pick = (
        select(InboundUpdate.id)
        .where(
            InboundUpdate.channel == channel,
            InboundUpdate.status.in_(UNFINISHED),
            lease_free(InboundUpdate, now),
            ~exists().where(
                earlier.channel == InboundUpdate.channel,
                earlier.chat_id == InboundUpdate.chat_id,
                earlier.id < InboundUpdate.id,
                earlier.status.in_(UNFINISHED),
            ),
        )
        .order_by(InboundUpdate.id)
        .limit(1)
    )
    row_id = await claim_next(session, InboundUpdate, pick, now=now, lease=lease)
    if row_id is None:
        return None
    stmt = select(InboundUpdate).where(InboundUpdate.id == row_id)
    return (await session.scalars(stmt.execution_options(populate_existing=True))).one()


async def _settle(
    session: AsyncSession,
    update_id: int,
    token: dt.datetime,
    statuses: tuple[InboxStatus, ...],
    values: dict[str, Any],
) -> None:
    """Update the row if still leased under `token` in one of `statuses`, else LeaseLost."""
    result = await session.execute(
        update(InboundUpdate)
        .where(held(InboundUpdate, update_id, token), InboundUpdate.status.in_(statuses))
        .values(**values)
        .returning(InboundUpdate.id)
    )
    if result.scalar() is None:
        raise LeaseLost(f"inbox row {update_id}")


async def mark_handled(
    session: AsyncSession,
    update_id: int,
    replies: list[dict[str, Any]],
    now: dt.datetime,
    *,
    token: dt.datetime,
) -> None:
    """Record that the update was answered in the database and what to send.

    `attempts` starts again at 0: from now on it counts failures to send, which have
    their own limit, apart from failures to handle.
    """
    values = {"status": InboxStatus.HANDLED, "replies": replies, "handled_at": now, "attempts": 0}
    await _settle(session, update_id, token, (InboxStatus.RECEIVED,), values)


async def renew(
    session: AsyncSession, update_id: int, *, token: dt.datetime, until: dt.datetime
) -> dt.datetime:
    """Extend the lease of a handled update to `until` (before sending); return the new token."""
    await _settle(session, update_id, token, (InboxStatus.HANDLED,), {"lease_until": until})
    return until


async def postpone(
    session: AsyncSession, update_id: int, *, token: dt.datetime, until: dt.datetime
) -> None:
    """Send a handled update's replies after `until` (Telegram asked to wait); no attempt."""
    await _settle(session, update_id, token, (InboxStatus.HANDLED,), {"lease_until": until})


async def mark_answered(session: AsyncSession, update_id: int, *, token: dt.datetime) -> None:
    """Record that the update's replies were sent and release it."""
    values = {"status": InboxStatus.ANSWERED, "lease_until": None}
    await _settle(session, update_id, token, (InboxStatus.HANDLED,), values)


async def record_failure(
    session: AsyncSession,
    update_id: int,
    error: str,
    *,
    token: dt.datetime,
    now: dt.datetime,
    retry_after: dt.timedelta,
    max_attempts: int = MAX_ATTEMPTS,
    replies: list[dict[str, Any]] | None = None,
) -> bool:
    """Count a failed attempt; retry after `retry_after`, or end FAILED. Return True if FAILED.

    `replies` (an apology) are kept on a FAILED update, for the record.
    """
    result = await session.execute(
        update(InboundUpdate)
        .where(held(InboundUpdate, update_id, token), InboundUpdate.status.in_(UNFINISHED))
        .values(
            attempts=InboundUpdate.attempts + 1,
            last_error=error[:1000],
            lease_until=now + retry_after,
        )
        .returning(InboundUpdate.attempts)
    )
    attempts = result.scalar()
    if attempts is None:
        raise LeaseLost(f"inbox row {update_id}")
    if attempts < max_attempts:
        return False
    # The UPDATE above holds the row (PostgreSQL) or the database (SQLite) until commit.
    values: dict[str, Any] = {"status": InboxStatus.FAILED, "lease_until": None}
    if replies is not None:
        values["replies"] = replies
    await session.execute(
        update(InboundUpdate).where(InboundUpdate.id == update_id).values(**values)
    )
    return True


async def purge_answered(session: AsyncSession, *, before: dt.datetime) -> int:
    """Delete answered updates received before `before`; return how many went.

    Telegram redelivers an unacknowledged update for at most a day, so a week of answered
    ids is plenty to recognise a redelivery; FAILED updates stay for inspection.
    """
    result = await session.execute(
        delete(InboundUpdate)
        .where(
            InboundUpdate.status == InboxStatus.ANSWERED,
            InboundUpdate.received_at < before,
        )
        .returning(InboundUpdate.id)
    )
    return len(result.all())
