"""One-time link codes: issue, and redeem with expiry, single use and a lock after wrong tries.

A code links a chat account of a channel that cannot prove a phone number (Zalo) to a
roster person. Two kinds:
- asked for by a chat account that typed the person's phone: bound to that account, sent
  to the person on a channel already linked (SELF_LIFETIME);
- issued by a unit head or an admin (`issue_for_person`, also for the web admin): any
  account may redeem it by typing the person's phone, then the code (STAFF_LIFETIME).

Only a salted PBKDF2 hash is stored. Redeeming locks the candidate rows (FOR UPDATE on
PostgreSQL; SQLite's unit of work holds the write lock), so two tries at once count as two.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import LinkCode

CODE_DIGITS = 6
SELF_LIFETIME = dt.timedelta(minutes=10)
STAFF_LIFETIME = dt.timedelta(hours=24)
# Wrong codes in a row before the codes a try could have matched are locked, and for how long.
MAX_FAILURES = 5
LOCK = dt.timedelta(minutes=15)
# A chat account asks for a new code at most this often (each one is a message to the person).
RESEND_AFTER = dt.timedelta(minutes=1)
_ITERATIONS = 20_000


def new_code() -> str:
    """Return a random code of CODE_DIGITS digits."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def hash_code(code: str) -> str:
    """Return a salted PBKDF2-SHA256 hash of `code`, as `pbkdf2$iterations$salt$hash`."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", code.encode(), salt, _ITERATIONS)
    return f"pbkdf2${_ITERATIONS}${salt.hex()}${digest.hex()}"


def code_matches(code: str, stored: str) -> bool:
    """Return whether `code` is the one `stored` is the hash of (in constant time)."""
    try:
        _scheme, iterations, salt, expected = stored.split("$")
        digest = hashlib.pbkdf2_hmac("sha256", code.encode(), bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), expected)


@dataclass(frozen=True)
class IssuedCode:
    """A new code in clear (shown once, never stored) and when it expires."""

    code: str
    expires_at: dt.datetime


async def _issue(
    session: AsyncSession,
    person_id: int,
    channel: str,
    *,
    now: dt.datetime,
    lifetime: dt.timedelta,
    external_id: str | None,
    issued_by_id: int | None,
) -> IssuedCode:
    """Store a new code; the earlier unused codes of the same kind stop working."""
    same_kind = (
        LinkCode.external_id.is_(None)
        if external_id is None
        else LinkCode.external_id == external_id
    )
    await session.execute(
        update(LinkCode)
        .where(
            LinkCode.person_id == person_id,
            LinkCode.channel == channel,
            LinkCode.used_at.is_(None),
            same_kind,
            LinkCode.expires_at > now,
        )
        .values(expires_at=now)
    )
    code = new_code()
    session.add(
        LinkCode(
            person_id=person_id,
            channel=channel,
            external_id=external_id,
            issued_by_id=issued_by_id,
            code_hash=hash_code(code),
            created_at=now,
            expires_at=now + lifetime,
            failures=0,
        )
    )
    await session.flush()
    return IssuedCode(code, now + lifetime)


async def issue_for_person(
    session: AsyncSession,
    person_id: int,
    *,
    issued_by_id: int | None,
    now: dt.datetime,
    channel: str = "zalo",
) -> IssuedCode:
    """Issue a code that links `person_id`'s account on `channel` (a head's or admin's code).

    The caller checks that `issued_by_id` may act for the person (handlers.link_codes
    does for the chat command); the code works for STAFF_LIFETIME, once, for whichever
    account types the person's phone number and then the code.
    """
    return await _issue(
        session,
        person_id,
        channel,
        now=now,
        lifetime=STAFF_LIFETIME,
        external_id=None,
        issued_by_id=issued_by_id,
    )


async def issue_for_account(
    session: AsyncSession, person_id: int, channel: str, external_id: str, *, now: dt.datetime
) -> IssuedCode | None:
    """Issue a code for the chat account that typed the person's phone; None if asked too soon.

    The caller sends the code to the person on a channel they already linked.
    """
    recent = await session.scalar(
        select(LinkCode.id).where(
            LinkCode.person_id == person_id,
            LinkCode.channel == channel,
            LinkCode.external_id == external_id,
            LinkCode.created_at > now - RESEND_AFTER,
        )
    )
    if recent is not None:
        return None
    return await _issue(
        session,
        person_id,
        channel,
        now=now,
        lifetime=SELF_LIFETIME,
        external_id=external_id,
        issued_by_id=None,
    )


async def asked_by(
    session: AsyncSession, channel: str, external_id: str, *, now: dt.datetime
) -> int | None:
    """Return the person whose live code this chat account asked for last, if any."""
    person_id: int | None = await session.scalar(
        select(LinkCode.person_id)
        .where(
            LinkCode.channel == channel,
            LinkCode.external_id == external_id,
            LinkCode.used_at.is_(None),
            LinkCode.expires_at > now,
        )
        .order_by(LinkCode.id.desc())
        .limit(1)
    )
    return person_id


class Outcome(StrEnum):
    """What came of typing a code."""

    LINKED = "linked"
    WRONG = "wrong"
    LOCKED = "locked"
    NO_CODE = "no_code"


@dataclass(frozen=True)
class Redemption:
    """The outcome of a typed code; `until` is when a lock ends, `left` the tries left."""

    outcome: Outcome
    until: dt.datetime | None = None
    left: int = 0


async def redeem(
    session: AsyncSession,
    person_id: int,
    channel: str,
    external_id: str,
    code: str,
    *,
    now: dt.datetime,
) -> Redemption:
    """Check a typed code against the person's live codes this account may use; use it up.

    A wrong code counts against every code it could have been; the MAX_FAILURES-th wrong
    one in a row locks them for LOCK, during which even the right code is refused.
    """
    pg = session.get_bind().dialect.name == "postgresql"
    stmt = (
        select(LinkCode)
        .where(
            LinkCode.person_id == person_id,
            LinkCode.channel == channel,
            LinkCode.used_at.is_(None),
            LinkCode.expires_at > now,
            or_(LinkCode.external_id.is_(None), LinkCode.external_id == external_id),
        )
        .order_by(LinkCode.id)
        .execution_options(populate_existing=True)
    )
    if pg:
        stmt = stmt.with_for_update()
    candidates = list((await session.scalars(stmt)).all())
    if not candidates:
        return Redemption(Outcome.NO_CODE)
    locks = [row.locked_until for row in candidates if row.locked_until and row.locked_until > now]
    if locks:
        return Redemption(Outcome.LOCKED, until=max(locks))
    for row in candidates:
        if code_matches(code, row.code_hash):
            row.used_at = now
            return Redemption(Outcome.LINKED)
    left = MAX_FAILURES
    for row in candidates:
        row.failures += 1
        if row.failures >= MAX_FAILURES:
            row.failures = 0
            row.locked_until = now + LOCK
        left = min(left, MAX_FAILURES - row.failures)
    if any(row.locked_until and row.locked_until > now for row in candidates):
        return Redemption(Outcome.LOCKED, until=now + LOCK)
    return Redemption(Outcome.WRONG, left=left)


async def live_staff_code(
    session: AsyncSession, person_id: int, channel: str, *, now: dt.datetime
) -> LinkCode | None:
    """Return the person's latest code issued by staff on `channel` that can still be used."""
    stmt = (
        select(LinkCode)
        .where(
            LinkCode.person_id == person_id,
            LinkCode.channel == channel,
            LinkCode.external_id.is_(None),
            LinkCode.used_at.is_(None),
            LinkCode.expires_at > now,
        )
        .order_by(LinkCode.id.desc())
        .limit(1)
    )
    return (await session.scalars(stmt)).first()
