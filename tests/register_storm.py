"""Press Confirm for many people at once: `python -m tests.register_storm URL CLASS_ID IDS…`.

Each person presses the class's confirm button (`rc:CLASS_ID`) in their own chat, through
`dispatch` as a channel would (chat account "test", user id = the person's id). Run by
tests/test_seat_concurrency.py, once in-process and as two processes at a time, to show
that seats hold when 200 people register for 30 seats at the same instant. Each outcome
is printed as `confirmed` or `waitlisted:POSITION` (or the reply's message key).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.session import create_engine, create_sessionmaker
from handlers.registration_buttons import Do, button_data
from tests.factories import NOW, Chat

CHANNEL = "test"


def chat_of(person_id: int) -> str:
    """Return the chat user id linked to a person in the storm."""
    return str(person_id)


async def register_one(
    sessionmaker: async_sessionmaker[AsyncSession], person_id: int, class_id: int
) -> str:
    """Press Confirm in the person's own chat, one unit of work; return the outcome."""
    chat = Chat(sessionmaker, user_id=chat_of(person_id), channel=CHANNEL, now=NOW)
    (reply,) = await chat.send(button=button_data(Do.CONFIRM, class_id))
    first = reply.lines[0]
    if first.key == "register.confirmed":
        return "confirmed"
    if first.key == "register.waitlisted":
        return f"waitlisted:{first.params['position']}"
    return first.key


async def storm(
    sessionmaker: async_sessionmaker[AsyncSession], class_id: int, person_ids: Sequence[int]
) -> list[str]:
    """Have everyone press Confirm at once; return each outcome."""
    return list(
        await asyncio.gather(*(register_one(sessionmaker, pid, class_id) for pid in person_ids))
    )


async def _main(url: str, class_id: int, person_ids: list[int]) -> None:
    engine = create_engine(url)
    try:
        outcomes = await storm(create_sessionmaker(engine), class_id, person_ids)
    finally:
        await engine.dispose()
    print(" ".join(outcomes))


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2]), [int(a) for a in sys.argv[3:]]))
