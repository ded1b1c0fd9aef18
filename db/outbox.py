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
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, exists, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db import zns
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
    # The row's idempotency key (a ZNS message's tracking id is made from it).
    key: str = ""
    # ZNS: the recipient's roster name and phone (0XXXXXXXXX) for the template's fields.
    person_name: str = ""
    phone: str = ""
    urgent: bool = False


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
    # ZNS: outbox kinds of notices that failed for people without a chat because the kind
    # has no template (count per kind), and notices held back by the day's ZNS guard.
    without_template: dict[str, int] = field(default_factory=dict)
    zns_held: int = 0
    zns_held_reason: str | None = None
    zns_held_until: dt.datetime | None = None


@dataclass(frozen=True)
class ZnsRoute:
    """How a claim may send by ZNS to people without a reachable chat (db/zns.py)."""

    app_id: str
    # Outbox kinds that have a ZNS template that is on.
    kinds: frozenset[str]
    guard: zns.Guard
    # The school's local day now, and when it ends (the quota renews).
    day: dt.date
    day_ends: dt.datetime


@dataclass(frozen=True)
class _Account:
    id: int
    person_id: int
    channel: str
    external_id: str
    language: str | None
    last_seen_at: dt.datetime | None
    next_send_at: dt.datetime | None


def _due(
    now: dt.datetime,
    quiet: bool,
    channels: Sequence[str],
    waiting_kinds: frozenset[str] = frozenset(),
) -> list[Any]:
    """Return the conditions of a notice that a worker serving `channels` may take now.

    A notice whose person is reachable only on other channels is left for a worker that
    serves one of them; one whose person is reachable on no chat is taken, to go by ZNS
    or be failed, unless its kind is one of `waiting_kinds` (ZNS's pace is paused).
    """
    nowhere = ~_reachable(None)
    if waiting_kinds:
        nowhere = nowhere & OutboxMessage.kind.not_in(sorted(waiting_kinds))
    conditions: list[Any] = [
        OutboxMessage.status == OutboxStatus.QUEUED,
        OutboxMessage.due_at <= now,
        lease_free(OutboxMessage, now),
        _reachable(channels) | nowhere,
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


def _candidates(
    now: dt.datetime,
    quiet: bool,
    channels: Sequence[str],
    waiting_kinds: frozenset[str],
    limit: int,
) -> Select[Any]:
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
            OutboxMessage.idempotency_key,
            OutboxMessage.urgent,
        )
        .where(*_due(now, quiet, channels, waiting_kinds), ~_person_paced(now))
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
    zns_route: ZnsRoute | None = None,
) -> Claim:
    """Lease up to `limit` due notices, at most one per person, each with its send slot.

    Notices past `expires_at` end SKIPPED; those whose person has no reachable account on
    any channel go by ZNS to the roster phone when `zns_route` takes their kind (within
    the day's guard; the rest wait for the next day), else end FAILED ("unreachable");
    those whose person is reachable only on channels other than `channels` stay queued
    for a worker that serves one. In `quiet` hours only urgent notices are taken.
    """
    pg = session.get_bind().dialect.name == "postgresql"
    started = time.monotonic()
    claim = Claim([])
    zns_kinds = zns_route.kinds if zns_route is not None else frozenset()
    paced_channels = [*channels, zns.CHANNEL] if zns_kinds else list(channels)
    paused = await _paced_beyond(session, paced_channels, now + pace.ahead)
    # ZNS's pace paused far ahead (Zalo asked to slow down): what would go by ZNS waits.
    waiting_kinds = zns_kinds if zns.CHANNEL in paused else frozenset()
    if paused:
        waits: list[list[Any]] = []
        chats_paused = sorted(set(paused) - {zns.CHANNEL})
        if chats_paused:
            waits.append(_due(now, quiet, chats_paused))
        if waiting_kinds:
            waits.append([*_due(now, quiet, []), OutboxMessage.kind.in_(sorted(waiting_kinds))])
        for conditions in waits:
            if await session.scalar(select(exists().where(*conditions, ~_person_paced(now)))):
                claim.held_until = min(paused.values()) - pace.ahead
                break
        channels = [channel for channel in channels if channel not in paused]
        if not channels and (not zns_kinds or waiting_kinds):
            return claim
    stmt = _candidates(now, quiet, channels, waiting_kinds, limit * SCAN_FACTOR)
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
    # Reachable on no chat at all: by ZNS when their kind has a template (the rule of
    # db.zns.goes_by_zns, with the phone checked in _zns_share), else failed.
    chatting = accounts.keys() | elsewhere
    no_chat = [row for row in rows if row.person_id not in chatting]
    by_zns = {row.id for row in no_chat if row.kind in zns_kinds}
    unreachable = [row for row in no_chat if row.id not in by_zns]
    if unreachable and zns_route is None:
        claim.unreachable = await _end(
            session,
            [row.id for row in unreachable],
            OutboxStatus.FAILED,
            "unreachable: no reachable account",
        )
    elif unreachable:
        claim.unreachable = await _end_without_template(session, unreachable, claim)
    # Paced: another claim took a notice for the person since the rows were picked.
    paced = {
        person_id
        for person_id, account in accounts.items()
        if account.next_send_at is not None and account.next_send_at > now
    }
    taken: dict[int, Any] = {}
    for row in rows:
        person_id = row.person_id
        chat = person_id in accounts and person_id not in paced
        by_phone = row.id in by_zns and not waiting_kinds
        if (chat or by_phone) and person_id not in taken and len(taken) < limit:
            taken[person_id] = row
    by_channel: dict[str, list[Any]] = {}
    for row in taken.values():
        if row.person_id in accounts:
            by_channel.setdefault(accounts[row.person_id].channel, []).append(row)
    recipients: dict[int, _Recipient] = {}
    zns_rows = [row for row in taken.values() if row.person_id not in accounts]
    if zns_rows:
        assert zns_route is not None
        zns_rows, recipients = await _zns_share(session, zns_rows, zns_route, claim, now=now)
        if zns_rows:
            by_channel[zns.CHANNEL] = zns_rows
    payloads = await _payloads(session, [row for group in by_channel.values() for row in group])
    for channel, channel_rows in sorted(by_channel.items()):
        slots = await _reserve_slots(
            session, channel, len(channel_rows), now, started, pace.interval[channel], pg=pg
        )
        for row, slot in zip(channel_rows, slots, strict=True):
            recipient = recipients.get(row.person_id) if channel == zns.CHANNEL else None
            if recipient is not None:
                account_id, external_id, language = 0, recipient.zalo_phone, None
            else:
                account = accounts[row.person_id]
                account_id, external_id = account.id, account.external_id
                language = account.language
            claim.notices.append(
                Notice(
                    id=row.id,
                    person_id=row.person_id,
                    kind=row.kind,
                    channel=channel,
                    account_id=account_id,
                    external_id=external_id,
                    language=language,
                    payload=payloads[row.id],
                    attempts=row.attempts,
                    slot=slot,
                    token=slot + pace.lease,
                    key=row.idempotency_key,
                    person_name=recipient.name if recipient else "",
                    phone=recipient.phone if recipient else "",
                    urgent=bool(row.urgent),
                )
            )
    await _lease(session, claim.notices, pace)
    claim.notices.sort(key=lambda notice: notice.slot)
    return claim


async def _lease(session: AsyncSession, notices: Sequence[Notice], pace: Pace) -> None:
    """Lease the claimed rows and pace their chats.

    One statement each, run for every row (executemany): the claim holds its locks (on
    SQLite, the database's) for milliseconds, not a round trip per row. A notice going
    by ZNS gets its tracking id now, so that a receipt can never overtake the send.
    """
    chats = [n for n in notices if n.channel != zns.CHANNEL]
    phones = [n for n in notices if n.channel == zns.CHANNEL]
    if chats:
        per_chat = dt.timedelta(seconds=pace.per_chat)
        await session.execute(
            update(OutboxMessage), [{"id": n.id, "lease_until": n.token} for n in chats]
        )
        await session.execute(
            update(ChannelAccount),
            [{"id": n.account_id, "next_send_at": n.slot + per_chat} for n in chats],
        )
    if phones:
        await session.execute(
            update(OutboxMessage),
            [
                {"id": n.id, "lease_until": n.token, "tracking_id": zns.tracking_id(n.key)}
                for n in phones
            ],
        )


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


@dataclass(frozen=True)
class _Recipient:
    name: str
    # As on the roster (0XXXXXXXXX), and as ZNS takes it (84XXXXXXXXX).
    phone: str
    zalo_phone: str


async def _end_without_template(session: AsyncSession, rows: Sequence[Any], claim: Claim) -> int:
    """Fail notices for people without a chat whose kind has no ZNS template; count by kind."""
    by_kind: dict[str, list[int]] = {}
    for row in rows:
        by_kind.setdefault(row.kind, []).append(row.id)
    for kind, ids in sorted(by_kind.items()):
        reason = f"unreachable: no reachable chat account, and no ZNS template for {kind}"
        await _end(session, ids, OutboxStatus.FAILED, reason)
        claim.without_template[kind] = len(ids)
    return len(rows)


async def _zns_share(
    session: AsyncSession,
    rows: list[Any],
    route: ZnsRoute,
    claim: Claim,
    *,
    now: dt.datetime,
) -> tuple[list[Any], dict[int, _Recipient]]:
    """Return the rows that go by ZNS now, within the day's guard, and their recipients.

    A person without a usable phone fails the notice; what the guard does not grant
    waits, without an attempt counted, until the day ends (or the hold does).
    """
    people = (
        await session.execute(
            select(Person.id, Person.full_name, Person.phone).where(
                Person.id.in_({row.person_id for row in rows}), zns.takes_zns()
            )
        )
    ).all()
    recipients = {
        person.id: _Recipient(person.full_name, person.phone, zalo)
        for person in people
        if (zalo := zns.zalo_phone(person.phone)) is not None
    }
    no_phone = [row.id for row in rows if row.person_id not in recipients]
    if no_phone:
        await _end(session, no_phone, OutboxStatus.FAILED, "zns: no valid phone on the roster")
    rows = [row for row in rows if row.person_id in recipients]
    urgent = [row for row in rows if row.urgent]
    other = [row for row in rows if not row.urgent]
    granted = await zns.reserve(
        session,
        route.app_id,
        urgent=len(urgent),
        other=len(other),
        guard=route.guard,
        day=route.day,
        day_ends=route.day_ends,
        now=now,
    )
    going = urgent[: granted.urgent] + other[: granted.other]
    waiting = [row.id for row in urgent[granted.urgent :] + other[granted.other :]]
    if waiting:
        until = granted.until or route.day_ends
        reason = (granted.reason or "zns: held")[:900] + f" (held until {until.isoformat()})"
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(waiting))
            .values(lease_until=until, last_error=reason)
        )
        claim.zns_held += len(waiting)
        claim.zns_held_reason = granted.reason
        claim.zns_held_until = until
    return going, recipients


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
    session: AsyncSession,
    notice: Notice,
    *,
    now: dt.datetime,
    per_chat: float,
    provider_message_id: str | None = None,
) -> None:
    """Record that the notice was delivered; the person's pace counts from now."""
    values: dict[str, Any] = {
        "status": OutboxStatus.SENT,
        "channel": notice.channel,
        "sent_at": now,
    }
    if provider_message_id:
        values["provider_message_id"] = provider_message_id[:64]
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


async def postpone(
    session: AsyncSession, notice: Notice, *, until: dt.datetime, reason: str | None = None
) -> None:
    """Send the notice after `until` (the platform asked to wait): no attempt is counted."""
    values: dict[str, Any] = {"lease_until": until}
    if reason is not None:
        values["last_error"] = reason[:1000]
    await _settle(session, notice, values)


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
    session: AsyncSession,
    notice: Notice,
    reason: str,
    *,
    now: dt.datetime,
    zns_kinds: frozenset[str] = frozenset(),
) -> bool:
    """Mark the notice's account unreachable; requeue the notice if the person has another.

    Another: a reachable chat account, or ZNS to the roster phone for `zns_kinds`.
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
    if other is not None or notice.kind in zns_kinds:
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
