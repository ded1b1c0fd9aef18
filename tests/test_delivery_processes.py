"""Delivery across real processes: atomic claims on one database file or server, a kill -9
in the middle of `trainingbot jobs run-once`, and two run-once processes at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.delivery import now_utc
from db.models import OutboxMessage, OutboxStatus
from tests.delivery_support import (
    add_people,
    assert_rate_kept,
    closest_per_chat,
    key_of,
    queue,
    rows,
    statuses,
)
from tests.fake_bot_api import FakeBotApi
from tests.telegram_support import fake_bot_api

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


def clean_environment(**extra: str) -> dict[str, str]:
    """Return this environment without TRAININGBOT_ settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAININGBOT_")}
    return env | extra


async def test_two_processes_claiming_at_once_never_take_the_same_notice(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    people = await add_people(sessionmaker, 150)
    await queue(sessionmaker, people)
    claimers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "tests.delivery_claimer", database_url),
            cwd=REPO,
            env=clean_environment(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), timeout=60) for p in claimers]
    assert [p.returncode for p in claimers] == [0, 0], [err.decode() for _out, err in outputs]
    one, two = (set(json.loads(out)) for out, _err in outputs)
    assert one, "both processes claimed some"
    assert two, "both processes claimed some"
    assert one & two == set()
    assert len(one | two) == len(people)
    assert await statuses(sessionmaker) == {OutboxStatus.SENT: len(people)}


class RunOnce:
    """`trainingbot jobs run-once` as a child process against the fake Bot API."""

    def __init__(
        self, tmp_path: Path, api: FakeBotApi, database_url: str, name: str, rate: float
    ) -> None:
        self.config = tmp_path / f"{name}.toml"
        self.log = tmp_path / f"{name}.log"
        self.config.write_text(
            f'[database]\nurl = "{database_url}"\n'
            f'[telegram]\nbase_url = "{api.base_url}"\n'
            f'[notifications]\nquiet_hours = ""\nrate_per_second = {rate}\n',
            encoding="utf-8",
        )
        self.env = clean_environment(TRAININGBOT_TELEGRAM_TOKEN=api.token)
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the process."""
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "bot.cli", "--config", str(self.config), "jobs", "run-once"),
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=log,
            )

    async def wait(self, timeout: float = 30) -> int:  # noqa: ASYNC109
        """Wait for the process to end; return its exit status."""
        assert self.process is not None
        try:
            return await asyncio.wait_for(self.process.wait(), timeout=timeout)
        except TimeoutError:
            self.process.kill()
            raise

    def output(self) -> str:
        """Return what the process printed."""
        return self.log.read_text(encoding="utf-8", errors="replace")


async def test_run_once_killed_mid_run_delivers_everything_after_a_restart_at_most_once_more(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    people = await add_people(sessionmaker, 150)
    keys = await queue(sessionmaker, people)
    first = RunOnce(tmp_path, api, database_url, "first", rate=50)
    await first.start()
    try:
        await api.wait_for("sendMessage", count=50, timeout=20)
    finally:
        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
    sent_before = Counter(key_of(call) for call in api.delivered())
    assert 50 <= len(sent_before) < len(keys), "killed in the middle"
    after_kill = await rows(sessionmaker)
    leased = {
        row.idempotency_key
        for row in after_kill
        if row.status == OutboxStatus.QUEUED and row.lease_until is not None
    }
    # Rows marked sent were sent; the leased ones were claimed and may or may not have
    # gone out. (A batch holds two seconds of sends: at most 100 rows at 50/s.)
    assert {r.idempotency_key for r in after_kill if r.status == OutboxStatus.SENT} <= set(
        sent_before
    )
    assert 0 < len(leased) <= 100
    # The killed process's leases would run out in a minute; let them run out now.
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.QUEUED)
            .values(lease_until=now_utc())
        )
    second = RunOnce(tmp_path, api, database_url, "second", rate=50)
    await second.start()
    assert await second.wait() == 0, second.output()
    delivered = Counter(key_of(call) for call in api.delivered())
    assert set(delivered) == set(keys), "every notice delivered"
    twice = {key for key, count in delivered.items() if count > 1}
    assert max(delivered.values()) <= 2
    assert twice <= leased & set(sent_before), "only notices in flight at the kill repeat"
    assert await statuses(sessionmaker) == {OutboxStatus.SENT: len(keys)}
    assert "delivery:" in second.output()


async def test_two_run_once_processes_share_the_outbox_and_the_rate(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    people = await add_people(sessionmaker, 40)
    keys = await queue(sessionmaker, people, per_person=2)
    runs = [RunOnce(tmp_path, api, database_url, f"run{n}", rate=20) for n in range(2)]
    # The second starts once the first sends: a claim looks at 4 x batch rows (160 at
    # 20/s), and on PostgreSQL a claim at the same moment skips them and finds nothing.
    await runs[0].start()
    await api.wait_for("sendMessage", timeout=20)
    await runs[1].start()
    assert [await run.wait() for run in runs] == [0, 0], [run.output() for run in runs]
    outputs = [run.output() for run in runs]
    assert all("delivery: 0 sent" not in output for output in outputs), outputs
    delivered = api.delivered()
    assert Counter(key_of(call) for call in delivered) == Counter(keys)
    assert_rate_kept([call.at for call in delivered], 20)
    assert closest_per_chat(delivered) >= 1.0 - 0.05
    assert await statuses(sessionmaker) == {OutboxStatus.SENT: len(keys)}
