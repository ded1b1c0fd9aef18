"""`trainingbot demo`: the demo roster loads with upcoming classes and opens the chat."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.cli import main
from db.models import Person, TrainingClass, Unit
from db.session import create_engine, create_sessionmaker


async def _counts(url: str) -> tuple[int, int, int, int]:
    engine = create_engine(url)
    today = dt.datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
    try:
        async with create_sessionmaker(engine)() as session:
            units = await session.scalar(select(func.count()).select_from(Unit))
            people = await session.scalar(select(func.count()).select_from(Person))
            classes = await session.scalar(select(func.count()).select_from(TrainingClass))
            upcoming = await session.scalar(
                select(func.count()).where(TrainingClass.start_date >= today)
            )
    finally:
        await engine.dispose()
    return units or 0, people or 0, classes or 0, upcoming or 0


def test_demo_sets_up_upcoming_classes_and_is_repeatable(
    tmp_path: Path, demo_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    args = ["demo", "--data", str(demo_data), "--database", url, "--no-console"]
    assert main(args) == 0
    assert "17 added" in capsys.readouterr().out
    # Seven of the eight demo classes are upcoming whatever today is; one has ended.
    assert asyncio.run(_counts(url)) == (17, 119, 8, 7)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "people: 119 rows — 0 added, 0 updated, 119 unchanged" in out


def test_demo_without_roster_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    assert main(["demo", "--data", str(tmp_path), "--database", url, "--no-console"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"trainingbot: no demo roster in {tmp_path}")
    assert err.count("\n") == 1


def test_demo_chats_with_piped_input(tmp_path: Path, demo_data: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "demo",
            "--data",
            str(demo_data),
            "--database",
            url,
            "--as",
            "0912000178",
        ],
        input="lớp nào sắp mở?\n/lang en\ntrung cap ly luan\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "Kính chào đồng chí Phạm Thu Trang (Huyện Yên Thành)" in result.stdout
    assert "Các lớp sắp mở" in result.stdout
    assert "Switched to English" in result.stdout
    assert "Trung cấp lý luận chính trị - hành chính K45" in result.stdout
