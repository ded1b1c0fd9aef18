"""A claiming process for tests: `python -m tests.delivery_claimer URL` claims and settles
outbox rows with the real `claim_batch` until none is queued, then prints the ids it took.

Each claim pauses between reading its candidates and leasing them, so that two processes
racing for the same rows overlap for certain.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
from typing import Any

from sqlalchemy import func, select

from bot.delivery import now_utc
from db import outbox
from db.leases import LeaseLost
from db.models import OutboxMessage, OutboxStatus
from db.session import create_engine, create_sessionmaker

PACE = outbox.Pace(interval={"telegram": 0.0005}, per_chat=0.0, lease=dt.timedelta(seconds=60))


async def claim_all(url: str) -> list[int]:
    """Claim and settle batches of 5 until nothing is queued; return the ids claimed."""
    real_accounts = outbox._accounts

    async def slow_accounts(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.01)
        return await real_accounts(*args, **kwargs)

    outbox._accounts = slow_accounts  # type: ignore[assignment]
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    claimed: list[int] = []
    try:
        while True:
            async with sessionmaker() as session, session.begin():
                claim = await outbox.claim_batch(
                    session, ["telegram"], now=now_utc(), limit=5, pace=PACE
                )
            claimed.extend(notice.id for notice in claim.notices)
            for notice in claim.notices:
                # A claim that was not atomic shows here too: the other process's claim
                # replaced this one's lease.
                with contextlib.suppress(LeaseLost):
                    async with sessionmaker() as session, session.begin():
                        await outbox.mark_sent(session, notice, now=now_utc(), per_chat=0.0)
            if claim.notices:
                continue
            async with sessionmaker() as session:
                left = await session.scalar(
                    select(func.count()).where(OutboxMessage.status == OutboxStatus.QUEUED)
                )
            if not left:
                return claimed
            await asyncio.sleep(0.005)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(claim_all(sys.argv[1]))))
