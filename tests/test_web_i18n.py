"""The web admin's catalogs: both languages complete, and every text the pages use is there."""

from __future__ import annotations

import re
import string
from pathlib import Path

from bot.web import broadcasts
from bot.web.i18n import LANGUAGES, catalog, text
from db.broadcasts import AudienceKind
from db.models import BroadcastStatus, ClassStatus
from db.roster import KINDS

WEB = Path(__file__).resolve().parents[1] / "bot" / "web"
STATIC_KEY = re.compile(r"""(?:_\(|tr\(request,\s*)["']([a-z_]+\.[a-z_.]*[a-z])["']""")
# Keys the templates build from a value, and every value they are built from.
DYNAMIC = {
    "class_status.": [status.value for status in ClassStatus],
    "classes.when_": ["upcoming", "past", "all"],
    "kind.": list(KINDS),
    "link.": ["linked", "unreachable", "never"],
    "done.": [
        "created",
        "saved",
        "unchanged",
        "closed",
        "reopened",
        "approved",
        "rejected",
        "cancelled",
    ],
    "refused.": [
        "not_found",
        "not_your_unit",
        "own_registration",
        "not_pending",
        "not_live",
        "started",
        "reason_needed",
        "cancelled",
    ],
    "upload.done_": ["applied", "already", "conflict"],
    "error.": ["csrf", "login_needed", "admins_only", "too_large", "not_found"],
    "broadcast_status.": [status.value for status in BroadcastStatus],
    "audience.": [kind.value for kind in AudienceKind],
    "broadcasts.done_": list(broadcasts.DONE),
    "broadcasts.error_": list(broadcasts.ERRORS),
    "broadcasts.problem_": [
        "empty",
        "too_long",
        "not_your_unit",
        "no_unit",
        "not_your_class",
        "no_class",
        "no_program",
        "no_audience",
        *broadcasts.SEND_REFUSALS,
    ],
    "broadcasts.action_": ["draft", "edit", "urgent", "send", "stop", "drop"],
    "broadcasts.with_": ["photo", "document"],
    "linkcode.error_": ["already_linked"],
}


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    vi, en = catalog("vi"), catalog("en")
    assert set(vi) == set(en)
    for key in vi:
        assert _placeholders(vi[key]) == _placeholders(en[key]), key


def test_every_key_the_pages_use_is_in_the_catalogs() -> None:
    used = set()
    for path in [*WEB.glob("*.py"), *(WEB / "templates").glob("*.html")]:
        used |= set(STATIC_KEY.findall(path.read_text(encoding="utf-8")))
    used |= {prefix + value for prefix, values in DYNAMIC.items() for value in values}
    assert len(used) > 150
    for language in LANGUAGES:
        assert used - set(catalog(language)) == set(), language


def test_domain_words_come_from_the_chats_catalogs() -> None:
    assert text("vi", "program.trung_cap_llct") == "Trung cấp lý luận chính trị - hành chính"
    assert text("vi", "status.waitlisted") == "trong danh sách chờ"
    assert text("en", "form.online") == "Online"
