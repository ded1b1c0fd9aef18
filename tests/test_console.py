"""The console channel: scripted conversations through run_console and the real command."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels import console
from bot.channels.console import run_console
from bot.config import Settings
from db import migrate
from db.models import ChannelAccount, Conversation, Form, Program
from db.session import create_engine, create_sessionmaker
from handlers.types import Incoming
from tests.factories import add_class, add_person, add_unit

REPO = Path(__file__).resolve().parents[1]
# The installed command, as people run it; `python -m bot.cli` where it is not installed.
SCRIPT = Path(sys.executable).parent / "trainingbot"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bot.cli"]
PHONE = "0912000102"


def _upcoming(days: int) -> dt.date:
    """Return a date `days` from today where the school is (the console uses the clock)."""
    return dt.datetime.now(Settings().bot.zone).date() + dt.timedelta(days=days)


async def _seed(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as s, s.begin():
        school = await add_unit(s, "TCT", "Trường Chính trị tỉnh")
        await add_person(s, PHONE, "Trần Thu Trang", school, birth_year=1989)
        await add_class(
            s, "KN-01", "Bồi dưỡng kỹ năng lãnh đạo, quản lý cấp phòng",
            start=_upcoming(10), deadline=_upcoming(5),
        )  # fmt: skip
        await add_class(
            s, "TC-K45", "Trung cấp lý luận chính trị - hành chính K45",
            program=Program.TRUNG_CAP_LLCT, form=Form.PART_TIME, start=_upcoming(40),
        )  # fmt: skip


@pytest.fixture
async def seeded(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    """Return the session factory of a database with a small roster and two classes."""
    await _seed(sessionmaker)
    return sessionmaker


class Terminal(io.StringIO):
    """Typed input at a terminal."""

    def isatty(self) -> bool:
        """Say this is a terminal."""
        return True


async def _run(
    sessionmaker: async_sessionmaker[AsyncSession],
    script: str,
    *,
    as_phone: str | None = PHONE,
    language: str | None = None,
    stdin: io.StringIO | None = None,
) -> tuple[int, str]:
    stdout = io.StringIO()
    status = await run_console(
        sessionmaker,
        Settings(),
        as_phone=as_phone,
        language=language,
        stdin=stdin or io.StringIO(script),
        stdout=stdout,
    )
    return status, stdout.getvalue()


async def test_scripted_conversation_as_a_roster_person(
    seeded: async_sessionmaker[AsyncSession],
) -> None:
    status, out = await _run(seeded, "/classes\n2\n")
    assert status == 0
    greeting, rest = out.split("\n", 1)
    assert greeting == "Kính chào đồng chí Trần Thu Trang (Trường Chính trị tỉnh)!"
    listing, detail = rest.split("Các lớp sắp mở — trang 1/1 (tổng 2 lớp):")[1].split("Mã lớp: ")
    assert "1. Bồi dưỡng kỹ năng lãnh đạo, quản lý cấp phòng" in listing
    assert "\n  1. KN-01 · Bồi dưỡng kỹ năng lãnh đạo, quả…\n" in listing
    assert "\n  2. TC-K45 · Trung cấp lý luận chính trị - h…\n" in listing
    assert listing.endswith("\n\nTrung cấp lý luận chính trị - hành chính K45\n")
    assert detail.startswith("TC-K45\n")
    assert "Hình thức: Không tập trung" in detail
    assert "> " not in out  # no prompt when the input is not a terminal
    assert out.endswith("\n")


async def test_console_links_its_account_and_keeps_the_conversation(
    seeded: async_sessionmaker[AsyncSession],
) -> None:
    await _run(seeded, "/lang en\n", as_phone="+84 912 000 102")
    async with seeded() as s:
        account = (await s.scalars(select(ChannelAccount))).one()
        assert (account.channel, account.external_id) == ("console", PHONE)
        conversation = await s.get(Conversation, ("console", PHONE))
        assert conversation is not None
        assert conversation.language == "en"
    # A second run goes on in English, and links no second account.
    status, out = await _run(seeded, "/classes\n")
    assert status == 0
    assert out.startswith("Hello, Trần Thu Trang (Trường Chính trị tỉnh)!")
    assert "Upcoming classes — page 1 of 1 (2 in all):" in out
    async with seeded() as s:
        assert len((await s.scalars(select(ChannelAccount))).all()) == 1


async def test_visitor_and_language_option(seeded: async_sessionmaker[AsyncSession]) -> None:
    status, out = await _run(seeded, "what classes are coming?\n", as_phone=None, language="en")
    assert status == 0
    assert out.startswith("Hello! You are using the assistant as a visitor")
    assert "Upcoming classes — page 1 of 1 (2 in all):" in out
    async with seeded() as s:
        assert (await s.scalars(select(ChannelAccount))).all() == []


async def test_typed_words_press_buttons_and_blank_lines_are_skipped(
    seeded: async_sessionmaker[AsyncSession],
) -> None:
    status, out = await _run(seeded, "\n  \nlop sap mo\n\nkn-01\nquay lại danh sách\n")
    assert status == 0
    assert "Mã lớp: KN-01" in out
    assert out.count("Các lớp sắp mở — trang 1/1") == 2


async def test_unknown_or_invalid_phone_exits_2(
    seeded: async_sessionmaker[AsyncSession], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = await _run(seeded, "/help\n", as_phone="0987654321")
    assert (status, out) == (2, "")
    assert "no person with phone 0987654321 in the roster" in capsys.readouterr().err
    status, out = await _run(seeded, "/help\n", as_phone="12345")
    assert (status, out) == (2, "")
    assert "'12345' is not a Vietnamese mobile number" in capsys.readouterr().err


async def test_terminal_shows_a_banner_and_prompts(
    seeded: async_sessionmaker[AsyncSession],
) -> None:
    status, out = await _run(seeded, "", stdin=Terminal("/help\n"))
    assert status == 0
    assert out.startswith("Trợ lý lớp học của Trường Chính trị tỉnh. Gõ /help")
    assert out.count("> ") == 2  # before /help and before the end of input
    assert out.endswith("> \n")


async def test_end_of_input_right_away(seeded: async_sessionmaker[AsyncSession]) -> None:
    status, out = await _run(seeded, "")
    assert status == 0
    assert out.startswith("Kính chào đồng chí Trần Thu Trang")


@pytest.fixture
async def config_file(tmp_path: Path) -> Path:
    """Return a config naming a migrated, seeded SQLite database, for the real command."""
    database = tmp_path / "console.db"
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        await migrate.upgrade(engine)
        await _seed(create_sessionmaker(engine))
    finally:
        await engine.dispose()
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{database}"\n', encoding="utf-8")
    return config


async def test_the_real_command_with_piped_input(config_file: Path) -> None:
    config = config_file
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAININGBOT_")}
    process = await asyncio.create_subprocess_exec(
        *COMMAND, "--config", str(config), "console", "--as", PHONE,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=REPO, env={**env, "PYTHONIOENCODING": "utf-8"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(b"/classes\n2\n"), 60)
    text = out.decode()
    assert process.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    assert text.startswith("Kính chào đồng chí Trần Thu Trang (Trường Chính trị tỉnh)!")
    assert "Các lớp sắp mở — trang 1/1 (tổng 2 lớp):" in text
    assert "Mã lớp: TC-K45" in text

    process = await asyncio.create_subprocess_exec(
        *COMMAND, "--config", str(config), "console", "--as", "0999999999",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=REPO, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(b""), 60)
    assert process.returncode == 2
    assert "no person with phone 0999999999 in the roster" in err.decode()
    assert "Traceback" not in err.decode()


async def test_a_failing_message_is_answered_and_the_chat_goes_on(
    seeded: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_dispatch = console.dispatch

    async def dispatch_failing_on_boom(incoming: Incoming, *args: Any, **kwargs: Any) -> Any:
        if incoming.text == "boom":
            raise RuntimeError("a bug")
        return await real_dispatch(incoming, *args, **kwargs)

    monkeypatch.setattr(console, "dispatch", dispatch_failing_on_boom)
    status, out = await _run(seeded, "/lang en\nboom\n/classes\n")
    assert status == 0
    assert "Sorry, something went wrong on our side" in out
    assert "Upcoming classes — page 1 of 1" in out.split("Sorry")[1]


async def test_the_real_command_survives_bytes_that_are_not_utf8(config_file: Path) -> None:
    config = config_file
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAININGBOT_")}
    process = await asyncio.create_subprocess_exec(
        *COMMAND, "--config", str(config), "console", "--as", PHONE,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=REPO,
        env={**env, "PYTHONIOENCODING": "utf-8", "LANG": "C.UTF-8"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(b"/class \xff\x00KN-01\n/classes\n"), 60)
    assert process.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    # The line after the bad bytes is answered too: nothing is lost.
    assert "Các lớp sắp mở — trang 1/1 (tổng 2 lớp):" in out.decode()
