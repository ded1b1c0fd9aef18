"""ZNS alone, without a chat channel: `trainingbot jobs run-once` and `trainingbot run` deliver
by ZNS to people without a chat, leave the notices of people linked to a chat queued for
it, and `trainingbot run` refuses to start with nothing it could deliver."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings, TelegramSettings
from bot.service import run_service
from db.models import OutboxMessage, OutboxStatus
from tests.fake_zns_api import OA_SECRET_KEY, SECRET_KEY, FakeZnsApi, fake_zns_api, receipt
from tests.telegram_support import free_port
from tests.test_zns_delivery import queue, school
from tests.test_zns_webhook import _listening, wait_until
from tests.zns_support import REMINDER_FIELDS, rows, zns_section

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def fake() -> AsyncIterator[FakeZnsApi]:
    async with fake_zns_api() as api:
        yield api


def zns_only_config(tmp_path: Path, database_url: str, fake: FakeZnsApi, *, template: bool) -> Path:
    """Write a config with [zns] on (the reminder's template, if `template`) and no chat."""
    fields = "\n".join(f'{name} = "{source}"' for name, source in REMINDER_FIELDS.items())
    text = (
        f'[database]\nurl = "{database_url}"\n'
        '[notifications]\nquiet_hours = ""\n'
        "[zns]\nenabled = true\n"
        f'app_id = "{fake.app_id}"\nquota_reserve = 0\n'
        f'oauth_base_url = "{fake.base_url}"\nzns_base_url = "{fake.base_url}"\n'
        f'oa_base_url = "{fake.base_url}"\nlisten_port = {free_port()}\n'
    )
    if template:
        text += '[zns.templates.reminder]\ntemplate_id = "251234"\n'
        text += f"[zns.templates.reminder.fields]\n{fields}\n"
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    return config


async def trainingbot(config: Path, fake: FakeZnsApi, *args: str) -> tuple[int, str, str]:
    """Run `trainingbot --config CONFIG ARGS…` with ZNS's secrets in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAININGBOT_")} | {
        "TRAININGBOT_ZNS_SECRET_KEY": SECRET_KEY,
        "TRAININGBOT_ZNS_OA_SECRET_KEY": OA_SECRET_KEY,
        "TRAININGBOT_ZNS_REFRESH_TOKEN": fake.refresh_token,
        "TRAININGBOT_WEB_LISTEN_PORT": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "bot.cli", "--config", str(config), *args),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_run_once_without_a_chat_channel_delivers_by_zns_alone(
    fake: FakeZnsApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    people = await school(sessionmaker)
    await queue(sessionmaker, people["lan"], "reminder:lan")
    await queue(sessionmaker, people["trang"], "reminder:trang")
    config = zns_only_config(tmp_path, database_url, fake, template=True)
    status, out, err = await trainingbot(config, fake, "jobs", "run-once")
    assert status == 0, err
    assert out.splitlines()[-1].startswith("delivery: 1 sent, 0 failed"), out
    by_key = {row.idempotency_key: row for row in await rows(sessionmaker)}
    assert (by_key["reminder:lan"].status, by_key["reminder:lan"].channel) == (
        OutboxStatus.SENT,
        "zns",
    )
    # Trang is linked on Telegram: her notice waits for a process that serves it, never
    # a paid message instead.
    assert (by_key["reminder:trang"].status, by_key["reminder:trang"].attempts) == (
        OutboxStatus.QUEUED,
        0,
    )
    assert [sent.phone for sent in fake.sent] == ["84912000402"]


async def test_without_a_chat_channel_or_a_zns_template_nothing_is_delivered_and_run_refuses(
    fake: FakeZnsApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    people = await school(sessionmaker)
    await queue(sessionmaker, people["lan"], "reminder:lan")
    config = zns_only_config(tmp_path, database_url, fake, template=False)
    status, out, _err = await trainingbot(config, fake, "jobs", "run-once")
    assert status == 0
    assert out.splitlines()[-1] == (
        "delivery: no chat channel is configured ([telegram] or [zalo] token) and no ZNS "
        "template is on: 1 notices stay queued"
    )
    status, _out, err = await trainingbot(config, fake, "run")
    assert status == 2
    assert "trainingbot: no chat channel is configured" in err
    assert "or turn [zns] on with a template" in err
    assert "Traceback" not in err


async def test_the_service_without_a_chat_channel_sends_by_zns_and_takes_receipts(
    fake: FakeZnsApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    await queue(sessionmaker, people["lan"], "reminder:lan")
    base = Settings.model_validate({"notifications": {"quiet_hours": ""}})
    settings = base.model_copy(
        update={
            "telegram": TelegramSettings(),
            "zns": zns_section(fake, listen_port=free_port()),
            "web": base.web.model_copy(update={"enabled": False}),
            "database": base.database.model_copy(update={"url": SecretStr(database_url)}),
        }
    )
    stopping = asyncio.Event()
    task = asyncio.create_task(
        run_service(sessionmaker, settings, stopping=stopping, handle_signals=False, jobs=[])
    )
    host, port = settings.zns_listen
    try:
        await _listening(f"http://{host}:{port}/healthz")

        async def sent() -> bool:
            async with sessionmaker() as session:
                row = await session.scalar(select(OutboxMessage))
            return row is not None and row.status == OutboxStatus.SENT

        await wait_until(sent)
        (message,) = fake.sent
        event = receipt(message.msg_id, message.tracking_id, timestamp="1764550000000")
        assert await fake.post_event(f"http://{host}:{port}/zalo-oa", event) == (200, "ok")
    finally:
        stopping.set()
        assert await asyncio.wait_for(task, timeout=10) == 0
    (row,) = await rows(sessionmaker)
    assert (row.channel, row.delivered_at is not None) == ("zns", True)
