"""`trainingbot run` failing to start: one sentence, exit status 2, never the token."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_bot_api import FakeBotApi
from tests.telegram_support import SECRET, fake_bot_api, free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def trainingbot(tmp_path: Path, telegram: str, env: dict[str, str]) -> tuple[int, str]:
    """Run `db upgrade`, then `run` with `[telegram]` set to `telegram`; return status, stderr."""
    config = tmp_path / "config.toml"
    database = tmp_path / "bot.db"
    config.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{database}"\n[telegram]\n{telegram}',
        encoding="utf-8",
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRAININGBOT_")}
    environ = clean | {"TRAININGBOT_WEB_LISTEN_PORT": "0"} | env
    command = [sys.executable, "-m", "bot.cli", "--config", str(config)]
    upgrade = await asyncio.create_subprocess_exec(*command, "db", "upgrade", cwd=REPO, env=clean)
    assert await upgrade.wait() == 0
    process = await asyncio.create_subprocess_exec(
        *command,
        "run",
        cwd=REPO,
        env=environ,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode()


def one_sentence(stderr: str) -> str:
    """Return the error line of `stderr` (INFO lines aside), checking there is no traceback."""
    assert "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("trainingbot: ")]
    return line


async def test_an_unreachable_bot_api_is_one_sentence(tmp_path: Path) -> None:
    token = "123456:UNREACHABLE-token"
    status, err = await trainingbot(
        tmp_path,
        f'base_url = "http://127.0.0.1:{free_port()}"\n',
        {"TRAININGBOT_TELEGRAM_TOKEN": token},
    )
    assert status == 2
    assert one_sentence(err).startswith("trainingbot: cannot reach the Telegram Bot API at http")
    assert token not in err


async def test_an_empty_token_means_no_channel(tmp_path: Path) -> None:
    status, err = await trainingbot(tmp_path, "", {"TRAININGBOT_TELEGRAM_TOKEN": ""})
    assert status == 2
    assert one_sentence(err).startswith("trainingbot: no chat channel is configured")


async def test_a_malformed_token_is_a_config_error(tmp_path: Path) -> None:
    status, err = await trainingbot(tmp_path, "", {"TRAININGBOT_TELEGRAM_TOKEN": "oops-secret"})
    assert status == 2
    assert "TRAININGBOT_TELEGRAM_TOKEN: [telegram] token: is not a bot token" in one_sentence(err)
    assert "oops-secret" not in err


async def test_a_token_telegram_refuses_is_one_sentence(api: FakeBotApi, tmp_path: Path) -> None:
    token = "999:not-the-fakes-token"
    status, err = await trainingbot(
        tmp_path, f'base_url = "{api.base_url}"\n', {"TRAININGBOT_TELEGRAM_TOKEN": token}
    )
    assert status == 2
    assert one_sentence(err).startswith("trainingbot: Telegram refused the bot token")
    assert token not in err


def webhook(api: FakeBotApi, port: int) -> tuple[str, dict[str, str]]:
    config = (
        f'base_url = "{api.base_url}"\nmode = "webhook"\n'
        f'url = "https://bot.example.org/telegram"\nlisten_port = {port}\n'
        f'secret_token = "{SECRET}"\n'
    )
    return config, {"TRAININGBOT_TELEGRAM_TOKEN": api.token}


async def test_a_busy_webhook_port_is_one_sentence(api: FakeBotApi, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, err = await trainingbot(tmp_path, *webhook(api, port))
    assert status == 2
    assert one_sentence(err).startswith(
        f"trainingbot: cannot listen for the webhook on 127.0.0.1:{port}"
    )
    assert api.calls_of("setWebhook") == []


async def test_a_refused_set_webhook_is_one_sentence(api: FakeBotApi, tmp_path: Path) -> None:
    api.fail("setWebhook", 400, "Bad Request: bad webhook: Failed to resolve host")
    status, err = await trainingbot(tmp_path, *webhook(api, free_port()))
    assert status == 2
    assert one_sentence(err) == (
        "trainingbot: Telegram refused to start the bot: Bad webhook: failed to resolve host"
    )
    assert api.token not in err


def test_run_logs_our_loggers_at_info_and_httpx_at_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.service
    from bot.cli import main

    seen: dict[str, int] = {}

    async def service(*_args: object, **_kwargs: object) -> int:
        names = ("bot", "handlers", "jobs", "httpx", "httpcore")
        seen.update({name: logging.getLogger(name).getEffectiveLevel() for name in names})
        return 0

    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n', encoding="utf-8"
    )
    monkeypatch.setenv("TRAININGBOT_TELEGRAM_TOKEN", "123456:TEST-token")
    monkeypatch.setattr(bot.service, "run_service", service)
    levels = {name: logging.getLogger(name).level for name in ("bot", "handlers", "jobs")}
    try:
        assert main(["--config", str(config), "db", "upgrade"]) == 0
        assert main(["--config", str(config), "run"]) == 0
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert seen == {
        "bot": logging.INFO,
        "handlers": logging.INFO,
        "jobs": logging.INFO,
        "httpx": logging.WARNING,
        "httpcore": logging.WARNING,
    }
