"""`trainingbot jobs run-once` and `trainingbot jobs status` as a user types them."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import OutboxStatus
from jobs.registry import JOBS
from tests.delivery_support import add_people, key_of, queue, statuses
from tests.fake_bot_api import FakeBotApi
from tests.telegram_support import fake_bot_api
from tests.test_delivery_processes import clean_environment

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


def write_config(tmp_path: Path, database_url: str, api: FakeBotApi | None = None) -> Path:
    """Write a config file for the test database, with the fake Bot API if given."""
    config = tmp_path / "config.toml"
    text = f'[database]\nurl = "{database_url}"\n[notifications]\nquiet_hours = ""\n'
    if api is not None:
        text += f'[telegram]\nbase_url = "{api.base_url}"\n'
    config.write_text(text, encoding="utf-8")
    return config


async def trainingbot(config: Path, *args: str, token: str | None = None) -> tuple[int, str, str]:
    """Run `trainingbot --config CONFIG ARGS…`; return the exit status, stdout and stderr."""
    env = clean_environment(**({"TRAININGBOT_TELEGRAM_TOKEN": token} if token else {}))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "bot.cli", "--config", str(config), *args),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_status_of_a_fresh_database_shows_an_empty_outbox_and_jobs_never_run(
    database_url: str, tmp_path: Path
) -> None:
    status, out, err = await trainingbot(write_config(tmp_path, database_url), "jobs", "status")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "outbox: 0 queued (0 due now), 0 sent, 0 failed, 0 skipped"
    assert lines[1] == "jobs (times in Asia/Ho_Chi_Minh):"
    for job in JOBS:
        [line] = [line for line in lines if line.split()[0] == job.name]
        if job.daily_at is None:
            assert line.split() == [job.name, "next:", "due", "now", "(never", "run)"]
        else:
            # A daily job is first due at its time of day: next: YYYY-MM-DD HH:MM:SS.
            assert line.split()[4:] == ["(never", "run)"]


async def test_run_once_without_a_token_runs_the_jobs_and_leaves_the_notices_queued(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str, tmp_path: Path
) -> None:
    people = await add_people(sessionmaker, 3)
    await queue(sessionmaker, people)
    config = write_config(tmp_path, database_url)
    status, out, _err = await trainingbot(config, "jobs", "run-once")
    assert status == 0
    assert out.splitlines() == [
        # Daily jobs (the digest, the summary) wait for their time of day.
        f"jobs run: {', '.join(job.name for job in JOBS if job.daily_at is None)}",
        "delivery: no chat channel is configured ([telegram] or [zalo] token): "
        "3 notices stay queued",
    ]
    assert await statuses(sessionmaker) == {OutboxStatus.QUEUED: 3}
    # A second run finds no job due: each ran for its period.
    status, out, _err = await trainingbot(config, "jobs", "run-once")
    assert (status, out.splitlines()[0]) == (0, "jobs run: none was due")
    status, out, _err = await trainingbot(config, "jobs", "status")
    lines = out.splitlines()
    assert lines[0] == "outbox: 3 queued (3 due now), 0 sent, 0 failed, 0 skipped"
    for job in (job for job in JOBS if job.daily_at is None):
        [line] = [line for line in lines if line.split()[0] == job.name]
        # next: YYYY-MM-DD HH:MM:SS  last: YYYY-MM-DD HH:MM:SS  ok: N
        words = line.split()
        assert words[1] == "next:"
        assert words[4] == "last:"
        assert words[7] == "ok:"


async def test_run_once_sends_the_queued_notices_then_status_counts_them(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    people = await add_people(sessionmaker, 4)
    keys = await queue(sessionmaker, people)
    # The first chat blocked the bot.
    api.fail_blocked()
    config = write_config(tmp_path, database_url, api)
    status, out, err = await trainingbot(config, "jobs", "run-once", token=api.token)
    assert status == 0, err
    assert out.splitlines()[-1] == (
        "delivery: 3 sent, 0 failed, 0 to retry, 0 throttled, 0 skipped (expired), 1 unreachable"
    )
    assert sorted(key_of(call) for call in api.delivered()) == sorted(keys[1:])
    assert api.token not in out + err
    status, out, err = await trainingbot(config, "jobs", "status")
    assert status == 0, err
    assert out.splitlines()[:2] == [
        "outbox: 0 queued (0 due now), 3 sent, 1 failed, 0 skipped",
        "  failed in the last 24 h: 1 × unreachable: 403 Forbidden: bot was blocked by the user",
    ]
