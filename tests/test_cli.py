"""The command line as a user types it: exit codes and one clear sentence on failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main

REPO = Path(__file__).resolve().parents[1]


def config_for(tmp_path: Path, url: str | None = None) -> str:
    path = tmp_path / "config.toml"
    url = url or f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    path.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    return str(path)


def test_run_without_channel_says_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", config_for(tmp_path), "run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "[telegram] token" in err
    assert "TRAININGBOT_TELEGRAM_TOKEN" in err
    assert "make demo" in err


def test_config_error_is_one_message_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[bot]\ntimezone = 7\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(bad), "db", "current"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"trainingbot: {bad} line 2: [bot] timezone: Input should be a valid string"
    )


def test_config_from_environment_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAININGBOT_CONFIG", config_for(tmp_path))
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "bot.db").exists()
    assert "database at revision" in capsys.readouterr().out


def test_db_upgrade_then_current(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = config_for(tmp_path)
    assert main(["--config", config, "db", "current"]) == 1
    assert "behind" in capsys.readouterr().out
    assert main(["--config", config, "db", "upgrade"]) == 0
    assert main(["--config", config, "db", "current"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["--config", config, "db", "downgrade", "base"]) == 0
    assert "base (empty)" in capsys.readouterr().out


def test_command_on_unmigrated_database_says_to_upgrade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    people = tmp_path / "people.csv"
    people.write_text("phone,full_name,unit_code,position,gender,birth_year,theory_level,roles\n")
    assert main(["--config", config_for(tmp_path), "import", "people", str(people)]) == 2
    assert "run `trainingbot db upgrade` first" in capsys.readouterr().err


def test_unreachable_database_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_for(tmp_path, "postgresql+asyncpg://nobody@127.0.0.1:1/none")
    assert main(["--config", config, "db", "current"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trainingbot: cannot open the database")
    assert err.count("\n") == 1


def test_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["fly"])
    assert caught.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "trainingbot"
    result = subprocess.run(
        [str(script), "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TRAININGBOT_CONFIG": ""},
    )
    assert result.returncode == 0
    for command in ("db", "import", "export", "console", "demo", "run"):
        assert command in result.stdout
