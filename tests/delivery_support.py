"""Notices in bulk, delivery engines on the real Telegram client, and timing checks."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import DatabaseSettings, NotificationSettings, Settings, TelegramSettings
from bot.delivery import DeliveryEngine, DeliverySettings, now_utc
from bot.jobs_cli import configured_senders
from bot.senders import Sender
from db.models import ChannelAccount, OutboxMessage, OutboxStatus, Person, Unit, UnitKind
from db.repos import Repos
from handlers.notices import notify
from handlers.types import Msg, Reply
from jobs.timing import NotifySettings
from tests.fake_bot_api import Call, FakeBotApi

# The Telegram chat id of the first person `add_people` links.
FIRST_CHAT = 50_000
# Every notice's text says which one it is: "Mã lớp: <key>".
_KEY = re.compile(r"Mã lớp: (\S+)")
# No quiet hours: the tests must pass at any hour of the night too.
ALWAYS = NotifySettings(quiet_hours=None)


async def add_people(
    sessionmaker: async_sessionmaker[AsyncSession],
    count: int,
    *,
    channel: str | None = "telegram",
) -> list[int]:
    """Insert `count` people, each linked on `channel` (None: not linked); return their ids.

    The n-th person inserted (from 0, across calls) is chat FIRST_CHAT + n.
    """
    async with sessionmaker() as session, session.begin():
        unit_id = await session.scalar(select(Unit.id).where(Unit.code == "DLV"))
        if unit_id is None:
            unit_id = await session.scalar(
                insert(Unit)
                .values(code="DLV", name="Đơn vị thử gửi", kind=UnitKind.OTHER)
                .returning(Unit.id)
            )
        known = await session.scalar(select(func.count()).select_from(Person)) or 0
        result = await session.execute(
            insert(Person).returning(Person.id),
            [
                {
                    "phone": f"09{known + n:08d}",
                    "full_name": f"Người {known + n}",
                    "unit_id": unit_id,
                }
                for n in range(count)
            ],
        )
        ids = [int(row_id) for row_id in result.scalars().all()]
        if channel is not None:
            await session.execute(
                insert(ChannelAccount),
                [
                    {
                        "person_id": pid,
                        "channel": channel,
                        "external_id": str(FIRST_CHAT + known + n),
                    }
                    for n, pid in enumerate(ids)
                ],
            )
    return ids


def notice(key: str) -> Reply:
    """Return a notice whose text names `key`."""
    return Reply(lines=(Msg("detail.code", {"code": key}),))


async def queue(
    sessionmaker: async_sessionmaker[AsyncSession],
    person_ids: Sequence[int],
    *,
    per_person: int = 1,
    prefix: str = "n",
    due_at: dt.datetime | None = None,
    urgent: bool = False,
    expires_at: dt.datetime | None = None,
) -> list[str]:
    """Queue `per_person` notices for each person, keyed `{prefix}{person}-{k}`; return the keys."""
    keys = []
    async with sessionmaker() as session, session.begin():
        repos = Repos(session)
        for k in range(per_person):
            for person_id in person_ids:
                key = f"{prefix}{person_id}-{k}"
                await notify(
                    repos,
                    person_id,
                    "test",
                    key,
                    notice(key),
                    due_at=due_at or now_utc(),
                    urgent=urgent,
                    expires_at=expires_at,
                )
                keys.append(key)
    return keys


def key_of(call: Call) -> str:
    """Return which notice a sendMessage call carried."""
    match = _KEY.search(call.params["text"])
    assert match is not None, call.params["text"]
    return match.group(1)


async def rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    """Return every outbox row, by id."""
    async with sessionmaker() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def statuses(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[OutboxStatus, int]:
    """Return how many outbox rows are in each status."""
    counted: dict[OutboxStatus, int] = {}
    for row in await rows(sessionmaker):
        counted[row.status] = counted.get(row.status, 0) + 1
    return counted


async def wait_rows(
    sessionmaker: async_sessionmaker[AsyncSession],
    status: OutboxStatus,
    count: int,
    within: float = 10.0,
) -> list[OutboxMessage]:
    """Wait until `count` outbox rows have `status`; return them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        found = [row for row in await rows(sessionmaker) if row.status == status]
        if len(found) >= count:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"{len(found)} rows {status}, not {count}, within {within}s")
        await asyncio.sleep(0.05)


def telegram_settings(api: FakeBotApi, database_url: str, **notifications: Any) -> Settings:
    """Return settings for the fake Bot API and the test database, without quiet hours."""
    return Settings(
        database=DatabaseSettings(url=SecretStr(database_url)),
        notifications=NotificationSettings(**{"quiet_hours": "", **notifications}),
        telegram=TelegramSettings(token=SecretStr(api.token), base_url=api.base_url),
    )


def delivery_settings(**changes: Any) -> DeliverySettings:
    """Return fast delivery settings for tests: 20 notices/s, a second per chat."""
    values: dict[str, Any] = {
        "rate_per_second": 20.0,
        "batch_size": 10,
        "retry_base": dt.timedelta(seconds=0.2),
        "idle_seconds": 0.1,
    }
    return DeliverySettings(**(values | changes))


@contextlib.asynccontextmanager
async def telegram_engine(
    sessionmaker: async_sessionmaker[AsyncSession],
    api: FakeBotApi,
    database_url: str,
    settings: DeliverySettings | None = None,
    notify_settings: NotifySettings = ALWAYS,
    also: Sequence[Sender] = (),
    **engine: Any,
) -> AsyncIterator[DeliveryEngine]:
    """Yield a delivery engine sending through the real Telegram client to the fake API.

    `also` are further senders (channels) beside Telegram.
    """
    config = telegram_settings(api, database_url)
    async with configured_senders(sessionmaker, config) as senders:
        yield DeliveryEngine(
            sessionmaker,
            [*senders, *also],
            settings or delivery_settings(),
            notify_settings,
            **engine,
        )


@contextlib.asynccontextmanager
async def running_engine(engine: DeliveryEngine) -> AsyncIterator[asyncio.Task[None]]:
    """Run `engine` until the block ends, then stop it and wait for it."""
    stopping = asyncio.Event()
    task = asyncio.create_task(engine.run(stopping))
    try:
        yield task
    finally:
        stopping.set()
        await asyncio.wait_for(task, timeout=10)


def most_in_any_window(times: Sequence[float], seconds: float) -> int:
    """Return the most of `times` that fall within any span of `seconds`."""
    ordered = sorted(times)
    most = 0
    start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


def closest_per_chat(calls: Sequence[Call]) -> float:
    """Return the shortest time between two messages to one chat (inf if none repeats)."""
    last: dict[Any, float] = {}
    closest = float("inf")
    for call in sorted(calls, key=lambda c: c.at):
        chat = call.params["chat_id"]
        if chat in last:
            closest = min(closest, call.at - last[chat])
        last[chat] = call.at
    return closest


@dataclass
class RecordingSender:
    """A second channel for the engine (Zalo's place): records what it is asked to send."""

    name: str = "zalo"
    sent: list[tuple[str, Reply, str]] = field(default_factory=list)

    @property
    def channel(self) -> str:
        """Return the channel's name on accounts."""
        return self.name

    async def send_notice(self, external_id: str, reply: Reply, language: str) -> None:
        """Record the notice as delivered."""
        self.sent.append((external_id, reply, language))


def assert_rate_kept(times: Sequence[float], rate: float) -> None:
    """Assert that messages arriving at `times` kept `rate` per second.

    Arrivals jitter around the engine's slots (a process's first request, two processes
    on two cores, a machine busy with other work delaying one send until the next one's
    slot), which can put a few more messages into one second; a rate broken shows as
    more messages the longer the window, so the short window gets the larger allowance.
    """
    for window, jitter in ((1.0, 4), (2.0, 3), (3.0, 2)):
        assert most_in_any_window(times, window) <= rate * window + jitter, window
    assert (len(times) - 1) / (max(times) - min(times)) <= rate * 1.02
