"""Claim the next row of a work queue with a lease, so one worker of many takes it.

A claim's `lease_until` is also its token: a worker settles the row only `WHERE
lease_until = token` (see `held`). A worker whose lease ran out (a slow send) and whose
row another worker took meanwhile finds no row and must undo its work (`LeaseLost`),
so an update is never handled or answered twice. Another claim can only come after the
lease ran out, and sets a later `lease_until`, so no two claims share a token.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, update
from sqlalchemy.ext.asyncio import AsyncSession


async def claim_next(
    session: AsyncSession,
    model: Any,
    pick: Select[Any],
    *,
    now: dt.datetime,
    lease: dt.timedelta,
) -> int | None:
    """Lease the first row `pick` selects (ids of `model`) until now + lease; return its id.

    `pick` must already exclude rows under a live lease (see `lease_free`). On PostgreSQL
    the row is locked with FOR UPDATE SKIP LOCKED, so workers in several processes never
    take the same row and never wait for each other. SQLAlchemy drops SKIP LOCKED on
    SQLite, where one UPDATE … RETURNING with the pick as its subquery is atomic (and
    every unit of work holds the write lock anyway).
    """
    until = now + lease
    if session.get_bind().dialect.name == "postgresql":
        row_id = await session.scalar(pick.with_for_update(skip_locked=True, of=model))
        if row_id is None:
            return None
        await session.execute(update(model).where(model.id == row_id).values(lease_until=until))
        return int(row_id)
    # correlate(None): the subquery reads the table afresh instead of the updated row.
    stmt = (
        update(model)
        .where(model.id == pick.correlate(None).scalar_subquery())
        .values(lease_until=until)
        .returning(model.id)
    )
    row_id = await session.scalar(stmt)
    return None if row_id is None else int(row_id)


def lease_free(model: Any, now: dt.datetime) -> ColumnElement[bool]:
    """Return the condition that a row is under no live lease (none, or expired: a crash)."""
    return or_(model.lease_until.is_(None), model.lease_until < now)


class LeaseLost(Exception):
    """The row is no longer leased by this worker: its lease ran out and it was taken."""


def held(model: Any, row_id: int, token: dt.datetime) -> ColumnElement[bool]:
    """Return the condition that row `row_id` is still under the lease `token` of a claim."""
    return and_(model.id == row_id, model.lease_until == token)
