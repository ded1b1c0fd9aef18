"""`trainingbot run` as real processes: two behind one webhook, a kill -9, a 429.

These are the proof of the README's claims under Telegram: several processes on one
database serve one webhook URL, each update answered once and each chat in order (run on
PostgreSQL, the scale-out set-up, and on SQLite too, whose write lock serialises them);
an update acknowledged (200) is answered even if the process is killed; a 429 is waited
out and the reply still delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.telegram import now_utc
from bot.channels.telegram_webhook import SECRET_HEADER
from db.models import InboundUpdate, InboxStatus, OutboxMessage, OutboxStatus, Unit
from db.repos import Repos
from handlers.notices import notify
from handlers.types import Msg, Reply
from tests.factories import add_class, add_person, add_unit, link
from tests.fake_bot_api import FakeBotApi, text_update
from tests.telegram_support import (
    SECRET,
    fake_bot_api,
    free_port,
    in_days,
    inbox_rows,
    running,
    settings_for,
    wait_status,
)

REPO = Path(__file__).resolve().parents[1]
CLASSES = 5


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def add_classes(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Add classes TP-1 … TP-5, titled so that each one's detail is recognisable."""
    async with sessionmaker() as session, session.begin():
        await add_unit(session, "YTH", "Huyện Yên Thành")
        for n in range(1, CLASSES + 1):
            await add_class(session, f"TP-{n}", f"Lớp kiểm thử số {n}", start=in_days(30 + n))


def title_in(text: str) -> int:
    """Return which class (1 … 5) a reply shows; fail if none."""
    found = [n for n in range(1, CLASSES + 1) if f"Lớp kiểm thử số {n}" in text]
    assert len(found) == 1, text
    return found[0]


class Bot:
    """`trainingbot run` in webhook mode as a child process, its log in a file."""

    def __init__(self, tmp_path: Path, api: FakeBotApi, database_url: str, name: str) -> None:
        self.port = free_port()
        self.config = tmp_path / f"{name}.toml"
        self.log = tmp_path / f"{name}.log"
        self.config.write_text(
            f'[database]\nurl = "{database_url}"\n'
            f'[telegram]\nbase_url = "{api.base_url}"\nmode = "webhook"\n'
            f'url = "https://bot.example.org/telegram"\n',
            encoding="utf-8",
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRAININGBOT_")}
        self.env |= {
            "TRAININGBOT_TELEGRAM_TOKEN": api.token,
            "TRAININGBOT_TELEGRAM_SECRET_TOKEN": SECRET,
            "TRAININGBOT_TELEGRAM_LISTEN_PORT": str(self.port),
            "TRAININGBOT_WEB_LISTEN_PORT": "0",
        }
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the process (its webhook is ready once it calls setWebhook)."""
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "bot.cli", "--config", str(self.config), "run"),
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=log,
            )

    async def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        """Send `signum` and return the exit status."""
        assert self.process is not None
        self.process.send_signal(signum)
        return await asyncio.wait_for(self.process.wait(), timeout=10)

    def kill(self) -> None:
        """Kill the process if it still runs (cleanup after a failed test)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    async def post(self, http: aiohttp.ClientSession, payload: dict[str, Any]) -> int:
        """Post one update to the webhook as Telegram does; return the HTTP status."""
        url = f"http://127.0.0.1:{self.port}/telegram"
        async with http.post(url, json=payload, headers={SECRET_HEADER: SECRET}) as response:
            return response.status


@contextlib.asynccontextmanager
async def bots(
    tmp_path: Path, api: FakeBotApi, database_url: str, count: int
) -> AsyncIterator[list[Bot]]:
    """Start `count` processes on one database; kill any still running at the end."""
    started = [Bot(tmp_path, api, database_url, f"bot{n}") for n in range(count)]
    before = len(api.calls_of("setWebhook"))
    try:
        for bot in started:
            await bot.start()
        await api.wait_for("setWebhook", count=before + count, timeout=20)
        yield started
    except BaseException:
        for bot in started:
            print(bot.log.name, bot.log.read_text(encoding="utf-8", errors="replace"))
        raise
    finally:
        for bot in started:
            bot.kill()
            if bot.process is not None:
                await bot.process.wait()


def replies_by_chat(api: FakeBotApi) -> dict[int, list[int]]:
    """Return, per chat, which class each sent message showed, in the order sent."""
    shown: dict[int, list[int]] = {}
    for call in api.calls_of("sendMessage"):
        shown.setdefault(call.params["chat_id"], []).append(title_in(call.params["text"]))
    return shown


async def test_two_processes_behind_one_webhook_answer_each_update_once_in_each_chats_order(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    await add_classes(sessionmaker)
    chats = range(1001, 1009)
    # 8 chats × 5 updates; chat c asks for classes in its own order, so a swap shows.
    plan = {c: [(c + k) % CLASSES + 1 for k in range(CLASSES)] for c in chats}
    async with bots(tmp_path, api, database_url, 2) as (one, two), aiohttp.ClientSession() as http:
        servers = (one, two)
        counter = iter(range(1, 1000))

        async def chat(chat_id: int) -> None:
            """Post a chat's updates one after another, alternating servers."""
            for k, n in enumerate(plan[chat_id]):
                payload = text_update(next(counter), f"/class TP-{n}", user_id=chat_id)
                first = servers[(chat_id + k) % 2]
                if k % 2 == 0:  # also to the other server at the same time: a duplicate
                    other = servers[(chat_id + k + 1) % 2]
                    both = await asyncio.gather(
                        first.post(http, payload), other.post(http, payload)
                    )
                    assert both == [200, 200]
                else:
                    assert await first.post(http, payload) == 200

        await asyncio.gather(*(chat(c) for c in chats))
        await api.wait_for("sendMessage", count=len(chats) * CLASSES, timeout=20)
        await wait_status(sessionmaker, InboxStatus.ANSWERED, len(chats) * CLASSES, within=10)
        await asyncio.sleep(0.3)  # room for a duplicate answer to show
        assert [await bot.stop() for bot in servers] == [0, 0]
    assert replies_by_chat(api) == plan
    assert len(await inbox_rows(sessionmaker)) == len(chats) * CLASSES


async def test_updates_acknowledged_before_a_kill_9_are_answered_after_the_restart(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    await add_classes(sessionmaker)
    chats = (2001, 2002)
    api.hold("sendMessage")  # the bot's replies hang: updates are stored, not answered
    async with bots(tmp_path, api, database_url, 1) as [bot], aiohttp.ClientSession() as http:
        update_id = 1
        for n in range(1, 4):
            for chat_id in chats:
                payload = text_update(update_id, f"/class TP-{n}", user_id=chat_id)
                assert await bot.post(http, payload) == 200
                update_id += 1
        await api.wait_for("sendMessage", count=len(chats))  # the first reply of each, hung
        assert await bot.stop(signal.SIGKILL) == -signal.SIGKILL
    api.release_all()
    rows = await inbox_rows(sessionmaker)
    assert len(rows) == 6
    assert all(row.status != InboxStatus.ANSWERED for row in rows)
    # The killed process's leases would run out in a minute; let them run out now.
    async with sessionmaker() as session, session.begin():
        await session.execute(update(InboundUpdate).values(lease_until=now_utc()))
    async with bots(tmp_path, api, database_url, 1) as [bot]:
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 6, within=10)
        await asyncio.sleep(0.3)
        assert await bot.stop() == 0
    for chat_id, shown in replies_by_chat(api).items():
        # The reply in flight at the kill may be sent once more; nothing else is.
        assert shown in ([1, 2, 3], [1, 1, 2, 3]), (chat_id, shown)


async def test_a_429_is_waited_out_and_the_reply_and_a_notice_delivered(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await add_classes(sessionmaker)
    api.fail_flood("sendMessage", retry_after=1)
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(text_update(api.next_update_id(), "/class TP-2"))
        refused, sent = await api.wait_for("sendMessage", count=2, timeout=10)
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)
        # A notice (outbox) refused with 429 is sent again after retry_after, too.
        api.fail_flood("sendMessage", retry_after=1)
        async with sessionmaker() as session, session.begin():
            unit = await session.scalar(select(Unit))
            assert unit is not None
            person = await add_person(session, "0912000179", "Đỗ Văn Chờ", unit)
            await link(session, person, "telegram", "222")
            notice = Reply(lines=(Msg("start.intro"),))
            await notify(Repos(session), person.id, "test", "k429", notice, due_at=now_utc())
        notice_refused, notice_sent = await api.wait_for(
            "sendMessage", lambda p: p["chat_id"] == 222, count=2, timeout=10
        )
    assert title_in(sent.params["text"]) == 2
    assert sent.params == refused.params
    assert sent.at - refused.at >= 1.0  # retry_after honoured
    assert notice_sent.params == notice_refused.params
    assert notice_sent.at - notice_refused.at >= 1.0
    assert len(api.calls_of("sendMessage")) == 4
    async with sessionmaker() as session:
        assert await session.scalar(select(OutboxMessage.status)) == OutboxStatus.SENT
