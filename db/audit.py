"""The audit log of admin actions: written in the action's own unit of work, read with filters."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AdminAccount, AuditEntry


async def record(
    session: AsyncSession,
    account: AdminAccount,
    action: str,
    target_type: str,
    target_id: int | str | None,
    target_label: str = "",
    *,
    now: dt.datetime,
    client: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an entry for `account` doing `action` (e.g. "class.edit") to a target.

    Call it in the unit of work of the action: the entry is committed if and only if
    the action is.
    """
    session.add(
        AuditEntry(
            at=now,
            account_id=account.id,
            username=account.username,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            target_label=target_label[:500],
            details=details or {},
            client=(client or "")[:64] or None,
        )
    )
    await session.flush()


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to show; None or "" means any."""

    username: str = ""
    action: str = ""
    text: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _conditions(filters: AuditFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.username:
        conditions.append(AuditEntry.username == filters.username.strip().lower())
    if filters.action:
        conditions.append(AuditEntry.action == filters.action)
    if filters.text:
        pattern = f"%{filters.text.strip().lower()}%"
        conditions.append(
            or_(
                func.lower(AuditEntry.target_label).like(pattern),
                AuditEntry.target_id == filters.text.strip(),
            )
        )
    if filters.since is not None:
        conditions.append(AuditEntry.at >= filters.since)
    if filters.until is not None:
        conditions.append(AuditEntry.at < filters.until)
    return conditions


async def entries(
    session: AsyncSession, filters: AuditFilter, *, offset: int, limit: int
) -> tuple[list[AuditEntry], int]:
    """Return a page of entries, newest first, and how many match in all."""
    conditions = _conditions(filters)
    total = await session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions))
    stmt = (
        select(AuditEntry)
        .where(*conditions)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all()), total or 0


async def actions(session: AsyncSession) -> list[str]:
    """Return every action name written so far, for the filter's choices."""
    stmt = select(AuditEntry.action).distinct().order_by(AuditEntry.action)
    return list((await session.scalars(stmt)).all())


async def usernames(session: AsyncSession) -> list[str]:
    """Return every username that has entries, for the filter's choices."""
    stmt = select(AuditEntry.username).distinct().order_by(AuditEntry.username)
    return list((await session.scalars(stmt)).all())


async def of_target(
    session: AsyncSession, target_type: str, target_id: int | str, *, limit: int = 100
) -> list[AuditEntry]:
    """Return the entries about one target (e.g. a broadcast's history), oldest first."""
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.target_type == target_type, AuditEntry.target_id == str(target_id))
        .order_by(AuditEntry.at, AuditEntry.id)
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())
