"""`trainingbot admin …` and `trainingbot web` as an administrator types them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.cli import main
from bot.config import load_settings
from bot.web.passwords import verify_password
from db import accounts
from db.models import AccountRole, AdminSession
from db.session import create_engine, create_sessionmaker

REPO = Path(__file__).resolve().parents[1]
UNITS = "code,name,kind,parent_code\nYTH,Huyện Yên Thành,district,\n"
PEOPLE = (
    "phone,full_name,unit_code,position,gender,birth_year,theory_level,roles\n"
    "0912000175,Lý Đình Trung,YTH,Bí thư,nam,1975,cao_cap,learner;unit_head\n"
    "0912000178,Phạm Thu Trang,YTH,,nữ,1990,,learner\n"
)


def run(
    tmp_path: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `trainingbot --config … ARGS` with `stdin` piped in."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRAININGBOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(tmp_path / "config.toml"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean | (env or {}),
        check=False,
        timeout=60,
    )


@pytest.fixture
def roster(tmp_path: Path) -> Path:
    """A migrated SQLite database with one district and two people."""
    (tmp_path / "config.toml").write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n', encoding="utf-8"
    )
    (tmp_path / "units.csv").write_text(UNITS, encoding="utf-8")
    (tmp_path / "people.csv").write_text(PEOPLE, encoding="utf-8")
    config = ["--config", str(tmp_path / "config.toml")]
    assert main([*config, "db", "upgrade"]) == 0
    assert main([*config, "import", "units", str(tmp_path / "units.csv")]) == 0
    assert main([*config, "import", "people", str(tmp_path / "people.csv")]) == 0
    return tmp_path


async def stored_account(tmp_path: Path, name: str) -> accounts.AdminAccount | None:
    settings = load_settings(str(tmp_path / "config.toml"), {})
    engine = create_engine(settings.database.url.get_secret_value())
    try:
        async with create_sessionmaker(engine)() as session:
            return await accounts.account_by_name(session, name)
    finally:
        await engine.dispose()


async def test_create_user_reads_the_password_from_stdin(roster: Path) -> None:
    result = run(roster, "admin", "create-user", "Staff.Office", stdin="a long passphrase\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "account 'staff.office' created: admin, sees every unit"
    account = await stored_account(roster, "staff.office")
    assert account is not None
    assert account.role == AccountRole.ADMIN
    assert account.password_hash.startswith("$argon2id$")
    assert "a long passphrase" not in account.password_hash
    assert verify_password(account.password_hash, "a long passphrase")
    assert not verify_password(account.password_hash, "a long passphrasE")


async def test_a_unit_heads_account_is_tied_to_a_roster_unit_head(roster: Path) -> None:
    result = run(
        roster,
        *("admin", "create-user", "trung", "--role", "unit_head", "--person", "+84912000175"),
        stdin="a long passphrase\n",
    )
    assert result.returncode == 0, result.stderr
    assert "as Lý Đình Trung (Huyện Yên Thành)" in result.stdout
    account = await stored_account(roster, "trung")
    assert account is not None
    assert account.person is not None
    assert account.person.phone == "0912000175"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("x1",), "short\n", "a password has at least 10 characters; nothing changed"),
        (("bad name",), "a long passphrase\n", "may contain only letters a-z"),
        (
            ("hd", "--role", "unit_head"),
            "a long passphrase\n",
            "a unit head's account needs the head's roster person (--person)",
        ),
        (
            ("hd", "--role", "unit_head", "--person", "0912000178"),
            "a long passphrase\n",
            "that roster person is not a unit head",
        ),
        (("hd", "--person", "0999999999"), "a long passphrase\n", "no roster person with phone"),
    ],
)
def test_create_user_refuses_with_one_sentence(
    roster: Path, args: tuple[str, ...], stdin: str, message: str
) -> None:
    result = run(roster, "admin", "create-user", *args, stdin=stdin)
    assert result.returncode == 2
    assert result.stderr.startswith("trainingbot: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_a_name_is_taken_once(roster: Path) -> None:
    assert run(roster, "admin", "create-user", "admin", stdin="a long passphrase\n").returncode == 0
    result = run(roster, "admin", "create-user", "ADMIN", stdin="another passphrase\n")
    assert result.returncode == 2
    assert "an account named 'admin' exists already" in result.stderr


async def test_set_password_ends_the_sessions_and_list_users_shows_accounts(
    roster: Path,
) -> None:
    assert run(roster, "admin", "create-user", "admin", stdin="a long passphrase\n").returncode == 0
    settings = load_settings(str(roster / "config.toml"), {})
    engine = create_engine(settings.database.url.get_secret_value())
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            account = await accounts.account_by_name(session, "admin")
            assert account is not None
            import datetime as dt

            now = dt.datetime.now(dt.UTC)
            await accounts.open_session(session, account, now, dt.timedelta(hours=1))
        result = run(roster, "admin", "set-password", "admin", stdin="a new passphrase!\n")
        assert result.returncode == 0, result.stderr
        async with sessionmaker() as session:
            left = await session.scalar(select(func.count()).select_from(AdminSession))
            account = await accounts.account_by_name(session, "admin")
        assert left == 0
        assert account is not None
        assert verify_password(account.password_hash, "a new passphrase!")
    finally:
        await engine.dispose()
    assert (
        run(roster, "admin", "set-password", "nobody", stdin="a new passphrase!\n").returncode == 2
    )
    listing = run(roster, "admin", "list-users")
    assert listing.returncode == 0
    assert listing.stdout.startswith("admin ")
    assert "last login: " in listing.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_trainingbot_web_serves_the_admin_without_a_chat_token(roster: Path) -> None:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRAININGBOT_")}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot.cli", "--config", str(roster / "config.toml"), "web"),
        cwd=REPO,
        env=clean | {"TRAININGBOT_WEB_LISTEN_PORT": str(port)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert line.decode().strip() == f"web admin on http://127.0.0.1:{port}/"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok", "database": "ok"}
            async with http.get(f"http://127.0.0.1:{port}/login") as response:
                assert "Đăng nhập" in await response.text()
        # The port is taken now: a second one says so in one sentence.
        second = run(roster, "web", env={"TRAININGBOT_WEB_LISTEN_PORT": str(port)})
        assert second.returncode == 2
        assert f"cannot listen for the web admin on 127.0.0.1:{port}" in second.stderr
        assert "[web] listen_host and listen_port" in second.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=15) == 0


def test_web_keys_are_checked_like_every_key(roster: Path) -> None:
    config = roster / "config.toml"
    config.write_text(
        config.read_text(encoding="utf-8") + '[web]\npublic_url = "admin.example.org"\n',
        encoding="utf-8",
    )
    result = run(roster, "web")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"trainingbot: {config} line 4: [web] public_url: must start with https:// "
        "(or http:// without TLS)"
    )
    result = run(roster, "db", "current", env={"TRAININGBOT_WEB_TRUSTED_PROXIES": "10.0.0.1,nginx"})
    assert "TRAININGBOT_WEB_TRUSTED_PROXIES: [web] trusted_proxies" in result.stderr
