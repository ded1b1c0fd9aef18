"""Message catalogs: complete, consistent between languages, and used by the code."""

from __future__ import annotations

import ast
import datetime as dt
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from db.models import Form, Program, RegistrationStatus, TheoryLevel
from db.rules import Refusal
from handlers.i18n import (
    LANGUAGES,
    CatalogWarning,
    catalog_files,
    messages,
    supported_language,
    t,
)
from handlers.types import Msg
from handlers.zns_fields import ZNS_KINDS

REPO = Path(__file__).resolve().parents[1]
SOURCES = [*REPO.glob("handlers/*.py"), *REPO.glob("jobs/*.py"), *REPO.glob("bot/channels/*.py")]
# Keys built from a value at run time, and every value they are built from.
DYNAMIC_KEYS = {
    "program.": [p.value for p in Program],
    "form.": [f.value for f in Form],
    "level.": [level.value for level in TheoryLevel],
    "refusal.": [r.value for r in Refusal],
    "nominee_refusal.": [r.value for r in Refusal],
    "month.": [str(n) for n in range(1, 13)],
    "lang.": list(LANGUAGES),
    "status.": [s.value for s in RegistrationStatus],
    "zns.kind_": list(ZNS_KINDS),
}


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _keys_in_code() -> tuple[set[str], set[str]]:
    """Return the literal message keys and the prefixes of keys built with f-strings."""
    literals: set[str] = set()
    prefixes: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr) and node.values:
                first = node.values[0]
                if isinstance(first, ast.Constant) and str(first.value) in DYNAMIC_KEYS:
                    prefixes.add(str(first.value))
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Msg":
                if node.args and isinstance(node.args[0], ast.Constant):
                    literals.add(str(node.args[0].value))
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.split(".")[0] in {"catalog", "menu", "nav"}
            ):
                literals.add(node.value)  # keys named in tables, e.g. filter buttons
    return literals, prefixes


def test_both_catalogs_have_the_same_keys_and_placeholders() -> None:
    vi, en = messages("vi"), messages("en")
    assert set(vi) == set(en)
    for key in vi:
        assert _placeholders(vi[key]) == _placeholders(en[key]), key


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_empty_or_fuzzy_translation(language: str) -> None:
    paths = catalog_files(language)
    assert paths
    for path in paths:
        with path.open("rb") as po_file:
            catalog = read_po(po_file, locale=language)
        entries = [message for message in catalog if message.id]
        assert entries, path
        for message in entries:
            assert isinstance(message.string, str)
            assert message.string.strip(), message.id
            assert not message.fuzzy, message.id


def test_each_feature_catalog_has_its_counterpart() -> None:
    names = {language: [p.name for p in catalog_files(language)] for language in LANGUAGES}
    assert names["vi"] == names["en"]


def test_every_key_used_in_code_is_in_the_catalogs_and_every_key_is_used() -> None:
    literals, prefixes = _keys_in_code()
    assert prefixes == set(DYNAMIC_KEYS)
    dynamic = {prefix + value for prefix, values in DYNAMIC_KEYS.items() for value in values}
    used = literals | dynamic
    assert len(literals) > 50
    assert used - set(messages("vi")) == set()
    assert set(messages("vi")) - used == set()


def test_dates_are_formatted_per_language() -> None:
    msg = Msg("class.open_until", {"deadline": dt.date(2026, 12, 7)})
    assert t(msg, "vi") == "Nhận đăng ký đến hết ngày 07/12/2026"
    assert t(msg, "en") == "Registration open until 7 Dec 2026"


def test_parameters_that_are_messages_are_translated() -> None:
    msg = Msg("detail.requirement_level", {"level": Msg("level.trung_cap")})
    assert t(msg, "vi") == "Trình độ lý luận chính trị: từ Trung cấp trở lên"
    assert t(msg, "en") == "Political theory level: Intermediate or higher"
    month = Msg("common.month", {"month": Msg("month.12"), "year": 2026})
    assert (t(month, "vi"), t(month, "en")) == ("Tháng 12/2026", "December 2026")


def test_domain_names_are_the_schools_words() -> None:
    names = {p: t(Msg(f"program.{p.value}"), "vi") for p in Program}
    assert names == {
        Program.SO_CAP_LLCT: "Sơ cấp lý luận chính trị",
        Program.TRUNG_CAP_LLCT: "Trung cấp lý luận chính trị - hành chính",
        Program.CAP_NHAT_KIEN_THUC: "Bồi dưỡng cập nhật kiến thức",
        Program.KY_NANG: "Bồi dưỡng kỹ năng",
        Program.NGHIEP_VU: "Bồi dưỡng nghiệp vụ",
        Program.CHUYEN_DE: "Chuyên đề",
        Program.DANG_VIEN_MOI: "Bồi dưỡng đảng viên mới",
    }
    assert [t(Msg(f"form.{f.value}"), "vi") for f in Form] == [
        "Tập trung",
        "Không tập trung",
        "Trực tuyến",
    ]
    assert [t(Msg(f"level.{v.value}"), "vi") for v in TheoryLevel] == [
        "Sơ cấp",
        "Trung cấp",
        "Cao cấp",
    ]


def test_a_missing_key_or_parameter_warns_and_still_answers() -> None:
    with pytest.warns(CatalogWarning, match="no vi text"):
        assert t(Msg("no.such.key"), "vi") == "no.such.key"
    with pytest.warns(CatalogWarning, match="deadline"):
        assert t(Msg("class.open_until"), "en") == "Registration open until {deadline}"


@pytest.mark.parametrize(
    ("given", "expected"),
    [("vi", "vi"), ("EN", "en"), ("en-US", "en"), ("vi_VN", "vi"), ("fr", None), (None, None)],
)
def test_supported_language(given: str | None, expected: str | None) -> None:
    assert supported_language(given) == expected
