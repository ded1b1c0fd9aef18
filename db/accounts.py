"""Web admin accounts, their server-side sessions and the lock-out of repeated failed logins.

Sessions live in the database (`admin_session`), keyed by the SHA-256 of the cookie's
token, so every process serving the admin knows every login and a copy of the table
lets nobody in. Failed logins are counted per account name and per client address
(`login_throttle`); a key that reaches its limit within the window is locked until the
lock expires. Nothing here commits: the caller's unit of work does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from db.models import AccountRole, AdminAccount, AdminSession, LoginThrottle, Person
from db.session import upsert_insert

# Usernames: what people type at the login form, compared without case.
USERNAME_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789._-@"
# A session's last_seen_at is written at most this often (not on every page).
SEEN_EVERY = dt.timedelta(minutes=1)


class AccountError(ValueError):
    """An account cannot be made or changed as asked; the message says why."""


def normalize_username(name: str) -> str:
    """Return a username as stored: stripped and lower-cased."""
    return name.strip().lower()


def check_username(name: str) -> str:
    """Return the normalized username, or raise AccountError when it cannot be one."""
    username = normalize_username(name)
    if not 2 <= len(username) <= 64:
        raise AccountError("a username has 2 to 64 characters")
    if any(ch not in USERNAME_CHARACTERS for ch in username):
        raise AccountError("a username may contain only letters a-z, digits and . _ - @")
    return username


def token_id(token: str) -> str:
    """Return the stored id of a session token (its SHA-256)."""
    return hashlib.sha256(token.encode()).hexdigest()


async def account_by_name(session: AsyncSession, username: str) -> AdminAccount | None:
    """Return the account with this username (any case), with its person and unit."""
    stmt = (
        select(AdminAccount)
        .options(joinedload(AdminAccount.person).joinedload(Person.unit))
        .where(AdminAccount.username == normalize_username(username))
    )
    return (await session.scalars(stmt)).first()


async def add_account(
    session: AsyncSession,
    username: str,
    password_hash: str,
    role: AccountRole,
    person: Person | None,
) -> AdminAccount:
    """Add an account; raise AccountError when the name is taken or the role needs a person."""
    name = check_username(username)
    if await account_by_name(session, name) is not None:
        raise AccountError(f"an account named {name!r} exists already")
    if role == AccountRole.UNIT_HEAD:
        if person is None:
            raise AccountError("a unit head's account needs the head's roster person (--person)")
        if not person.is_unit_head:
            raise AccountError(
                "that roster person is not a unit head (the roster's roles must include unit_head)"
            )
    account = AdminAccount(
        username=name,
        password_hash=password_hash,
        role=role,
        person_id=person.id if person else None,
        active=True,
    )
    session.add(account)
    await session.flush()
    return account


async def set_password(
    session: AsyncSession, account: AdminAccount, password_hash: str, now: dt.datetime
) -> None:
    """Change the password, end the account's sessions and lift its lock-out."""
    account.password_hash = password_hash
    account.password_changed_at = now
    await session.execute(delete(AdminSession).where(AdminSession.account_id == account.id))
    await session.execute(
        delete(LoginThrottle).where(LoginThrottle.key == throttle_key("account", account.username))
    )


async def accounts(session: AsyncSession) -> list[AdminAccount]:
    """Return every account by name, with its person and unit."""
    stmt = (
        select(AdminAccount)
        .options(joinedload(AdminAccount.person).joinedload(Person.unit))
        .order_by(AdminAccount.username)
    )
    return list((await session.scalars(stmt)).all())


# -------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class NewSession:
    """A session just opened: the token for the cookie and its CSRF token."""

    token: str
    csrf_token: str
    expires_at: dt.datetime


async def open_session(
    session: AsyncSession, account: AdminAccount, now: dt.datetime, lifetime: dt.timedelta
) -> NewSession:
    """Open a session for the account; also drop every expired session of anyone."""
    await session.execute(delete(AdminSession).where(AdminSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires_at = now + lifetime
    session.add(
        AdminSession(
            id=token_id(token),
            account_id=account.id,
            csrf_token=csrf,
            created_at=now,
            expires_at=expires_at,
            last_seen_at=now,
        )
    )
    account.last_login_at = now
    await session.flush()
    return NewSession(token, csrf, expires_at)


async def session_of(session: AsyncSession, token: str, now: dt.datetime) -> AdminSession | None:
    """Return the live session of a cookie token, with its active account, or None."""
    stmt = (
        select(AdminSession)
        .options(
            joinedload(AdminSession.account).joinedload(AdminAccount.person).joinedload(Person.unit)
        )
        .where(AdminSession.id == token_id(token), AdminSession.expires_at > now)
    )
    found = (await session.scalars(stmt)).first()
    if found is None or not found.account.active:
        return None
    if now - found.last_seen_at >= SEEN_EVERY:
        found.last_seen_at = now
    return found


async def close_session(session: AsyncSession, token: str) -> None:
    """End the session of a cookie token (log out)."""
    await session.execute(delete(AdminSession).where(AdminSession.id == token_id(token)))


# ------------------------------------------------------------------------- lock-out


def throttle_key(kind: str, value: str) -> str:
    """Return the throttle row key of an account name ("account") or address ("address")."""
    return f"{kind}:{normalize_username(value) if kind == 'account' else value}"[:200]


async def locked_until(
    session: AsyncSession, keys: list[str], now: dt.datetime
) -> dt.datetime | None:
    """Return until when any of these keys is locked, or None when none is."""
    stmt = select(func.max(LoginThrottle.locked_until)).where(
        LoginThrottle.key.in_(keys), LoginThrottle.locked_until > now
    )
    return await session.scalar(stmt)


async def record_failure(
    session: AsyncSession, key: str, limit: int, now: dt.datetime, window: dt.timedelta
) -> dt.datetime | None:
    """Count a failed login for `key`; return the lock's end when this failure locks it.

    Failures older than the window are forgotten: the count starts again. The row is
    written with one upsert, so two failures at once (two processes) both count.
    """
    insert = upsert_insert(session, LoginThrottle)
    await session.execute(
        insert.values(
            key=key, failures=0, first_failed_at=now, locked_until=None
        ).on_conflict_do_nothing(index_elements=["key"])
    )
    row = (
        await session.scalars(
            select(LoginThrottle)
            .where(LoginThrottle.key == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()
    if now - row.first_failed_at > window or (
        row.locked_until is not None and row.locked_until <= now
    ):
        row.failures = 0
        row.first_failed_at = now
        row.locked_until = None
    row.failures += 1
    if row.failures >= limit:
        row.locked_until = now + window
        row.failures = 0
        row.first_failed_at = now
        return row.locked_until
    return None


async def clear_failures(session: AsyncSession, key: str) -> None:
    """Forget the failed logins of `key` (after a successful login)."""
    await session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
