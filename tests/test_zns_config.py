"""The [zns] section: credentials from the environment, templates per kind, and errors that
name the key (and its line) as the rest of the configuration does."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings

CREDENTIALS = {
    "TRAININGBOT_ZNS_SECRET_KEY": "app-secret",
    "TRAININGBOT_ZNS_OA_SECRET_KEY": "oa-secret",
    "TRAININGBOT_ZNS_REFRESH_TOKEN": "first-refresh-token",
}

GOOD = """\
[zns]
enabled = true
app_id = "3799894204854887828"
daily_limit = 300
bot_links = ["https://zalo.me/s/botcreator/truongchinhtri"]

[zns.templates.reminder]
template_id = 251234
max_lengths = { ten_lop = 100 }

[zns.templates.reminder.fields]
ho_ten = "person.name"
ma_lop = "code"
ten_lop = "title"
thoi_gian = "when"
dia_diem = "place"

[zns.templates.change]
template_id = "251235"
fields = { ten_lop = "title", noi_dung = "details", truong = "=Trường Chính trị tỉnh" }

[zns.templates.broadcast]
template_id = "251236"
enabled = false
fields = { noi_dung = "text" }
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), CREDENTIALS if environ is None else environ)
    return str(caught.value)


def test_a_full_section_with_secrets_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD), CREDENTIALS)
    zns = settings.zns
    assert zns.enabled
    assert zns.app_id == "3799894204854887828"
    assert zns.secret_key is not None
    assert zns.secret_key.get_secret_value() == "app-secret"
    assert zns.refresh_token is not None
    reminder = zns.templates.reminder
    assert reminder is not None
    assert reminder.template_id == "251234"
    assert reminder.max_lengths == {"ten_lop": 100}
    # The broadcast template is off: only the kinds of templates that are on may go by ZNS.
    assert sorted(zns.templates.by_kind()) == ["change", "reminder"]
    assert zns.kinds == {"class.reminder", "class.changed", "class.cancelled"}
    # Secrets never show in a printed configuration.
    printed = repr(settings)
    assert "app-secret" not in printed
    assert "oa-secret" not in printed
    assert "first-refresh-token" not in printed


def test_zns_is_off_by_default_and_off_means_no_kind_goes_by_zns(tmp_path: Path) -> None:
    text = GOOD.replace("enabled = true\n", "", 1)
    settings = load_settings(write(tmp_path, text), {})
    assert not settings.zns.enabled
    assert settings.zns.kinds == frozenset()


def test_enabled_without_credentials_names_them_and_their_variables(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD, {})
    assert "line 1: [zns]" in message or "[zns]: enabled = true needs" in message
    assert "secret_key, oa_secret_key" in message
    assert "TRAININGBOT_ZNS_SECRET_KEY" in message


def test_a_kind_that_cannot_go_by_zns_is_named_with_the_ones_that_can(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD + '\n[zns.templates.digest]\ntemplate_id = "1"\n')
    assert "line 27: [zns.templates] digest: unknown key" in message
    assert "broadcast, change, deadline_warning, decision, nomination, offer" in message


def test_a_field_from_no_value_of_the_notice_names_the_template_and_the_choices(
    tmp_path: Path,
) -> None:
    message = error_of(tmp_path, GOOD.replace('thoi_gian = "when"', 'thoi_gian = "time"'))
    assert "line 7: [zns.templates] reminder: fields: thoi_gian = 'time'" in message
    assert "expected one of: code, title, start, end, when, place, message, details" in message
    # The broadcast's text is its own value, not the reminder's.
    message = error_of(tmp_path, GOOD.replace('ho_ten = "person.name"', 'ho_ten = "text"'))
    assert "reminder: fields: ho_ten = 'text'" in message


def test_template_mistakes_are_named_at_their_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace('template_id = "251235"\n', ""))
    assert "line 18: [zns.templates.change] template_id: Field required" in message
    message = error_of(tmp_path, GOOD.replace("template_id = 251234", 'template_id = "T-1"'))
    assert "line 8: [zns.templates.reminder] template_id: must be the template's id" in message
    message = error_of(tmp_path, GOOD.replace("{ ten_lop = 100 }", "{ dia_chi = 100 }"))
    assert "[zns.templates] reminder" in message or "[zns.templates.reminder]" in message
    assert "max_lengths names dia_chi, which fields does not" in message
    message = error_of(tmp_path, GOOD.replace('fields = { noi_dung = "text" }', "fields = {}"))
    assert "[zns.templates.broadcast] fields: must map the template's parameters" in message
    message = error_of(tmp_path, GOOD.replace('"=Trường Chính trị tỉnh"', '"="'))
    assert "truong = an empty constant" in message
    message = error_of(tmp_path, GOOD + "colour = 1\n")
    assert "[zns.templates.broadcast] colour: unknown key" in message
    assert "(expected one of: enabled, fields, max_lengths, template_id)" in message


def test_other_zns_keys_are_checked(tmp_path: Path) -> None:
    message = error_of(tmp_path, GOOD.replace("daily_limit = 300", 'signature = "md5"'))
    assert "line 4: [zns] signature" in message
    assert "'sha256', 'sha256_header_timestamp' or 'hmac_sha256'" in message
    message = error_of(tmp_path, GOOD.replace('"https://zalo.me/s/', '"http://zalo.me/s/'))
    assert "line 5: [zns] bot_links: 'http://zalo.me" in message
    message = error_of(tmp_path, GOOD.replace('app_id = "3799894204854887828"', 'app_id = "OA-1"'))
    assert "line 3: [zns] app_id: must be the app's id" in message
    message = error_of(tmp_path, GOOD.replace("[zns]\n", '[zns]\nzns_base_url = "ftp://x"\n'))
    assert "line 2: [zns] zns_base_url: must start with https://" in message


def test_the_oa_webhook_needs_its_own_path_beside_a_chat_webhook(tmp_path: Path) -> None:
    telegram = (
        '[telegram]\ntoken = "123:abc"\nmode = "webhook"\nurl = "https://bot.example.org/t"\n'
        'secret_token = "s3cret"\npath = "/hooks"\n\n'
    )
    message = error_of(
        tmp_path, telegram + GOOD.replace("[zns]\n", '[zns]\nwebhook_path = "/hooks"\n')
    )
    assert "[zns] webhook_path: /hooks is also a chat webhook's path" in message
    # On its own port it may use any path.
    settings = load_settings(
        write(
            tmp_path,
            telegram
            + GOOD.replace("[zns]\n", '[zns]\nwebhook_path = "/hooks"\nlisten_port = 8081\n'),
        ),
        CREDENTIALS,
    )
    assert settings.zns_listen == ("127.0.0.1", 8081)


def test_the_examples_commented_templates_are_valid_once_uncommented(tmp_path: Path) -> None:
    example = (Path(__file__).resolve().parents[1] / "config.example.toml").read_text("utf-8")
    commented = example[example.index("# [zns.templates.reminder]") :]
    templates = "\n".join(
        line.removeprefix("#").removeprefix(" ") for line in commented.splitlines()
    )
    text = '[zns]\nenabled = true\napp_id = "3799894204854887828"\n\n' + templates
    settings = load_settings(write(tmp_path, text), CREDENTIALS)
    assert sorted(settings.zns.templates.by_kind()) == ["change", "reminder"]
