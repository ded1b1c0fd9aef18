"""Benchmark: delivering notices through the real Telegram client to a fake Bot API.

(a) Within Telegram's limit: 10,000 notices to 10,000 chats through a fake server that
    accepts 30 messages in any second and answers the rest 429 with a whole-second
    retry_after, as Telegram does; the engine at its default 25/s and at 30/s. Prints the
    achieved rate as a fraction of the server's cap, the 429s received and the total
    time. On SQLite (the rate, not the database, sets the pace here).
(b) The outbox's own speed, with the limits set out of the way: notices to distinct
    chats claimed, sent and settled per second, to a sender that returns at once (the
    outbox alone) and through the Telegram client to a fake server that answers at once
    (in a process of its own), on
    SQLite and, when TRAININGBOT_BENCH_POSTGRES_URL (or TRAININGBOT_TEST_POSTGRES_URL) is
    set, on PostgreSQL.

`python -m bench.delivery --count 1000` runs (a) with 1,000 notices, for a quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.roster import on_each_database
from bot.config import Settings, TelegramSettings
from bot.delivery import DeliveryEngine, DeliveryReport, DeliverySettings
from bot.jobs_cli import configured_senders
from bot.senders import Sender
from db import migrate
from db.session import create_engine, create_sessionmaker
from jobs.timing import NotifySettings
from tests.delivery_support import RecordingSender, add_people, most_in_any_window, queue
from tests.fake_bot_api import FakeBotApi

CAP = 30
NOTICES = 10_000
THROUGHPUT_NOTICES = 2_000
ALWAYS = NotifySettings(quiet_hours=None)


async def deliver(
    url: str, count: int, settings: DeliverySettings, base_url: str | None = None
) -> tuple[float, DeliveryReport]:
    """Migrate `url`, queue `count` notices to distinct chats, drain; return seconds, report.

    The notices go through the Telegram client to the fake Bot API at `base_url`, or
    without one to a sender that answers at once (the outbox's own cost).
    """
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(engine)
        await queue(sessionmaker, await add_people(sessionmaker, count))
        async with contextlib.AsyncExitStack() as stack:
            senders: list[Sender] = [RecordingSender("telegram")]
            if base_url is not None:
                config = Settings(
                    telegram=TelegramSettings(token=SecretStr(FakeBotApi.token), base_url=base_url)
                )
                senders = await stack.enter_async_context(configured_senders(sessionmaker, config))
            delivery = DeliveryEngine(sessionmaker, senders, settings, ALWAYS)
            started = time.perf_counter()
            report = await delivery.drain()
            return time.perf_counter() - started, report
    finally:
        await engine.dispose()


async def within_the_limit(count: int, rate: float) -> None:
    """Deliver `count` notices at `rate` through a server capped at CAP/s; print figures."""
    api = FakeBotApi()
    await api.start()
    limit = api.limit_rate(CAP)
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings = DeliverySettings(
                rate_per_second=rate, batch_size=max(1, min(200, round(rate * 2)))
            )
            seconds, report = await deliver(
                f"sqlite+aiosqlite:///{folder}/bench.db", count, settings, api.base_url
            )
    finally:
        await api.stop()
    times = [call.at for call in api.delivered()]
    achieved = (len(times) - 1) / (max(times) - min(times))
    print(
        f"engine at {rate:g}/s: {report.sent:,} sent in {seconds:6.1f} s, "
        f"{achieved:5.2f} messages/s = {achieved / CAP:4.0%} of the cap, "
        f"{limit.refused} x 429 (busiest second: {most_in_any_window(times, 1.0)})"
    )


@contextlib.asynccontextmanager
async def server_process() -> AsyncIterator[str]:
    """Run the fake Bot API in a process of its own (its own core); yield its base URL."""
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "tests.fake_bot_api"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        yield (await server.stdout.readline()).decode().strip()
    finally:
        server.stdin.close()
        await server.wait()


async def throughput(label: str, url: str) -> None:
    """Print how many notices a second the outbox claims, sends and settles."""
    settings = DeliverySettings(rate_per_second=100_000, per_chat_seconds=0.0, batch_size=200)
    seconds, report = await deliver(url, THROUGHPUT_NOTICES, settings)
    print(
        f"{label:<10} outbox alone (a sender that returns at once): "
        f"{report.sent / seconds:5.0f} notices/s ({report.sent:,} in {seconds:.1f} s)"
    )
    async with server_process() as base_url:
        seconds, report = await deliver(url, THROUGHPUT_NOTICES, settings, base_url)
    print(
        f"{label:<10} through the Telegram client to the fake server: "
        f"{report.sent / seconds:5.0f} notices/s ({report.sent:,} in {seconds:.1f} s)"
    )


async def main(count: int) -> None:
    """Run both parts of the delivery benchmark."""
    print(f"delivery benchmark (a): {count:,} notices to {count:,} chats, server cap {CAP}/s")
    for rate in (25.0, 30.0):
        await within_the_limit(count, rate)
    print(f"delivery benchmark (b): {THROUGHPUT_NOTICES:,} notices, server answers at once")
    await on_each_database(throughput)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=NOTICES, help="notices in part (a)")
    asyncio.run(main(parser.parse_args().count))
