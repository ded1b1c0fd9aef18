"""Real processes: `trainingbot jobs run-once` killed (kill -9) after Zalo rotated the
tokens and before it stored them, then the commands an admin types to recover.

Nothing is lost: the next run learns that the stored refresh token was used, tells the
admins once and keeps the reminder waiting (not failed); `trainingbot jobs status` says
what to do; `trainingbot zns set-token` takes a new authorization's token; the next run
sends the reminder by ZNS, once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import OutboxMessage, OutboxStatus, ZnsToken
from tests.factories import add_class, add_person, add_registration, add_session, add_unit, link
from tests.fake_bot_api import FakeBotApi
from tests.fake_zns_api import (
    APP_ID,
    OA_SECRET_KEY,
    REMINDER_TEMPLATE,
    SECRET_KEY,
    FakeZnsApi,
    fake_zns_api,
)
from tests.telegram_support import fake_bot_api, in_days
from tests.zns_support import soon

REPO = Path(__file__).resolve().parents[1]
ADMIN_CHAT = 4100


@pytest.fixture
async def fake() -> AsyncIterator[FakeZnsApi]:
    async with fake_zns_api() as api:
        yield api


@pytest.fixture
async def telegram() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


def config(tmp_path: Path, database_url: str, fake: FakeZnsApi, telegram: FakeBotApi) -> Path:
    """Write the school's config.toml (secrets go in the environment)."""
    path = tmp_path / "config.toml"
    path.write_text(
        f"""\
[database]
url = "{database_url}"

[notifications]
quiet_hours = ""

[telegram]
token = "{telegram.token}"
base_url = "{telegram.base_url}"

[zns]
enabled = true
app_id = "{APP_ID}"
oauth_base_url = "{fake.base_url}"
zns_base_url = "{fake.base_url}"
oa_base_url = "{fake.base_url}"

[zns.templates.reminder]
template_id = "{REMINDER_TEMPLATE}"

[zns.templates.reminder.fields]
ho_ten = "person.name"
ma_lop = "code"
ten_lop = "title"
thoi_gian = "when"
dia_diem = "place"
""",
        encoding="utf-8",
    )
    return path


class Trainingbot:
    """Runs `trainingbot --config … ARGS` as its own process."""

    def __init__(self, path: Path, fake: FakeZnsApi) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TRAININGBOT_")}
        self.env = clean | {
            "TRAININGBOT_ZNS_SECRET_KEY": SECRET_KEY,
            "TRAININGBOT_ZNS_OA_SECRET_KEY": OA_SECRET_KEY,
            # The first authorization's token, as the school set it up.
            "TRAININGBOT_ZNS_REFRESH_TOKEN": fake.refresh_token,
        }
        self.path = path
        self.process: asyncio.subprocess.Process | None = None

    async def run(self, *args: str, stdin: str = "") -> tuple[int, str]:
        """Run a command to its end (or its kill); return its status and output."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "--config",
            str(self.path),
            *args,
            cwd=REPO,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(self.process.communicate(stdin.encode()), 60)
        return int(self.process.returncode or 0), out.decode()

    async def kill(self) -> None:
        """kill -9 the running command and wait until it is gone."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


async def lan_with_a_class_soon(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Lan (no chat) confirmed in a class starting in 90 minutes; an admin on Telegram."""
    async with sessionmaker() as s, s.begin():
        unit = await add_unit(s, "SNV", "Sở Nội vụ")
        lan = await add_person(s, "0912000402", "Nguyễn Thị Lan", unit)
        admin = await add_person(s, "0912000100", "Lê Thị Quản", unit)
        admin.is_admin = True
        await link(s, admin, "telegram", str(ADMIN_CHAT))
        starts = soon(90)
        klass = await add_class(s, "K45", "Kỹ năng lãnh đạo", start=in_days(0))
        klass.start_date = starts.astimezone(dt.timezone(dt.timedelta(hours=7))).date()
        klass.end_date = klass.start_date + dt.timedelta(days=2)
        await add_session(s, klass, starts)
        await add_registration(s, lan, klass)


async def reminder(sessionmaker: async_sessionmaker[AsyncSession]) -> OutboxMessage:
    async with sessionmaker() as session:
        return (
            await session.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == "class.reminder")
            )
        ).one()


def admin_texts(telegram: FakeBotApi) -> list[str]:
    return [
        c.params["text"]
        for c in telegram.calls_of("sendMessage")
        if c.params["chat_id"] == ADMIN_CHAT
    ]


async def test_a_process_killed_between_refresh_and_store_then_an_admin_recovers(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    await lan_with_a_class_soon(sessionmaker)
    bot = Trainingbot(config(tmp_path, database_url, fake, telegram), fake)
    first = fake.refresh_token

    async def die_before_the_answer() -> None:
        # Zalo has rotated the tokens; the process dies before it hears of it.
        await bot.kill()

    fake.on_refresh = die_before_the_answer
    fake.lose_refresh_answers = 1
    status, _out = await bot.run("jobs", "run-once")
    assert status == -signal.SIGKILL
    fake.on_refresh = None
    assert fake.refresh_calls == [first]
    async with sessionmaker() as session:
        token = await session.get(ZnsToken, APP_ID)
    assert token is not None
    # The database still holds the used token: the new pair died with the process.
    assert (token.refresh_token, token.access_token) == (first, None)
    assert (await reminder(sessionmaker)).status == OutboxStatus.QUEUED

    # Two minutes later (the dead process's leases have run out) the next run goes on.
    async with sessionmaker() as s, s.begin():
        await s.execute(update(ZnsToken).values(refresh_lease_until=None))
        await s.execute(update(OutboxMessage).values(lease_until=None))
    status, out = await bot.run("jobs", "run-once")
    assert status == 0, out
    row = await reminder(sessionmaker)
    # Not failed, no attempt counted: it waits for a new authorization.
    assert (row.status, row.attempts) == (OutboxStatus.QUEUED, 0)
    assert (row.last_error or "").startswith("zns auth: Zalo refused the refresh token")
    (alert,) = admin_texts(telegram)
    assert "Zalo không chấp nhận mã làm mới" in alert
    assert "trainingbot zns set-token" in alert

    status, out = await bot.run("jobs", "status")
    assert status == 0, out
    assert "zns: AUTHORIZATION NEEDED" in out
    assert "zns: 1 notices wait for the ZNS quota or tokens" in out

    # The admin authorizes the app again and gives the new token.
    status, out = await bot.run("zns", "set-token", "--token-stdin", stdin=fake.authorize() + "\n")
    assert status == 0, out
    assert "accepted by Zalo" in out
    status, out = await bot.run("jobs", "run-once")
    assert status == 0, out
    assert "delivery: 1 sent" in out
    (sent,) = fake.sent
    assert sent.phone == "84912000402"
    assert (await reminder(sessionmaker)).status == OutboxStatus.SENT
    # Told once; and a restart with the first token still in the environment keeps the
    # stored one.
    assert len(admin_texts(telegram)) == 1
    status, out = await bot.run("zns", "status")
    assert status == 0, out
    assert "zns: today 1 sent (0 delivered)" in out
    assert "AUTHORIZATION NEEDED" not in out
