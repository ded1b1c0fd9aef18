"""ZNS state shared by every process: the OA's tokens, today's ZNS budget, webhook events.

Tokens: a refresh token works once, so the row is locked (FOR UPDATE on PostgreSQL; on
SQLite a unit of work holds the write lock) while one process takes the refresh lease,
and the new pair is written back only where the row still holds the refresh token that
was used. Budget: a claim reserves ZNS sends under the budget row's lock, so the daily
guard holds across processes. Events: stored once by their key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    ChannelAccount,
    OutboxMessage,
    OutboxStatus,
    Person,
    ZnsBudget,
    ZnsEvent,
    ZnsToken,
)
from db.session import upsert_insert

CHANNEL = "zns"
# How the reasons of holds for tokens begin (bot/channels/zns.py writes them).
AUTH_HOLD = "zns auth:"


def _pg(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def seed_hash(refresh_token: str) -> str:
    """Return the hash a configured refresh token is remembered by (never the token)."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def tracking_id(idempotency_key: str) -> str:
    """Return the ZNS tracking id of an outbox row: the same for every attempt, 32 characters.

    A function of the idempotency key, so every process and every retry sends a notice
    with the same id, within ZNS's 48-character limit whatever the key's length.
    """
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def zalo_phone(phone: str) -> str | None:
    """Return a roster phone (0XXXXXXXXX) in ZNS's form (84XXXXXXXXX), or None.

    The roster holds phones as ten digits (db/phone.py), so `takes_zns` can say the same
    in SQL by their shape alone.
    """
    if len(phone) == 10 and phone.startswith("0") and phone.isdigit():
        return "84" + phone[1:]
    return None


# Who ZNS reaches: the one rule ------------------------------------------------------------


def takes_zns() -> ColumnElement[bool]:
    """Return the condition on Person that ZNS can be sent to their roster phone."""
    return Person.phone.like("0_________")


def chat_reachable() -> ColumnElement[bool]:
    """Return the condition on Person that the bot can reach one of their chat accounts."""
    return exists().where(ChannelAccount.person_id == Person.id, ChannelAccount.reachable.is_(True))


def goes_by_zns() -> ColumnElement[bool]:
    """Return the condition on Person that their notices go by ZNS (kinds with a template).

    A person with no chat account the bot can reach (never linked, or every account
    blocked the bot) and a phone ZNS takes. The delivery claim routes notices by this
    rule (db/outbox.py), broadcasts count and queue by it (db/broadcasts.py), and what
    unit heads are told says it (handlers/zns_reach.py).
    """
    return ~chat_reachable() & takes_zns()


async def reached_by_zns(session: AsyncSession, person_id: int) -> bool:
    """Return whether the person's notices of kinds with a ZNS template go by ZNS."""
    found = await session.scalar(select(Person.id).where(Person.id == person_id, goes_by_zns()))
    return found is not None


# Tokens ---------------------------------------------------------------------------------


async def locked_token(session: AsyncSession, app_id: str) -> ZnsToken | None:
    """Return the app's token row, locked for this unit of work."""
    stmt = select(ZnsToken).where(ZnsToken.app_id == app_id)
    if _pg(session):
        stmt = stmt.with_for_update()
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalar()


async def seed(
    session: AsyncSession, app_id: str, configured: str | None, *, now: dt.datetime
) -> ZnsToken | None:
    """Return the locked token row, created or replaced from the configured refresh token.

    A configured token that did not seed the row yet is a new authorization: it replaces
    the stored refresh token. The one that seeded it is long used: it changes nothing.
    """
    row = await locked_token(session, app_id)
    if configured is None:
        return row
    digest = seed_hash(configured)
    if row is None:
        await session.execute(
            upsert_insert(session, ZnsToken)
            .values(app_id=app_id, refresh_token=configured, seed_hash=digest, updated_at=now)
            .on_conflict_do_nothing(index_elements=["app_id"])
        )
        return await locked_token(session, app_id)
    if row.seed_hash != digest:
        _authorize(row, configured, now)
        row.seed_hash = digest
        await session.flush()
    return row


def _authorize(row: ZnsToken, refresh_token: str, now: dt.datetime) -> None:
    row.refresh_token = refresh_token
    row.auth_error = None
    row.auth_error_at = None
    row.refresh_lease_until = None
    row.updated_at = now


async def set_refresh_token(
    session: AsyncSession,
    app_id: str,
    refresh_token: str,
    *,
    configured: str | None,
    now: dt.datetime,
) -> None:
    """Store a refresh token from a new authorization (an admin's), ending a refusal.

    The configured token is remembered as seeded, so that a restart does not put it back.
    """
    row = await locked_token(session, app_id)
    digest = seed_hash(configured) if configured is not None else None
    if row is None:
        session.add(
            ZnsToken(app_id=app_id, refresh_token=refresh_token, seed_hash=digest, updated_at=now)
        )
    else:
        _authorize(row, refresh_token, now)
        row.seed_hash = digest or row.seed_hash
    await session.flush()
    await release_token_holds(session, app_id, now=now)


async def release_token_holds(session: AsyncSession, app_id: str, *, now: dt.datetime) -> None:
    """End a hold for refused tokens: the notices that waited for them may go now."""
    budget = await session.get(ZnsBudget, app_id, populate_existing=True)
    if budget is not None and (budget.held_reason or "").startswith(AUTH_HOLD):
        budget.held_until = None
        budget.held_reason = None
    await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.QUEUED,
            OutboxMessage.lease_until > now,
            OutboxMessage.last_error.like(AUTH_HOLD + "%"),
        )
        .values(lease_until=None)
    )


async def store_pair(
    session: AsyncSession,
    app_id: str,
    *,
    used: str,
    access_token: str,
    refresh_token: str,
    expires_at: dt.datetime,
    now: dt.datetime,
) -> bool:
    """Store a refresh's new pair where the row still holds the refresh token used.

    Return False when the row moved on meanwhile (an admin stored a new authorization).
    """
    result = await session.execute(
        update(ZnsToken)
        .where(ZnsToken.app_id == app_id, ZnsToken.refresh_token == used)
        .values(
            access_token=access_token,
            access_expires_at=expires_at,
            refresh_token=refresh_token,
            refreshed_at=now,
            refresh_lease_until=None,
            auth_error=None,
            auth_error_at=None,
            updated_at=now,
        )
        .returning(ZnsToken.app_id)
    )
    return result.scalar() is not None


async def end_refresh(
    session: AsyncSession, app_id: str, *, used: str, refused: str | None, now: dt.datetime
) -> bool:
    """Release a refresh lease that got no new pair; record Zalo's refusal if it refused.

    Return False if the row moved on meanwhile (someone stored a newer token).
    """
    values: dict[str, Any] = {"refresh_lease_until": None}
    if refused is not None:
        values |= {"auth_error": refused[:500], "auth_error_at": now}
    result = await session.execute(
        update(ZnsToken)
        .where(ZnsToken.app_id == app_id, ZnsToken.refresh_token == used)
        .values(**values)
        .returning(ZnsToken.app_id)
    )
    return result.scalar() is not None


async def expire_access_token(session: AsyncSession, app_id: str, token: str) -> None:
    """Forget an access token Zalo refused, unless another has replaced it already."""
    await session.execute(
        update(ZnsToken)
        .where(ZnsToken.app_id == app_id, ZnsToken.access_token == token)
        .values(access_expires_at=None)
    )


async def token_state(session: AsyncSession, app_id: str) -> ZnsToken | None:
    """Return the token row as it is (for status pages; never print its tokens)."""
    return await session.get(ZnsToken, app_id, populate_existing=True)


# Budget ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Guard:
    """The school's limits on ZNS sends of a day."""

    # At most this many a day (0: Zalo's quota only).
    daily_limit: int = 0
    # Of Zalo's remaining quota, this many are kept for urgent notices.
    reserve: int = 0


@dataclass(frozen=True)
class Granted:
    """What a claim may send by ZNS now; why not the rest."""

    urgent: int
    other: int
    # Why notices were held back (None: everything asked for was granted).
    reason: str | None = None
    until: dt.datetime | None = None


async def locked_budget(session: AsyncSession, app_id: str, *, day: dt.date) -> ZnsBudget:
    """Return the app's budget row of `day`, locked; a new day starts from zero."""
    await session.execute(
        upsert_insert(session, ZnsBudget)
        .values(app_id=app_id, day=day, claimed=0, remaining_claimed=0)
        .on_conflict_do_nothing(index_elements=["app_id"])
    )
    stmt = select(ZnsBudget).where(ZnsBudget.app_id == app_id)
    if _pg(session):
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one()
    if row.day != day:
        # Zalo's quota renews every day: what was left yesterday says nothing of today.
        row.day = day
        row.claimed = 0
        row.remaining = None
        row.remaining_claimed = 0
        row.reported_at = None
    return row


async def reserve(
    session: AsyncSession,
    app_id: str,
    *,
    urgent: int,
    other: int,
    guard: Guard,
    day: dt.date,
    day_ends: dt.datetime,
    now: dt.datetime,
) -> Granted:
    """Reserve ZNS sends for a claim: urgent notices first, within the day's guard."""
    row = await locked_budget(session, app_id, day=day)
    if row.held_until is not None and row.held_until > now:
        return Granted(0, 0, row.held_reason or "held", row.held_until)
    room_urgent = room_other = urgent + other
    reasons: list[str] = []
    if guard.daily_limit:
        left = max(0, guard.daily_limit - row.claimed)
        room_urgent = room_other = min(room_urgent, left)
        reasons.append(f"the daily limit of {guard.daily_limit} ZNS messages")
    if row.remaining is not None:
        left = row.remaining - (row.claimed - row.remaining_claimed)
        room_urgent = min(room_urgent, max(0, left))
        room_other = min(room_other, max(0, left - guard.reserve))
        reasons.append(
            f"Zalo's daily ZNS quota ({max(0, left)} of {row.daily_quota or '?'} left, "
            f"{guard.reserve} kept for urgent notices)"
        )
    granted_urgent = min(urgent, room_urgent)
    granted_other = min(other, room_other, room_urgent - granted_urgent)
    row.claimed += granted_urgent + granted_other
    await session.flush()
    if granted_urgent == urgent and granted_other == other:
        return Granted(granted_urgent, granted_other)
    return Granted(granted_urgent, granted_other, "zns quota: " + " and ".join(reasons), day_ends)


async def record_quota(
    session: AsyncSession,
    app_id: str,
    *,
    daily: int | None,
    remaining: int | None,
    day: dt.date,
    now: dt.datetime,
) -> None:
    """Record the quota Zalo reported with an accepted message."""
    if remaining is None:
        return
    row = await locked_budget(session, app_id, day=day)
    row.remaining = remaining
    row.daily_quota = daily if daily is not None else row.daily_quota
    row.remaining_claimed = row.claimed
    row.reported_at = now
    await session.flush()


async def unclaim(session: AsyncSession, app_id: str, *, day: dt.date) -> None:
    """Give back a reserved send that Zalo refused (it was not charged)."""
    row = await locked_budget(session, app_id, day=day)
    row.claimed = max(0, row.claimed - 1)
    await session.flush()


async def hold(
    session: AsyncSession,
    app_id: str,
    *,
    until: dt.datetime,
    reason: str,
    day: dt.date,
    used_up: bool = False,
) -> None:
    """Send nothing by ZNS before `until`, for `reason`; `used_up`: no quota is left today."""
    row = await locked_budget(session, app_id, day=day)
    row.held_until = max(until, row.held_until) if row.held_until else until
    row.held_reason = reason[:300]
    if used_up:
        row.remaining = 0
        row.remaining_claimed = row.claimed
    await session.flush()


async def budget_state(session: AsyncSession, app_id: str) -> ZnsBudget | None:
    """Return the budget row as it is."""
    return await session.get(ZnsBudget, app_id, populate_existing=True)


# Spend ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spend:
    """ZNS messages accepted by Zalo (paid) and confirmed delivered, since a moment."""

    sent: int
    delivered: int


async def spend(session: AsyncSession, since: dt.datetime) -> Spend:
    """Return how many ZNS messages were accepted and delivered since `since`."""
    row = (
        await session.execute(
            select(func.count(), func.count(OutboxMessage.delivered_at)).where(
                OutboxMessage.channel == CHANNEL,
                OutboxMessage.status == OutboxStatus.SENT,
                OutboxMessage.sent_at >= since,
            )
        )
    ).one()
    return Spend(int(row[0]), int(row[1]))


async def held_notices(session: AsyncSession, now: dt.datetime) -> int:
    """Return how many queued notices wait for the ZNS quota or tokens."""
    count = await session.scalar(
        select(func.count()).where(
            OutboxMessage.status == OutboxStatus.QUEUED,
            OutboxMessage.lease_until > now,
            OutboxMessage.last_error.like("zns%"),
        )
    )
    return int(count or 0)


# Receipts and events --------------------------------------------------------------------


async def mark_delivered(
    session: AsyncSession, *, tracking: str | None, msg_id: str | None, at: dt.datetime
) -> int | None:
    """Record that a ZNS reached the phone; return the outbox row's id, if one matches.

    Matched by tracking id (set when the row was claimed, so a receipt that overtakes
    the send's own bookkeeping is kept), else by Zalo's message id.
    """
    conditions = []
    if tracking:
        conditions.append(OutboxMessage.tracking_id == tracking)
    if msg_id:
        conditions.append(OutboxMessage.provider_message_id == msg_id)
    if not conditions:
        return None
    row_id = await session.scalar(
        select(OutboxMessage.id).where(or_(*conditions)).order_by(OutboxMessage.id).limit(1)
    )
    if row_id is None:
        return None
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id, OutboxMessage.delivered_at.is_(None))
        .values(delivered_at=at)
    )
    return int(row_id)


async def store_event(
    session: AsyncSession,
    *,
    key: str,
    name: str,
    user_id: str | None,
    msg_id: str | None,
    payload: dict[str, Any],
    reply_status: str | None,
    now: dt.datetime,
) -> int | None:
    """Store an event once; return its id, or None if it was stored before (Zalo's retry)."""
    inserted = await session.scalar(
        upsert_insert(session, ZnsEvent)
        .values(
            event_key=key[:200],
            event_name=name[:64],
            user_id=user_id,
            msg_id=msg_id,
            payload=payload,
            received_at=now,
            reply_status=reply_status,
            reply_attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["event_key"])
        .returning(ZnsEvent.id)
    )
    return None if inserted is None else int(inserted)


async def replied_lately(
    session: AsyncSession, user_id: str, *, since: dt.datetime, not_id: int
) -> bool:
    """Return whether the OA user was sent the pointer to the bot since `since`."""
    found = await session.scalar(
        select(ZnsEvent.id)
        .where(
            ZnsEvent.user_id == user_id,
            ZnsEvent.id != not_id,
            ZnsEvent.reply_status == "sent",
            ZnsEvent.replied_at >= since,
        )
        .limit(1)
    )
    return found is not None


async def claim_reply(
    session: AsyncSession, *, now: dt.datetime, lease: dt.timedelta
) -> ZnsEvent | None:
    """Lease the oldest text written to the OA that still waits for its answer."""
    stmt = (
        select(ZnsEvent)
        .where(
            ZnsEvent.reply_status == "pending",
            or_(ZnsEvent.lease_until.is_(None), ZnsEvent.lease_until < now),
        )
        .order_by(ZnsEvent.id)
        .limit(1)
    )
    if _pg(session):
        stmt = stmt.with_for_update(skip_locked=True)
    event = (await session.execute(stmt.execution_options(populate_existing=True))).scalar()
    if event is None:
        return None
    event.lease_until = now + lease
    await session.flush()
    return event


async def settle_reply(
    session: AsyncSession,
    event_id: int,
    *,
    status: str | None,
    now: dt.datetime,
    retry_at: dt.datetime | None = None,
) -> None:
    """Record what became of an answer: sent, skipped, failed, or (None) to try again."""
    values: dict[str, Any] = {"reply_attempts": ZnsEvent.reply_attempts + 1}
    if status is None:
        values["lease_until"] = retry_at
    else:
        values |= {"reply_status": status, "lease_until": None}
        if status == "sent":
            values["replied_at"] = now
    await session.execute(update(ZnsEvent).where(ZnsEvent.id == event_id).values(**values))


async def event_counts(session: AsyncSession, since: dt.datetime) -> dict[str, int]:
    """Return how many events of each name the OA's webhook received since `since`."""
    rows = await session.execute(
        select(ZnsEvent.event_name, func.count())
        .where(ZnsEvent.received_at >= since)
        .group_by(ZnsEvent.event_name)
    )
    return {str(name): int(count) for name, count in rows.all()}


@dataclass(frozen=True)
class SentNotice:
    """A notice that went (or tried to go) by ZNS, for the web admin."""

    id: int
    kind: str
    person_name: str | None
    status: OutboxStatus
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    reason: str | None


async def recent_notices(session: AsyncSession, limit: int = 20) -> list[SentNotice]:
    """Return the latest notices sent or tried by ZNS (or waiting for it), newest first."""
    rows = await session.execute(
        select(
            OutboxMessage.id,
            OutboxMessage.kind,
            Person.full_name,
            OutboxMessage.status,
            OutboxMessage.sent_at,
            OutboxMessage.delivered_at,
            OutboxMessage.last_error,
        )
        .outerjoin(Person, Person.id == OutboxMessage.person_id)
        .where(
            or_(
                OutboxMessage.channel == CHANNEL,
                OutboxMessage.tracking_id.is_not(None),
                OutboxMessage.last_error.like("zns%"),
            )
        )
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    )
    return [SentNotice(*row) for row in rows.all()]


async def recent_events(session: AsyncSession, limit: int = 20) -> list[ZnsEvent]:
    """Return the latest events the OA's webhook received, newest first."""
    return list(
        (await session.scalars(select(ZnsEvent).order_by(ZnsEvent.id.desc()).limit(limit))).all()
    )
