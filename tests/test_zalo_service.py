"""`[zalo]` configuration, and `trainingbot run` with only Zalo configured, as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings
from tests.fake_zalo_api import FakeZaloApi, fake_zalo_api, text_update
from tests.telegram_support import free_port

REPO = Path(__file__).resolve().parents[1]
TOKEN_ENV = "TRAININGBOT_ZALO_TOKEN"


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(str(path), environ or {})
    return str(caught.value)


def test_zalo_defaults() -> None:
    zalo = Settings().zalo
    assert zalo.token is None
    assert (zalo.mode, zalo.base_url, zalo.path) == (
        "polling",
        "https://bot-api.zaloplatforms.com",
        "/zalo",
    )
    assert (zalo.poll_timeout, zalo.rate_per_second) == (30, 5)
    # Unset, Zalo's webhook is served where Telegram's is.
    assert Settings().zalo_listen == ("127.0.0.1", 8080)


def test_zalo_keys_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[zalo]\nmode = "webhook"\nurl = "https://bot.example.org/zalo"\n'
        'base_url = "https://bot-api.zapps.me/"\nlisten_port = 8090\n',
        encoding="utf-8",
    )
    settings = load_settings(
        str(path),
        {TOKEN_ENV: " 1459232241454765289:AbC-d_e ", "TRAININGBOT_ZALO_SECRET_TOKEN": "x" * 8},
    )
    zalo = settings.zalo
    assert zalo.token is not None
    assert zalo.token.get_secret_value() == "1459232241454765289:AbC-d_e"
    assert zalo.base_url == "https://bot-api.zapps.me"
    assert settings.zalo_listen == ("127.0.0.1", 8090)
    assert "AbC" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[zalo]\nmode = "webhook"\n', '[zalo]: mode = "webhook" needs url and secret_token'),
        ('[zalo]\nsecret_token = "short"\n', "[zalo] secret_token: must be 8-256 characters"),
        ('[zalo]\nsecret_token = "has space in it"\n', "[zalo] secret_token: must be 8-256"),
        ('[zalo]\nurl = "http://bot.example.org/zalo"\n', "[zalo] url: must start with https://"),
        ('[zalo]\nbase_url = "https://bot-api.zapps.me/bot123"\n', "[zalo] base_url: must be"),
        ("[zalo]\npoll_timeout = 0\n", "[zalo] poll_timeout"),
        ("[zalo]\nrate_per_second = 0\n", "[zalo] rate_per_second"),
        ('[zalo]\npath = "zalo"\n', "[zalo] path: must start with /"),
        ('[zalo]\nsecret = "x"\n', "[zalo] secret: unknown key"),
    ],
)
def test_bad_zalo_settings_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_a_malformed_token_is_refused_without_echoing_it(tmp_path: Path) -> None:
    message = error_of(tmp_path, "", {TOKEN_ENV: "oops-secret"})
    assert "TRAININGBOT_ZALO_TOKEN: [zalo] token: is not a Zalo bot token" in message
    assert "oops-secret" not in message


def test_two_webhooks_on_one_address_need_two_paths(tmp_path: Path) -> None:
    text = (
        '[telegram]\ntoken = "1:a"\nmode = "webhook"\nurl = "https://x.vn/t"\n'
        'secret_token = "s"\npath = "/hook"\n'
        '[zalo]\ntoken = "2:b"\nmode = "webhook"\nurl = "https://x.vn/z"\n'
        'secret_token = "12345678"\npath = "/hook"\n'
    )
    message = error_of(tmp_path, text)
    assert "[zalo] path: /hook is also [telegram] path on the same listening address" in message
    # On another port, the same path is fine.
    path = tmp_path / "other.toml"
    path.write_text(text + "listen_port = 8090\n", encoding="utf-8")
    assert load_settings(str(path), {}).zalo_listen == ("127.0.0.1", 8090)


@pytest.fixture
async def api() -> AsyncIterator[FakeZaloApi]:
    async with fake_zalo_api() as api:
        yield api


async def _start(tmp_path: Path, zalo: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    """Migrate a fresh database, then start `trainingbot run` with `[zalo]` set to `zalo`."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n'
        f'[notifications]\nquiet_hours = ""\n[zalo]\n{zalo}',
        encoding="utf-8",
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRAININGBOT_")}
    command = [sys.executable, "-m", "bot.cli", "--config", str(config)]
    upgrade = await asyncio.create_subprocess_exec(*command, "db", "upgrade", cwd=REPO, env=clean)
    assert await upgrade.wait() == 0
    return await asyncio.create_subprocess_exec(
        *command,
        "run",
        cwd=REPO,
        env=clean | env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _finish(process: asyncio.subprocess.Process) -> tuple[int, str]:
    try:
        _out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_run_serves_zalo_alone_and_stops_on_sigterm(api: FakeZaloApi, tmp_path: Path) -> None:
    process = await _start(
        tmp_path, f'base_url = "{api.base_url}"\npoll_timeout = 1\n', {TOKEN_ENV: api.token}
    )
    await api.wait_for("getUpdates", within=20)
    await api.inject(text_update("/help", user_id="u-cli", message_id="cli-1"))
    [answer] = await api.wait_for("sendMessage", within=10)
    assert answer.params["chat_id"] == "u-cli"
    assert "/classes" in answer.params["text"]
    process.send_signal(signal.SIGTERM)
    status, err = await _finish(process)
    assert status == 0, err
    assert "trainingbot started (zalo, polling mode)" in err
    assert api.token not in err


async def test_a_token_zalo_refuses_is_one_sentence(api: FakeZaloApi, tmp_path: Path) -> None:
    token = "999:not-the-fakes-token"
    process = await _start(tmp_path, f'base_url = "{api.base_url}"\n', {TOKEN_ENV: token})
    status, err = await _finish(process)
    assert status == 2
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("trainingbot: ")]
    assert line.startswith("trainingbot: Zalo refused the bot token")
    assert token not in err


async def test_an_unreachable_zalo_api_is_one_sentence(tmp_path: Path) -> None:
    token = "999:UNREACHABLE-token"
    process = await _start(
        tmp_path, f'base_url = "http://127.0.0.1:{free_port()}"\n', {TOKEN_ENV: token}
    )
    status, err = await _finish(process)
    assert status == 2
    [line] = [line for line in err.splitlines() if line.startswith("trainingbot: ")]
    assert line.startswith("trainingbot: cannot reach the Zalo Bot API at http://127.0.0.1:")
    assert token not in err
