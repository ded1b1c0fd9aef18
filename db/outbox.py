"""The outbox as a work queue: claim due notices in batches with send slots, and settle them.

Rate limits hold across processes because they live in the database:
- each channel's global pace is one `delivery_pace` row: a claim reserves as many
  consecutive send slots as it took notices, under that row's lock, starting when it got
  the lock; a channel paused far ahead (a long 429) is not claimed for;
- the per-chat pace is the recipient's account `next_send_at`: a claim takes at most one
  notice per person, only when none of their accounts is still paced, and moves it on.

Claims lease the rows (`lease_until` = slot + lease); a crash leaves the lease to run out
and the row is claimed again: a notice sent just before the crash may be sent once more,
never lost. Rows are settled only under the claim's token (db/leases.py).

How a claim is atomic:
- PostgreSQL: the candidates are locked FOR UPDATE SKIP LOCKED, so concurrent claimers
  never take the same row and never wait for each other on it; the accounts they pace
  are locked in id order and the pace row last, so claimers cannot deadlock
  (tests/test_delivery_outbox.py runs eight at once).
- SQLite: SQLAlchemy drops FOR UPDATE there without a word. Rather than one
  `UPDATE … RETURNING` per claim, every unit of work holds the database's write lock
  from its BEGIN (`BEGIN IMMEDIATE`, db/session.py), so the claim's reads and writes are
  one atomic step against every other process: a claim is several statements (the
  candidates, the accounts to pace, the pace row) that no single UPDATE could express,
  and the same lock already serialises every other unit of work on SQLite.
  tests/test_delivery_processes.py proves it with two OS processes claiming from one
  file (with the driver's own deferred BEGIN instead, they take the same rows).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, exists, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.leases import LeaseLost, held, lease_free
from db.models import (
    Broadcast,
    ChannelAccount,
    Conversation,
    DeliveryPace,
    OutboxMessage,
    OutboxStatus,
    Person,
    UTCDateTime,
)
from db.session import upsert_insert

# A 429 stretches the channel's send interval by this factor (up to MAX_SLOWDOWN); each
# later claim eases it back by RECOVERY until the configured rate holds again.
SLOWDOWN_FACTOR = 1.5
MAX_SLOWDOWN = 8.0
RECOVERY = 0.9
# Rows looked at per claim, as a multiple of the batch: some belong to paced chats.
SCAN_FACTOR = 4


@dataclass(frozen=True)
class Notice:
    """A claimed outbox row: where, when and in which language to send it."""

    id: int
    person_id: int
    kind: str
    channel: str
    account_id: int
    external_id: str
    language: str | None
    payload: dict[str, Any]
    attempts: int
    # The send slot reserved for it under the channel's global pace.
    slot: dt.datetime
    # The claim's lease_until: the row is settled only while it is still this (leases.py).
    token: dt.datetime


@dataclass(frozen=True)
class Pace:
    """How a claim paces what it takes."""

    # Seconds between two sends of one channel, all processes together.
    interval: dict[str, float]
    # Seconds between two notices to one person.
    per_chat: float
    lease: dt.timedelta
    # A channel whose next free slot is further ahead than this (a long 429's pause) is
    # not claimed for: its notices stay queued rather than leased to a sleeping worker.
    ahead: dt.timedelta = dt.timedelta(seconds=10)


@dataclass
class Claim:
    """What one claim did: the notices to send and the rows it settled on the way."""

    notices: list[Notice]
    skipped: int = 0
    unreachable: int = 0
    # When the first channel held by its pace, with notices due for it, may be claimed
    # for again (None: none was held).
    held_until: dt.datetime | None = None


@dataclass(frozen=True)
class _Account:
    id: int
    person_id: int
    channel: str
    external_id: str
    language: str | None
    last_seen_at: dt.datetime | None
    next_send_at: dt.datetime | None


def _due(now: dt.datetime, quiet: bool, channels: Sequence[str]) -> list[Any]:
    """Return the conditions of a notice that a worker serving `channels` may take now.

    A notice whose person is reachable only on other channels is left for a worker that
    serves one of them; one whose person is reachable nowhere is taken, to be failed.
    """
    conditions: list[Any] = [
        OutboxMessage.status == OutboxStatus.QUEUED,
        OutboxMessage.due_at <= now,
        lease_free(OutboxMessage, now),
        _reachable(channels) | ~_reachable(None),
    ]
    if quiet:
        conditions.append(OutboxMessage.urgent.is_(True))
    return conditions


def _reachable(channels: Sequence[str] | None) -> Any:
    """Return the condition that a notice's person has a reachable account on `channels`.

    None: on any channel.
    """
    # An alias, so that it correlates with the notice even in a query of accounts.
    account = aliased(ChannelAccount)
    condition = exists().where(
        account.person_id == OutboxMessage.person_id, account.reachable.is_(True)
    )
    if channels is not None:
        condition = condition.where(account.channel.in_(channels))
    return condition


def _person_paced(now: dt.datetime) -> Any:
    """Return the condition that a notice's person was written to less than a pace ago."""
    return exists().where(
        ChannelAccount.person_id == OutboxMessage.person_id,
        ChannelAccount.next_send_at > now,
    )


def _candidates(now: dt.datetime, quiet: bool, channels: Sequence[str], limit: int) -> Select[Any]:
    # A broadcast's thousands of notices go after the personal ones of the same urgency,
    # so a confirmation or a reminder does not wait for the whole broadcast.
    return (
        select(
            OutboxMessage.id,
            OutboxMessage.person_id,
            OutboxMessage.kind,
            OutboxMessage.payload,
            OutboxMessage.attempts,
            OutboxMessage.expires_at,
            OutboxMessage.broadcast_id,
        )
        .where(*_due(now, quiet, channels), ~_person_paced(now))
        .order_by(
            OutboxMessage.urgent.desc(),
            OutboxMessage.broadcast_id.is_not(None),
            OutboxMessage.due_at,
            OutboxMessage.id,
        )
        .limit(limit)
    )


async def _payloads(session: AsyncSession, rows: Sequence[Any]) -> dict[int, dict[str, Any]]:
    """Return each row's payload; a broadcast's notices carry their broadcast's message."""
    ids = {row.broadcast_id for row in rows if row.broadcast_id is not None}
    messages: dict[int, dict[str, Any]] = {}
    if ids:
        found = await session.execute(
            select(Broadcast.id, Broadcast.message).where(Broadcast.id.in_(sorted(ids)))
        )
        messages = {broadcast_id: message for broadcast_id, message in found.all()}
    return {
        row.id: {**row.payload, "reply": messages[row.broadcast_id]}
        if row.broadcast_id in messages
        else row.payload
        for row in rows
    }


async def _accounts(
    session: AsyncSession, person_ids: set[int], channels: Sequence[str], *, pg: bool
) -> dict[int, _Account]:
    """Lock and return, per person, the reachable account their notices go to.

    The person's chosen channel if it is reachable, else the one they wrote from last.
    Locks are taken in id order, so two claims never deadlock; one that waited for
    another sees the `next_send_at` that claim set.
    """
    stmt = (
        select(
            ChannelAccount.id,
            ChannelAccount.person_id,
            ChannelAccount.channel,
            ChannelAccount.external_id,
            ChannelAccount.last_seen_at,
            ChannelAccount.next_send_at,
            Person.preferred_channel,
            Conversation.language,
        )
        .join(Person, Person.id == ChannelAccount.person_id)
        .outerjoin(
            Conversation,
            (Conversation.channel == ChannelAccount.channel)
            & (Conversation.chat_id == ChannelAccount.external_id),
        )
        .where(
            ChannelAccount.person_id.in_(person_ids),
            ChannelAccount.channel.in_(channels),
            ChannelAccount.reachable.is_(True),
        )
        .order_by(ChannelAccount.id)
    )
    if pg:
        stmt = stmt.with_for_update(of=ChannelAccount)
    chosen: dict[int, _Account] = {}
    for row in (await session.execute(stmt.execution_options(populate_existing=True))).all():
        account = _Account(
            row.id,
            row.person_id,
            row.channel,
            row.external_id,
            row.language,
            row.last_seen_at,
            row.next_send_at,
        )
        current = chosen.get(row.person_id)
        if current is None or _better(account, current, row.preferred_channel):
            chosen[row.person_id] = account
    return chosen


def _better(account: _Account, current: _Account, preferred: str | None) -> bool:
    """Return whether `account` should carry the person's notices rather than `current`."""
    if (account.channel == preferred) != (current.channel == preferred):
        return account.channel == preferred
    never = dt.datetime.min.replace(tzinfo=dt.UTC)
    return (account.last_seen_at or never) > (current.last_seen_at or never)


async def _reserve_slots(
    session: AsyncSession,
    channel: str,
    count: int,
    now: dt.datetime,
    started: float,
    interval: float,
    *,
    pg: bool,
) -> list[dt.datetime]:
    """Reserve `count` consecutive send slots of the channel's global pace; return them.

    `now` is when the claim began, at `started` (time.monotonic()). The slots start no
    earlier than the moment the pace is locked: a claim that waited for a lock (another
    process's claim) would otherwise get slots already past, sent at once in a burst.
    """
    await session.execute(
        upsert_insert(session, DeliveryPace)
        .values(channel=channel, next_at=now, slowdown=1.0)
        .on_conflict_do_nothing(index_elements=["channel"])
    )
    stmt = select(DeliveryPace).where(DeliveryPace.channel == channel)
    if pg:
        stmt = stmt.with_for_update()
    pace = (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one()
    step = dt.timedelta(seconds=interval * pace.slowdown)
    start = max(pace.next_at, now + dt.timedelta(seconds=time.monotonic() - started))
    slots = [start + step * index for index in range(count)]
    pace.next_at = start + step * count
    pace.slowdown = max(1.0, pace.slowdown * RECOVERY)
    await session.flush()
    return slots


async def claim_batch(
    session: AsyncSession,
    channels: Sequence[str],
    *,
    now: dt.datetime,
    limit: int,
    pace: Pace,
    quiet: bool = False,
) -> Claim:
    """Lease up to `limit` due notices, at most one per person, each with its send slot.

    Notices past `expires_at` end SKIPPED; those whose person has no reachable account on
    any channel end FAILED ("unreachable"); those whose person is reachable only on
    channels other than `channels` stay queued for a worker that serves one. In `quiet`
    hours only urgent notices are taken.
    """
    pg = session.get_bind().dialect.name == "postgresql"
    started = time.monotonic()
    claim = Claim([])
    paused = await _paced_beyond(session, channels, now + pace.ahead)
    if paused:
        waiting = await session.scalar(
            select(exists().where(*_due(now, quiet, sorted(paused)), ~_person_paced(now)))
        )
        if waiting:
            claim.held_until = min(paused.values()) - pace.ahead
        channels = [channel for channel in channels if channel not in paused]
        if not channels:
            return claim
    stmt = _candidates(now, quiet, channels, limit * SCAN_FACTOR)
    if pg:
        stmt = stmt.with_for_update(skip_locked=True, of=OutboxMessage)
    rows = (await session.execute(stmt)).all()
    expired = {row.id for row in rows if row.expires_at is not None and row.expires_at <= now}
    rows = [row for row in rows if row.id not in expired]
    accounts = await _accounts(session, {row.person_id for row in rows}, channels, pg=pg)
    if expired:
        claim.skipped = await _end(session, sorted(expired), OutboxStatus.SKIPPED, "expired")
    stranded = {row.person_id for row in rows if row.person_id not in accounts} - {None}
    # (Reachable elsewhere: an account on `channels` went unreachable since the pick.)
    elsewhere = await _reachable_people(session, stranded)
    unreachable = [
        row.id for row in rows if row.person_id not in accounts and row.person_id not in elsewhere
    ]
    if unreachable:
        claim.unreachable = await _end(
            session, unreachable, OutboxStatus.FAILED, "unreachable: no reachable account"
        )
    # Paced: another claim took a notice for the person since the rows were picked.
    paced = {
        person_id
        for person_id, account in accounts.items()
        if account.next_send_at is not None and account.next_send_at > now
    }
    taken: dict[int, Any] = {}
    for row in rows:
        person_id = row.person_id
        if person_id in accounts and person_id not in paced | taken.keys() and len(taken) < limit:
            taken[person_id] = row
    payloads = await _payloads(session, list(taken.values()))
    by_channel: dict[str, list[Any]] = {}
    for row in taken.values():
        by_channel.setdefault(accounts[row.person_id].channel, []).append(row)
    for channel, channel_rows in sorted(by_channel.items()):
        slots = await _reserve_slots(
            session, channel, len(channel_rows), now, started, pace.interval[channel], pg=pg
        )
        for row, slot in zip(channel_rows, slots, strict=True):
            account = accounts[row.person_id]
            claim.notices.append(
                Notice(
                    id=row.id,
                    person_id=row.person_id,
                    kind=row.kind,
                    channel=channel,
                    account_id=account.id,
                    external_id=account.external_id,
                    language=account.language,
                    payload=payloads[row.id],
                    attempts=row.attempts,
                    slot=slot,
                    token=slot + pace.lease,
                )
            )
    if claim.notices:
        # One statement each, run for every row (executemany): the claim holds its locks
        # (on SQLite, the database's) for milliseconds, not a round trip per row.
        per_chat = dt.timedelta(seconds=pace.per_chat)
        await session.execute(
            update(OutboxMessage), [{"id": n.id, "lease_until": n.token} for n in claim.notices]
        )
        await session.execute(
            update(ChannelAccount),
            [{"id": n.account_id, "next_send_at": n.slot + per_chat} for n in claim.notices],
        )
    claim.notices.sort(key=lambda notice: notice.slot)
    return claim


async def _paced_beyond(
    session: AsyncSession, channels: Sequence[str], horizon: dt.datetime
) -> dict[str, dt.datetime]:
    """Return the channels whose next free slot lies beyond `horizon`, with that slot."""
    found = await session.execute(
        select(DeliveryPace.channel, DeliveryPace.next_at).where(
            DeliveryPace.channel.in_(channels), DeliveryPace.next_at > horizon
        )
    )
    return {channel: next_at for channel, next_at in found.all()}


async def _reachable_people(session: AsyncSession, person_ids: set[int]) -> set[int]:
    """Return which of `person_ids` have a reachable account on any channel."""
    if not person_ids:
        return set()
    found = await session.scalars(
        select(ChannelAccount.person_id).where(
            ChannelAccount.person_id.in_(person_ids), ChannelAccount.reachable.is_(True)
        )
    )
    return set(found)


async def _end(session: AsyncSession, ids: list[int], status: OutboxStatus, reason: str) -> int:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .values(status=status, last_error=reason, lease_until=None)
    )
    return len(ids)


async def next_paced(
    session: AsyncSession, channels: Sequence[str], *, now: dt.datetime, quiet: bool
) -> dt.datetime | None:
    """Return when the first person with a notice due now, held by their pace, may get it.

    Their pace: another notice just went to them (per_chat_seconds); None if no due
    notice waits for a person's pace.
    """
    paced: dt.datetime | None = await session.scalar(
        select(func.min(ChannelAccount.next_send_at))
        .join(OutboxMessage, OutboxMessage.person_id == ChannelAccount.person_id)
        .where(*_due(now, quiet, channels), ChannelAccount.next_send_at > now)
    )
    return paced


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


async def is_claimed(session: AsyncSession, notice: Notice) -> bool:
    """Return whether the notice is still queued under its claim's lease.

    Checked right before sending: a notice whose broadcast was stopped (SKIPPED) or that
    another worker took since is not sent.
    """
    found = await session.scalar(
        select(OutboxMessage.id).where(
            held(OutboxMessage, notice.id, notice.token),
            OutboxMessage.status == OutboxStatus.QUEUED,
        )
    )
    return found is not None


async def mark_sent(
    session: AsyncSession, notice: Notice, *, now: dt.datetime, per_chat: float
) -> None:
    """Record that the notice was delivered; the person's pace counts from now."""
    values = {"status": OutboxStatus.SENT, "channel": notice.channel, "sent_at": now}
    await _settle(session, notice, values | {"lease_until": None})
    # A send that went out after its slot (a slow answer) paces the chat from when it did.
    pace_until = now + dt.timedelta(seconds=per_chat)
    await session.execute(
        update(ChannelAccount)
        .where(ChannelAccount.id == notice.account_id, ChannelAccount.next_send_at < pace_until)
        .values(next_send_at=pace_until)
    )


async def mark_failed(session: AsyncSession, notice: Notice, reason: str) -> None:
    """Record that the notice cannot be delivered, with the reason."""
    values = {
        "status": OutboxStatus.FAILED,
        "channel": notice.channel,
        "last_error": reason[:1000],
        "lease_until": None,
        "attempts": OutboxMessage.attempts + 1,
    }
    await _settle(session, notice, values)


async def postpone(session: AsyncSession, notice: Notice, *, until: dt.datetime) -> None:
    """Send the notice after `until` (the platform asked to wait): no attempt is counted."""
    await _settle(session, notice, {"lease_until": until})


async def release(session: AsyncSession, notice: Notice, *, per_chat: float) -> None:
    """Put a claimed notice back unsent (the worker stops): any worker may take it now.

    The person's pace that the claim set for the notice's slot is lifted too: nothing
    was sent to them since the claim, which found them unpaced.
    """
    await _settle(session, notice, {"lease_until": None})
    await session.execute(
        update(ChannelAccount)
        .where(
            ChannelAccount.id == notice.account_id,
            ChannelAccount.next_send_at == notice.slot + dt.timedelta(seconds=per_chat),
        )
        .values(next_send_at=None)
    )


async def retry_later(
    session: AsyncSession,
    notice: Notice,
    reason: str,
    *,
    until: dt.datetime,
    max_attempts: int,
) -> bool:
    """Count a failed attempt and retry after `until`, or end FAILED; return True if FAILED."""
    failed = notice.attempts + 1 >= max_attempts
    values: dict[str, Any] = {"attempts": OutboxMessage.attempts + 1, "last_error": reason[:1000]}
    if failed:
        values |= {"status": OutboxStatus.FAILED, "channel": notice.channel, "lease_until": None}
    else:
        values["lease_until"] = until
    await _settle(session, notice, values)
    return failed


async def account_unreachable(
    session: AsyncSession, notice: Notice, reason: str, *, now: dt.datetime
) -> bool:
    """Mark the notice's account unreachable; requeue the notice if the person has another.

    Return True if the notice stays queued for another account, False if it FAILED.
    """
    await session.execute(
        update(ChannelAccount)
        .where(ChannelAccount.id == notice.account_id)
        .values(
            reachable=False,
            unreachable_since=func.coalesce(
                ChannelAccount.unreachable_since, literal(now, UTCDateTime())
            ),
        )
    )
    other = await session.scalar(
        select(ChannelAccount.id).where(
            ChannelAccount.person_id == notice.person_id,
            ChannelAccount.reachable.is_(True),
        )
    )
    if other is not None:
        await _settle(session, notice, {"lease_until": None})
        return True
    await mark_failed(session, notice, f"unreachable: {reason}")
    return False


async def throttle(
    session: AsyncSession, channel: str, *, until: dt.datetime, pg: bool | None = None
) -> None:
    """Hold every process's sends on `channel` until `until` and slow the channel's pace."""
    if pg is None:
        pg = session.get_bind().dialect.name == "postgresql"
    stmt = select(DeliveryPace).where(DeliveryPace.channel == channel)
    if pg:
        stmt = stmt.with_for_update()
    pace = (
        await session.execute(stmt.execution_options(populate_existing=True))
    ).scalar_one_or_none()
    if pace is None:
        session.add(DeliveryPace(channel=channel, next_at=until, slowdown=SLOWDOWN_FACTOR))
        return
    pace.next_at = max(pace.next_at, until)
    pace.slowdown = min(MAX_SLOWDOWN, pace.slowdown * SLOWDOWN_FACTOR)


async def counts(session: AsyncSession) -> dict[OutboxStatus, int]:
    """Return how many outbox rows are in each status."""
    rows = await session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    )
    return {OutboxStatus(status): int(count) for status, count in rows.all()}
