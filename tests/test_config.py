"""Configuration: defaults, the file, the environment, and errors a person can act on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def error_of(path: str | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ or {})
    return str(caught.value)


def test_example_file_is_the_defaults() -> None:
    assert load_settings(str(EXAMPLE), {}) == Settings()


def test_defaults() -> None:
    settings = Settings()
    assert settings.database.url.get_secret_value() == "sqlite+aiosqlite:///var/trainingbot.db"
    assert settings.bot.timezone == "Asia/Ho_Chi_Minh"
    assert settings.bot.default_language == "vi"
    assert settings.bot.admins == []
    assert settings.telegram.token is None


def test_file_values_are_read_and_phones_normalised(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[bot]\ndefault_language = "en"\nadmins = ["+84 912 000 100", "84912000101"]\n',
    )
    settings = load_settings(path, {})
    assert settings.bot.default_language == "en"
    assert settings.bot.admins == ["0912000100", "0912000101"]


def test_missing_named_file_is_reported(tmp_path: Path) -> None:
    message = error_of(str(tmp_path / "nope.toml"))
    assert "nope.toml" in message
    assert "not found" in message


def test_missing_file_named_by_environment_is_reported(tmp_path: Path) -> None:
    missing = str(tmp_path / "from-env.toml")
    message = error_of(None, {"TRAININGBOT_CONFIG": missing})
    assert "from-env.toml: config file not found" in message


def test_absent_default_file_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, {}) == Settings()


def test_default_file_in_working_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, '[bot]\ntimezone = "Asia/Bangkok"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, {}).bot.timezone == "Asia/Bangkok"


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, '[bot]\ntimezone = "Asia/Ho_Chi_Minh\n'))
    assert "not valid TOML" in message
    assert "line 2" in message


def test_wrong_type_names_key_and_line(tmp_path: Path) -> None:
    message = error_of(
        write(
            tmp_path,
            '[database]\nurl = "sqlite+aiosqlite:///x.db"\n\n[bot]\nadmins = "0912000100"\n',
        )
    )
    assert "line 5" in message
    assert "[bot] admins" in message
    assert "valid list" in message


def test_unknown_key_names_key_line_and_choices(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, '[bot]\ntimezone = "Asia/Ho_Chi_Minh"\nlanguage = "vi"\n'))
    assert message.endswith(
        "line 3: [bot] language: unknown key (expected one of: admins, default_language, timezone)"
    )


def test_unknown_section_is_reported(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[zallo]\ntoken = 1\n"))
    assert "line 1: [zallo]: unknown section" in message


def test_bad_values_are_all_reported(tmp_path: Path) -> None:
    message = error_of(
        write(
            tmp_path, '[bot]\ntimezone = "Mars/Olympus"\ndefault_language = "fr"\nadmins = ["12"]\n'
        )
    )
    lines = message.splitlines()
    assert len(lines) == 3
    assert "line 2: [bot] timezone: 'Mars/Olympus' is not a known time zone" in lines[0]
    assert "line 3: [bot] default_language" in lines[1]
    assert "line 4: [bot] admins: '12' is not a Vietnamese mobile number" in lines[2]


def test_unsupported_database_driver(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, '[database]\nurl = "mysql://localhost/x"\n'))
    assert "line 2: [database] url: must start with sqlite+aiosqlite://" in message


def test_environment_overrides_file_and_keeps_secrets_hidden(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite+aiosqlite:///file.db"\n')
    settings = load_settings(
        path,
        {
            "TRAININGBOT_DATABASE_URL": "postgresql+asyncpg://u:p@localhost/db",
            "TRAININGBOT_TELEGRAM_TOKEN": "123:secret",
            "TRAININGBOT_BOT_ADMINS": "0912000100, +84912000101",
        },
    )
    assert settings.database.url.get_secret_value() == "postgresql+asyncpg://u:p@localhost/db"
    assert settings.bot.admins == ["0912000100", "0912000101"]
    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == "123:secret"
    assert "secret" not in repr(settings)
    assert "u:p@" not in repr(settings)


def test_bad_environment_value_names_the_variable() -> None:
    message = error_of(None, {"TRAININGBOT_BOT_TIMEZONE": "Nowhere/Land"})
    assert message.startswith("TRAININGBOT_BOT_TIMEZONE: [bot] timezone:")


def test_malformed_database_url_is_reported_without_its_password() -> None:
    message = error_of(
        None, {"TRAININGBOT_DATABASE_URL": "postgresql+asyncpg://u:hunter2@db:notaport/x"}
    )
    assert message.startswith("TRAININGBOT_DATABASE_URL: [database] url: is not a valid URL")
    assert "hunter2" not in message


def test_file_saved_with_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes('\ufeff[bot]\ndefault_language = "en"\n'.encode())
    assert load_settings(str(path), {}).bot.default_language == "en"


def test_webhook_mode_needs_url_and_secret(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[telegram]\nmode = "webhook"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings(str(config), environ={})
    assert str(error.value).startswith(f"{config} line 1: [telegram]: ")
    assert 'mode = "webhook" needs url and secret_token' in str(error.value)


def test_webhook_settings_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[telegram]\nmode = "webhook"\nurl = "http://bot.example.org/t"\n', encoding="utf-8"
    )
    environ = {"TRAININGBOT_TELEGRAM_SECRET_TOKEN": "has spaces!"}
    with pytest.raises(ConfigError) as error:
        load_settings(str(config), environ=environ)
    message = str(error.value)
    assert "[telegram] url: must start with https://" in message
    assert "TRAININGBOT_TELEGRAM_SECRET_TOKEN: [telegram] secret_token: must be 1-256" in message
    assert "has spaces" not in message


def test_webhook_settings_from_the_environment() -> None:
    environ = {
        "TRAININGBOT_TELEGRAM_MODE": "webhook",
        "TRAININGBOT_TELEGRAM_URL": "https://bot.example.org/telegram",
        "TRAININGBOT_TELEGRAM_SECRET_TOKEN": "abc_DEF-123",
        "TRAININGBOT_TELEGRAM_LISTEN_PORT": "8443",
    }
    telegram = load_settings(None, environ=environ).telegram
    assert (telegram.mode, telegram.listen_port, telegram.path) == ("webhook", 8443, "/telegram")
    assert telegram.secret_token is not None
    assert telegram.secret_token.get_secret_value() == "abc_DEF-123"


@pytest.mark.parametrize("token", ["", "   "])
def test_an_empty_telegram_token_is_no_token(token: str) -> None:
    assert load_settings(None, {"TRAININGBOT_TELEGRAM_TOKEN": token}).telegram.token is None


@pytest.mark.parametrize("token", ["hunter2", "123456", "abc:def", "123:has space", "123:ab/cd"])
def test_a_token_that_is_not_a_bot_token_is_refused_without_echoing_it(token: str) -> None:
    message = error_of(None, {"TRAININGBOT_TELEGRAM_TOKEN": token})
    assert message.startswith("TRAININGBOT_TELEGRAM_TOKEN: [telegram] token: is not a bot token")
    assert token not in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("base_url", "http://", "must name a host"),
        ("base_url", "https:///bot", "must name a host"),
        ("base_url", "https://api.telegram.org/bot", "without /bot"),
        ("base_url", "https://api.telegram.org/bot/", "without /bot"),
        ("base_url", "https://api.telegram.org/bot123:abc", "without /bot"),
        ("url", "https://", "must name a host"),
        ("url", "https://:8443/telegram", "must name a host"),
    ],
)
def test_telegram_urls_without_a_host_or_with_bot_are_refused(
    tmp_path: Path, key: str, value: str, expected: str
) -> None:
    path = write(tmp_path, f'[telegram]\n{key} = "{value}"\n')
    message = error_of(path)
    assert message.startswith(f"{path} line 2: [telegram] {key}: ")
    assert expected in message


def test_a_local_bot_api_server_under_a_path_is_accepted() -> None:
    environ = {"TRAININGBOT_TELEGRAM_BASE_URL": "http://127.0.0.1:8081/tg-api/"}
    assert load_settings(None, environ).telegram.base_url == "http://127.0.0.1:8081/tg-api"


def test_notification_settings_are_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[notifications]\nquiet_hours = "22:30-06:00"\nreminders = ["3d 07:30", "90m"]\n'
        'digest_time = "16:00"\nrate_per_second = 10\n',
    )
    notify = load_settings(path, {}).notify
    assert notify.quiet_hours is not None
    assert (notify.quiet_hours.start, notify.quiet_hours.end) == (dt.time(22, 30), dt.time(6))
    assert [offset.text for offset in notify.reminders] == ["3d 07:30", "90m"]
    assert notify.reminders[1].before == dt.timedelta(minutes=90)
    assert notify.digest_at == dt.time(16)


def test_quiet_hours_can_be_turned_off_from_the_environment() -> None:
    settings = load_settings(None, {"TRAININGBOT_NOTIFICATIONS_QUIET_HOURS": ""})
    assert settings.notify.quiet_hours is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('quiet_hours = "21-7"', "[notifications] quiet_hours: '21' is not a time of day"),
        ('quiet_hours = "21:00"', 'is not a span of time as "21:00-07:00"'),
        ('quiet_hours = "07:00-07:00"', 'use "" for no quiet hours'),
        ('reminders = ["7 days"]', "'7 days' is not a reminder offset"),
        ('reminders = ["0d 08:00"]', "days before must be 1 or more"),
        ('digest_time = "25:00"', "[notifications] digest_time: '25:00' is not a time of day"),
        ("rate_per_second = 0", "[notifications] rate_per_second: Input should be greater than 0"),
        ("max_attempts = 0", "[notifications] max_attempts"),
        ("rate = 25", "unknown key (expected one of: admin_summary_time,"),
    ],
)
def test_bad_notification_settings_name_the_key(tmp_path: Path, line: str, expected: str) -> None:
    message = error_of(write(tmp_path, f"[notifications]\n{line}\n"))
    assert expected in message
    assert "line 2" in message
