"""Broadcasts: announcements to an audience, queued as one outbox notice per recipient.

An audience is resolved to roster people in SQL, never loaded into Python: everyone
linked to a chat account, the people of chosen units and the units under them, the
participants of a class, the unit heads, or the learners of a program. An author who is
a unit head reaches only their unit and the units under it (the broadcast's
`scope_unit_id`; None for the school's admins, who reach everyone).

A broadcast is a DRAFT (text, audience, urgency) until `start` queues its notices with one
INSERT … SELECT, keyed `broadcast:<id>:<person>` so that nobody is queued twice, however
often it runs; it is then SENDING, DONE when no notice is left queued (`settle_finished`),
or STOPPED by `stop` (its queued notices end SKIPPED "stopped"). Progress and the report
are counts of its outbox rows.

The chat flow (handlers/broadcast.py) and the web admin (bot/web/broadcasts.py) use these
functions; none of them commits: call them in the caller's unit of work.

The author is a roster person. A broadcast may have no author (`author_id` None): one
written in the web admin by an admin account tied to no roster person, on the school's
behalf. Such a draft belongs to "no author": only a caller passing `author_id=None` (the
web admin, for admin accounts without a person) may change, send or drop it; the chat
always passes a person's id, so it never touches one. The web admin's audit log names
the account that wrote and sent it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    String,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from db import zns
from db.models import (
    Broadcast,
    BroadcastStatus,
    ChannelAccount,
    ClassStatus,
    Conversation,
    OutboxMessage,
    OutboxStatus,
    Person,
    Program,
    Registration,
    RegistrationStatus,
    TrainingClass,
    Unit,
    UTCDateTime,
)
from db.rules import SEAT_STATUSES
from db.session import upsert_insert
from db.text import fold

# A class's participants: those holding a seat (confirmed, awaiting approval, offered one)
# and those who attended. The waitlist is not a class's participants.
PARTICIPANT_STATUSES = (*SEAT_STATUSES, RegistrationStatus.ATTENDED)
# The kind of the outbox rows of broadcasts, for delivery reports.
NOTICE_KIND = "broadcast"
# last_error of a notice skipped because its broadcast was stopped.
STOPPED = "stopped"
# Classes that ended this long ago may still be addressed (certificates, a survey).
CLASSES_ENDED_WITHIN = dt.timedelta(days=30)
# Statuses a broadcast has once it was started.
STARTED = (BroadcastStatus.SENDING, BroadcastStatus.DONE, BroadcastStatus.STOPPED)


class AudienceKind(StrEnum):
    EVERYONE = "everyone"
    UNITS = "units"
    CLASS = "class"
    HEADS = "heads"
    PROGRAM = "program"


@dataclass(frozen=True)
class Audience:
    """Who a broadcast goes to, before the author's reach limits it.

    EVERYONE: people linked to a chat account; UNITS: the people of `unit_ids` and of the
    units under them; CLASS: the participants of `class_id`; HEADS: unit heads; PROGRAM:
    the participants of the program's classes that have not ended (and are not cancelled).
    """

    kind: AudienceKind
    unit_ids: tuple[int, ...] = ()
    class_id: int | None = None
    program: Program | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the audience as JSON-ready data (the broadcast's `audience`)."""
        data: dict[str, Any] = {"kind": self.kind.value}
        if self.kind == AudienceKind.UNITS:
            data["unit_ids"] = list(self.unit_ids)
        if self.class_id is not None:
            data["class_id"] = self.class_id
        if self.program is not None:
            data["program"] = self.program.value
        return data

    @classmethod
    def from_json(cls, data: Any) -> Audience | None:
        """Return the audience stored as `data`, or None when it is missing or malformed."""
        if not isinstance(data, dict) or data.get("kind") not in AudienceKind.__members__.values():
            return None
        kind = AudienceKind(data["kind"])
        unit_ids = data.get("unit_ids", [])
        class_id = data.get("class_id")
        program = data.get("program")
        if not isinstance(unit_ids, list) or not all(_is_id(u) for u in unit_ids):
            return None
        if kind == AudienceKind.CLASS and not _is_id(class_id):
            return None
        if kind == AudienceKind.PROGRAM and program not in Program.__members__.values():
            return None
        return cls(
            kind,
            unit_ids=tuple(unit_ids) if kind == AudienceKind.UNITS else (),
            class_id=class_id if kind == AudienceKind.CLASS else None,
            program=Program(str(program)) if kind == AudienceKind.PROGRAM else None,
        )

    @property
    def complete(self) -> bool:
        """Return whether the audience names everything it needs (units: at least one)."""
        return self.kind != AudienceKind.UNITS or bool(self.unit_ids)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class AudienceCount:
    """An audience's people: how many, how many a notice can reach, how many never linked.

    `reachable`: on a chat; `by_zns`: by ZNS to their phone, having no reachable chat (when
    broadcasts have a ZNS template that is on); `never_linked` and `unreachable` (blocked
    the bot) count those who get nothing.
    """

    total: int
    reachable: int
    never_linked: int
    by_zns: int = 0

    @property
    def recipients(self) -> int:
        """Return how many get the broadcast: on a chat or by ZNS."""
        return self.reachable + self.by_zns

    @property
    def unreachable(self) -> int:
        """Return how many are linked but reachable on no account (blocked the bot)."""
        return self.total - self.recipients - self.never_linked


@dataclass(frozen=True)
class Progress:
    """Where a broadcast's notices are: counts of its outbox rows, and who got none."""

    # Notices queued at the start, one per reachable person.
    recipients: int = 0
    sent: int = 0
    # Failed because the account cannot be reached: blocked the bot, chat gone.
    blocked: int = 0
    # Failed for another reason (the platform refused it, retries used up).
    failed: int = 0
    # Not sent: the broadcast was stopped.
    skipped: int = 0
    # Still queued (or being sent).
    left: int = 0
    # People of the audience who never linked a chat account, and those linked but not
    # reachable on any account, at the start: no notice was queued for them.
    never_linked: int = 0
    unreachable: int = 0


class BroadcastError(Exception):
    """A broadcast action that does not apply; `why` says which rule refused it.

    not_found, not_yours (another author's draft), not_draft (already started or
    dropped), no_audience (none chosen, or no unit chosen), out_of_scope (a unit or the
    author's reach changed), nobody (no one in the audience can be reached), finished
    (stopping one that is no longer sending), form_used (a web form submitted again).
    """

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


# Audiences ---------------------------------------------------------------------------


async def subtree(session: AsyncSession, roots: Collection[int]) -> set[int]:
    """Return the ids of the units `roots` and of every unit under them."""
    children: dict[int, list[int]] = {}
    for child_id, parent_id in await session.execute(select(Unit.id, Unit.parent_id)):
        if parent_id is not None:
            children.setdefault(parent_id, []).append(child_id)
    found = set(roots)
    todo = list(roots)
    while todo:
        for child_id in children.get(todo.pop(), []):
            if child_id not in found:  # bad data may hold a cycle
                found.add(child_id)
                todo.append(child_id)
    return found


async def scope_of(session: AsyncSession, scope_unit_id: int | None) -> set[int] | None:
    """Return the unit ids an author reaches from their scope unit; None for everyone."""
    return None if scope_unit_id is None else await subtree(session, [scope_unit_id])


def _linked() -> ColumnElement[bool]:
    return exists().where(ChannelAccount.person_id == Person.id)


def _reachable() -> ColumnElement[bool]:
    return exists().where(ChannelAccount.person_id == Person.id, ChannelAccount.reachable.is_(True))


async def _conditions(
    session: AsyncSession, audience: Audience, scope: set[int] | None, today: dt.date
) -> list[ColumnElement[bool]]:
    """Return the conditions on Person that select the audience within the scope."""
    conditions: list[ColumnElement[bool]] = []
    if scope is not None:
        conditions.append(Person.unit_id.in_(sorted(scope)))
    match audience.kind:
        case AudienceKind.EVERYONE:
            conditions.append(_linked())
        case AudienceKind.UNITS:
            units = await subtree(session, audience.unit_ids)
            conditions.append(Person.unit_id.in_(sorted(units)))
        case AudienceKind.CLASS:
            conditions.append(
                exists().where(
                    Registration.person_id == Person.id,
                    Registration.class_id == audience.class_id,
                    Registration.status.in_(PARTICIPANT_STATUSES),
                )
            )
        case AudienceKind.HEADS:
            conditions.append(Person.is_unit_head.is_(True))
        case AudienceKind.PROGRAM:
            conditions.append(
                exists().where(
                    Registration.person_id == Person.id,
                    Registration.status.in_(PARTICIPANT_STATUSES),
                    TrainingClass.id == Registration.class_id,
                    TrainingClass.program == audience.program,
                    TrainingClass.end_date >= today,
                    TrainingClass.status != ClassStatus.CANCELLED,
                )
            )
    return conditions


async def within_scope(session: AsyncSession, audience: Audience, scope: set[int] | None) -> bool:
    """Return whether the audience names only what the scope reaches (units, a class)."""
    if audience.kind == AudienceKind.UNITS:
        known = set(await session.scalars(select(Unit.id).where(Unit.id.in_(audience.unit_ids))))
        return known == set(audience.unit_ids) and (scope is None or known <= scope)
    if audience.kind == AudienceKind.CLASS:
        return await session.get(TrainingClass, audience.class_id) is not None
    return True


async def count_audience(
    session: AsyncSession,
    audience: Audience,
    *,
    scope: set[int] | None,
    today: dt.date,
    zns_kinds: Collection[str] = (),
) -> AudienceCount:
    """Return how many people the audience holds within the scope, and who can be reached.

    `zns_kinds`: the outbox kinds that go by ZNS ([zns]); with NOTICE_KIND among them,
    people without a reachable chat are reached by ZNS (db.zns.goes_by_zns).
    """
    conditions = await _conditions(session, audience, scope, today)
    one = literal(1)
    by_zns = _by_zns(zns_kinds)
    stmt = (
        select(
            func.count(),
            func.coalesce(func.sum(case((_reachable(), one), else_=0)), 0),
            func.coalesce(func.sum(case((~_linked() & ~by_zns, one), else_=0)), 0),
            func.coalesce(func.sum(case((by_zns, one), else_=0)), 0),
        )
        .select_from(Person)
        .where(*conditions)
    )
    total, reachable, never_linked, zns_count = (await session.execute(stmt)).one()
    return AudienceCount(int(total), int(reachable), int(never_linked), int(zns_count))


def _by_zns(zns_kinds: Collection[str]) -> ColumnElement[bool]:
    """Return the condition on Person that a broadcast reaches them by ZNS."""
    return zns.goes_by_zns() if NOTICE_KIND in zns_kinds else false()


# Drafts ------------------------------------------------------------------------------


async def create_draft(
    session: AsyncSession,
    *,
    author_id: int | None,
    scope_unit_id: int | None,
    text: str,
    message: dict[str, Any],
    origin_channel: str | None = None,
    origin_chat_id: str | None = None,
    form_key: str | None = None,
    now: dt.datetime,
) -> Broadcast:
    """Add a draft: the author's `text` and the `message` recipients get (an encoded Reply).

    `author_id` None: written on the school's behalf by no roster person (see above);
    `scope_unit_id` is the author's reach (None: the whole school); `origin_*` the chat
    where progress and the report are shown (None: no chat, e.g. the web admin).
    `form_key` names the web form it comes from: a form submitted again (a double click,
    two at once) makes no second draft; BroadcastError("form_used") is raised instead and
    `made_by_form` tells which broadcast the form made.
    """
    values: dict[str, Any] = {
        "status": BroadcastStatus.DRAFT,
        "author_id": author_id,
        "scope_unit_id": scope_unit_id,
        "text": text,
        "message": message,
        "urgent": False,
        "origin_channel": origin_channel,
        "origin_chat_id": origin_chat_id,
        "form_key": form_key,
        "created_at": now,
        "updated_at": now,
    }
    if form_key is None:
        broadcast = Broadcast(**values)
        session.add(broadcast)
        await session.flush()
        return broadcast
    # ON CONFLICT: a second transaction with the same key waits for the first, then adds
    # nothing (PostgreSQL); SQLite's writers take turns anyway.
    insert = (
        upsert_insert(session, Broadcast)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["form_key"])
        .returning(Broadcast.id)
    )
    broadcast_id = await session.scalar(insert)
    if broadcast_id is None:
        raise BroadcastError("form_used")
    made = await get(session, broadcast_id)
    assert made is not None
    return made


async def made_by_form(session: AsyncSession, form_key: str) -> int | None:
    """Return the id of the broadcast a web form made, or None."""
    found = await session.scalar(select(Broadcast.id).where(Broadcast.form_key == form_key))
    return None if found is None else int(found)


async def get(session: AsyncSession, broadcast_id: int) -> Broadcast | None:
    """Return the broadcast as stored now, or None."""
    return await session.get(Broadcast, broadcast_id, populate_existing=True)


async def _locked(session: AsyncSession, broadcast_id: int) -> Broadcast | None:
    """Return the broadcast locked until the unit of work ends (PostgreSQL), or None."""
    stmt = (
        select(Broadcast)
        .where(Broadcast.id == broadcast_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).first()


async def draft_of(session: AsyncSession, broadcast_id: int, author_id: int | None) -> Broadcast:
    """Return the author's draft, locked; raise BroadcastError when it is not one.

    `author_id` None asks for a draft without an author (the web admin's, see above).
    """
    broadcast = await _locked(session, broadcast_id)
    if broadcast is None:
        raise BroadcastError("not_found")
    if broadcast.author_id != author_id:
        raise BroadcastError("not_yours")
    if broadcast.status != BroadcastStatus.DRAFT:
        raise BroadcastError("not_draft")
    return broadcast


async def edit_draft(
    session: AsyncSession,
    broadcast_id: int,
    author_id: int | None,
    *,
    text: str | None = None,
    message: dict[str, Any] | None = None,
    audience: Audience | None = None,
    urgent: bool | None = None,
) -> Broadcast:
    """Change what the author's draft says, to whom, or its urgency; return it."""
    broadcast = await draft_of(session, broadcast_id, author_id)
    if text is not None:
        broadcast.text = text
    if message is not None:
        broadcast.message = message
    if audience is not None:
        broadcast.audience = audience.as_json()
    if urgent is not None:
        broadcast.urgent = urgent
    await session.flush()
    return broadcast


async def cancel_draft(
    session: AsyncSession, broadcast_id: int, author_id: int | None
) -> Broadcast:
    """Drop the author's draft: it is never sent."""
    broadcast = await draft_of(session, broadcast_id, author_id)
    broadcast.status = BroadcastStatus.CANCELLED
    await session.flush()
    return broadcast


# Sending -----------------------------------------------------------------------------


async def start(
    session: AsyncSession,
    broadcast_id: int,
    *,
    author_id: int | None,
    scope_unit_id: int | None,
    now: dt.datetime,
    today: dt.date,
    zns_kinds: Collection[str] = (),
) -> Broadcast:
    """Queue the draft's notices, one per reachable person of its audience; return it.

    Reachable: on a chat, or by ZNS when `zns_kinds` holds NOTICE_KIND (count_audience).

    `scope_unit_id` is the author's reach now (their roles may have changed since the
    draft). One INSERT … SELECT queues every notice, skipping any already queued for the
    broadcast (its idempotency key), so nobody gets it twice. The broadcast row is
    locked first: of two starts at once (a double tap, two processes) one queues, the
    other finds it no longer a draft (not_draft).
    """
    broadcast = await draft_of(session, broadcast_id, author_id)
    audience = Audience.from_json(broadcast.audience)
    if audience is None or not audience.complete:
        raise BroadcastError("no_audience")
    scope = await scope_of(session, scope_unit_id)
    if not await within_scope(session, audience, scope):
        raise BroadcastError("out_of_scope")
    conditions = await _conditions(session, audience, scope, today)
    count = await count_audience(session, audience, scope=scope, today=today, zns_kinds=zns_kinds)
    if count.recipients == 0:
        raise BroadcastError("nobody")
    await _queue(session, broadcast, [*conditions, _reachable() | _by_zns(zns_kinds)], now)
    queued = await session.scalar(
        select(func.count()).where(OutboxMessage.broadcast_id == broadcast.id)
    )
    broadcast.status = BroadcastStatus.SENDING
    broadcast.scope_unit_id = scope_unit_id
    broadcast.started_at = now
    broadcast.recipients = int(queued or 0)
    broadcast.never_linked = count.never_linked
    broadcast.unreachable = max(0, count.total - broadcast.recipients - count.never_linked)
    await session.flush()
    return broadcast


async def _queue(
    session: AsyncSession,
    broadcast: Broadcast,
    conditions: Sequence[ColumnElement[bool]],
    now: dt.datetime,
) -> None:
    """Queue one notice per person matching `conditions`, in one statement."""
    table = OutboxMessage.__table__
    when = literal(now, UTCDateTime())
    people = select(
        literal(f"broadcast:{broadcast.id}:") + cast(Person.id, String),
        Person.id,
        literal(NOTICE_KIND),
        literal({}, table.c.payload.type),
        literal(OutboxStatus.QUEUED, table.c.status.type),
        when,
        literal(broadcast.urgent, Boolean()),
        literal(0, Integer()),
        when,
        literal(broadcast.id, Integer()),
    ).where(*conditions)
    columns = [
        "idempotency_key",
        "person_id",
        "kind",
        "payload",
        "status",
        "due_at",
        "urgent",
        "attempts",
        "created_at",
        "broadcast_id",
    ]
    await session.execute(
        upsert_insert(session, OutboxMessage)
        .from_select(columns, people)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )


def manages(broadcast: Broadcast, person_id: int | None, *, admin: bool) -> bool:
    """Return whether the person may see and stop the broadcast: its author, or an admin.

    Nobody but an admin manages a broadcast without an author, whoever asks.
    """
    return admin or (person_id is not None and broadcast.author_id == person_id)


async def stop(
    session: AsyncSession, broadcast_id: int, *, by_id: int | None, now: dt.datetime
) -> int:
    """Stop a broadcast that is sending: its queued notices end SKIPPED; return how many.

    `by_id` is the person stopping it (None: an admin account of the web admin without one).

    A notice the delivery engine already holds is dropped too: it checks, right before
    sending, that its notice is still queued (bot/delivery.py). Raise BroadcastError
    (not_found, finished) when there is nothing to stop.
    """
    broadcast = await _locked(session, broadcast_id)
    if broadcast is None:
        raise BroadcastError("not_found")
    if broadcast.status != BroadcastStatus.SENDING:
        raise BroadcastError("finished")
    result = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.broadcast_id == broadcast_id,
            OutboxMessage.status == OutboxStatus.QUEUED,
        )
        .values(status=OutboxStatus.SKIPPED, last_error=STOPPED, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    broadcast.status = BroadcastStatus.STOPPED
    broadcast.stopped_by_id = by_id
    broadcast.finished_at = now
    await session.flush()
    return int(result.rowcount)  # type: ignore[attr-defined]


async def settle_finished(session: AsyncSession, now: dt.datetime) -> int:
    """Mark DONE every sending broadcast with no notice left queued; return how many."""
    result = await session.execute(
        update(Broadcast)
        .where(
            Broadcast.status == BroadcastStatus.SENDING,
            ~exists().where(
                OutboxMessage.broadcast_id == Broadcast.id,
                OutboxMessage.status == OutboxStatus.QUEUED,
            ),
        )
        .values(status=BroadcastStatus.DONE, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# Progress and reports ----------------------------------------------------------------


async def progresses(session: AsyncSession, broadcast_ids: Collection[int]) -> dict[int, Progress]:
    """Return the progress of each broadcast (unknown ids are left out)."""
    if not broadcast_ids:
        return {}
    unreachable = case((OutboxMessage.last_error.like("unreachable:%"), 1), else_=0)
    rows = await session.execute(
        select(OutboxMessage.broadcast_id, OutboxMessage.status, unreachable, func.count())
        .where(OutboxMessage.broadcast_id.in_(sorted(broadcast_ids)))
        .group_by(OutboxMessage.broadcast_id, OutboxMessage.status, unreachable)
    )
    counts: dict[int, dict[str, int]] = {}
    for broadcast_id, status, blocked, count in rows.all():
        field = {
            OutboxStatus.QUEUED: "left",
            OutboxStatus.SENDING: "left",
            OutboxStatus.SENT: "sent",
            OutboxStatus.SKIPPED: "skipped",
            OutboxStatus.FAILED: "blocked" if blocked else "failed",
        }[OutboxStatus(status)]
        into = counts.setdefault(broadcast_id, {})
        into[field] = into.get(field, 0) + int(count)
    found = await session.execute(
        select(
            Broadcast.id, Broadcast.recipients, Broadcast.never_linked, Broadcast.unreachable
        ).where(Broadcast.id.in_(sorted(broadcast_ids)))
    )
    return {
        broadcast_id: Progress(
            recipients=recipients,
            never_linked=never_linked,
            unreachable=unreachable_at_start,
            **counts.get(broadcast_id, {}),
        )
        for broadcast_id, recipients, never_linked, unreachable_at_start in found.all()
    }


async def progress(session: AsyncSession, broadcast_id: int) -> Progress | None:
    """Return the broadcast's progress (its report once finished), or None if unknown."""
    return (await progresses(session, [broadcast_id])).get(broadcast_id)


def is_over(status: BroadcastStatus, progress: Progress) -> bool:
    """Return whether a broadcast is over: done, stopped, or started with nothing left."""
    return status in (BroadcastStatus.DONE, BroadcastStatus.STOPPED) or (
        status == BroadcastStatus.SENDING and progress.left == 0
    )


async def recent(
    session: AsyncSession,
    *,
    author_id: int | None = None,
    statuses: Collection[BroadcastStatus] = STARTED,
    limit: int = 5,
    offset: int = 0,
) -> list[Broadcast]:
    """Return the latest broadcasts (of one author, or everyone's), newest first."""
    stmt = select(Broadcast).where(Broadcast.status.in_(list(statuses)))
    if author_id is not None:
        stmt = stmt.where(Broadcast.author_id == author_id)
    stmt = stmt.order_by(Broadcast.id.desc()).offset(offset).limit(limit)
    return list((await session.scalars(stmt.execution_options(populate_existing=True))).all())


async def drafts(
    session: AsyncSession, author_id: int | None, *, limit: int = 20
) -> list[Broadcast]:
    """Return an author's drafts, newest first; `author_id` None: the drafts without an author."""
    author = (
        Broadcast.author_id.is_(None) if author_id is None else Broadcast.author_id == author_id
    )
    stmt = (
        select(Broadcast)
        .where(Broadcast.status == BroadcastStatus.DRAFT, author)
        .order_by(Broadcast.id.desc())
        .limit(limit)
    )
    return list((await session.scalars(stmt.execution_options(populate_existing=True))).all())


# What the author chooses from --------------------------------------------------------


@dataclass(frozen=True)
class UnitChoice:
    """A unit an author may address, with its depth under the author's top unit."""

    id: int
    code: str
    name: str
    depth: int
    parent_id: int | None


async def units_in(session: AsyncSession, scope: set[int] | None) -> list[UnitChoice]:
    """Return the units of the scope as a tree: each unit followed by those under it."""
    rows = (await session.execute(select(Unit.id, Unit.code, Unit.name, Unit.parent_id))).all()
    known = {row.id for row in rows if scope is None or row.id in scope}
    children: dict[int | None, list[Any]] = {}
    for row in rows:
        if row.id in known:
            parent = row.parent_id if row.parent_id in known else None
            children.setdefault(parent, []).append(row)
    ordered: list[UnitChoice] = []
    seen: set[int] = set()

    def visit(parent: int | None, depth: int) -> None:
        for row in sorted(children.get(parent, []), key=lambda r: (fold(r.name), r.code)):
            if row.id in seen:
                continue
            seen.add(row.id)
            ordered.append(UnitChoice(row.id, row.code, row.name, depth, row.parent_id))
            visit(row.id, depth + 1)

    visit(None, 0)
    return ordered


def matching_units(choices: Sequence[UnitChoice], text: str) -> list[UnitChoice]:
    """Return the units whose code or name holds every word of `text` (diacritics optional)."""
    words = fold(text).split()
    return [
        unit
        for unit in choices
        if all(word in f"{fold(unit.code)} {fold(unit.name)}" for word in words)
    ]


async def class_choices(
    session: AsyncSession,
    scope: set[int] | None,
    today: dt.date,
    *,
    text: str = "",
    offset: int = 0,
    limit: int,
) -> tuple[list[tuple[TrainingClass, int]], int]:
    """Return a page of classes with participants in the scope, and how many there are.

    Classes not cancelled that have not ended, or ended within CLASSES_ENDED_WITHIN,
    soonest first, each with its number of participants in the scope; `text` filters by
    code or title (diacritics optional).
    """
    participants = (
        select(func.count())
        .select_from(Registration)
        .join(Person, Person.id == Registration.person_id)
        .where(
            Registration.class_id == TrainingClass.id,
            Registration.status.in_(PARTICIPANT_STATUSES),
        )
    )
    if scope is not None:
        participants = participants.where(Person.unit_id.in_(sorted(scope)))
    count = participants.scalar_subquery()
    conditions: list[ColumnElement[bool]] = [
        TrainingClass.status != ClassStatus.CANCELLED,
        TrainingClass.end_date >= today - CLASSES_ENDED_WITHIN,
        count > 0,
    ]
    for word in fold(text).split():
        conditions.append(TrainingClass.search_text.contains(word, autoescape=True))
    total = await session.scalar(select(func.count()).select_from(TrainingClass).where(*conditions))
    rows = await session.execute(
        select(TrainingClass, count)
        .where(*conditions)
        .order_by(TrainingClass.start_date, TrainingClass.code)
        .offset(offset)
        .limit(limit)
    )
    return [(training_class, int(n)) for training_class, n in rows.all()], int(total or 0)


# The progress message ----------------------------------------------------------------


@dataclass(frozen=True)
class ProgressDue:
    """A broadcast whose progress message in its author's chat is due to be shown.

    `token` is the claim's lease (progress_lease_until): the result is recorded only
    under it, so two processes never update one message at once.
    """

    broadcast_id: int
    status: BroadcastStatus
    text: str
    channel: str
    chat_id: str
    language: str | None
    message_id: str | None
    shown: dict[str, Any] | None
    progress: Progress
    token: dt.datetime

    @property
    def finished(self) -> bool:
        """Return whether the broadcast is over (its report is due)."""
        return self.status in (BroadcastStatus.DONE, BroadcastStatus.STOPPED)


async def claim_progress(
    session: AsyncSession,
    channels: Sequence[str],
    *,
    now: dt.datetime,
    lease: dt.timedelta,
    every: dt.timedelta,
    limit: int = 20,
) -> list[ProgressDue]:
    """Lease the broadcasts whose progress message on `channels` is due; return them.

    Due: a sending broadcast whose message was not shown for `every`, or never; one that
    is over and whose report was not shown yet. Broadcasts with nothing left queued are
    marked DONE first (settle_finished), whatever chat they came from.
    """
    await settle_finished(session, now)
    stmt = (
        select(Broadcast, Conversation.language)
        .outerjoin(
            Conversation,
            (Conversation.channel == Broadcast.origin_channel)
            & (Conversation.chat_id == Broadcast.origin_chat_id),
        )
        .where(
            Broadcast.status.in_(STARTED),
            Broadcast.reported_at.is_(None),
            Broadcast.origin_channel.in_(list(channels)),
            Broadcast.origin_chat_id.is_not(None),
            Broadcast.progress_lease_until.is_(None) | (Broadcast.progress_lease_until < now),
            (Broadcast.status != BroadcastStatus.SENDING)
            | Broadcast.progress_shown_at.is_(None)
            | (Broadcast.progress_shown_at <= now - every),
        )
        .order_by(Broadcast.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=Broadcast)
    rows = (await session.execute(stmt)).all()
    if not rows:
        return []
    counts = await progresses(session, [broadcast.id for broadcast, _ in rows])
    token = now + lease
    due = []
    for broadcast, language in rows:
        broadcast.progress_lease_until = token
        assert broadcast.origin_channel is not None
        assert broadcast.origin_chat_id is not None
        due.append(
            ProgressDue(
                broadcast_id=broadcast.id,
                status=broadcast.status,
                text=broadcast.text,
                channel=broadcast.origin_channel,
                chat_id=broadcast.origin_chat_id,
                language=language,
                message_id=broadcast.progress_message_id,
                shown=broadcast.progress_shown,
                progress=counts.get(broadcast.id, Progress()),
                token=token,
            )
        )
    await session.flush()
    return due


def _held(due: ProgressDue) -> ColumnElement[bool]:
    return (Broadcast.id == due.broadcast_id) & (Broadcast.progress_lease_until == due.token)


async def record_progress(
    session: AsyncSession,
    due: ProgressDue,
    *,
    message_id: str | None,
    shown: dict[str, Any],
    now: dt.datetime,
    reported: bool,
) -> bool:
    """Record what the progress message shows now; return False if the lease was lost."""
    values: dict[str, Any] = {
        "progress_message_id": message_id,
        "progress_shown": shown,
        "progress_shown_at": now,
        "progress_lease_until": None,
    }
    if reported:
        values["reported_at"] = now
    result = await session.execute(
        update(Broadcast)
        .where(_held(due))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def postpone_progress(session: AsyncSession, due: ProgressDue, *, until: dt.datetime) -> None:
    """Leave the progress message alone until `until` (the platform asked to wait)."""
    await session.execute(
        update(Broadcast)
        .where(_held(due))
        .values(progress_lease_until=until)
        .execution_options(synchronize_session=False)
    )
