"""Every phrase the bot recognises in free text, in one place, written folded (see fold)."""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from functools import cache

from db.models import Form, Program
from db.text import fold
from handlers.callbacks import ListQuery
from handlers.choices import match_key
from handlers.i18n import LANGUAGES, t
from handlers.labels import form_name, program_name


class Intent(StrEnum):
    """What a free-text message asks for, when it is a question rather than a search."""

    ELIGIBLE = "eligible"
    UPCOMING = "upcoming"
    HELP = "help"
    GREETING = "greeting"


# Checked in this order: the first intent with a phrase inside the message wins, so the
# more specific questions come first.
PHRASES: dict[Intent, tuple[str, ...]] = {
    Intent.ELIGIBLE: (
        "du dieu kien",
        "duoc hoc lop nao",
        "duoc dang ky lop nao",
        "lop nao toi duoc",
        "eligible",
        "can i attend",
        "can i join",
        "can i take",
        "classes for me",
    ),
    Intent.UPCOMING: (
        "sap mo",
        "sap co",
        "sap khai giang",
        "sap dien ra",
        "sap hoc",
        "co lop nao",
        "co lop gi",
        "co nhung lop",
        "lop gi",
        "lop moi",
        "danh sach lop",
        "upcoming",
        "coming up",
        "classes coming",
        "are coming",
        "what classes",
        "which classes",
        "next classes",
        "list classes",
    ),
    Intent.HELP: (
        "help",
        "giup",
        "tro giup",
        "huong dan",
        "lam duoc gi",
        "lam gi",
        "what can you do",
        "how does this work",
    ),
}

# A greeting only counts when it is the whole message ("chào" is also a word in titles).
GREETINGS = ("xin chao", "chao", "chao ban", "alo", "hello", "hi", "hey", "good morning")

# Words people add around what they look for ("lớp kỹ năng", "find classes on …").
SEARCH_FILLER = frozenset(
    {"lop", "cac", "khoa", "tim", "kiem", "class", "classes", "course", "courses", "find"}
    | {"search", "about", "on", "the", "a", "for"}
)


def intent_of(text: str) -> Intent | None:
    """Return the question `text` asks, or None when it should be searched for."""
    key = match_key(text)
    if key in GREETINGS:
        return Intent.GREETING
    padded = f" {key} "
    for intent, phrases in PHRASES.items():
        if any(f" {phrase} " in padded for phrase in phrases):
            return intent
    return None


def search_words(text: str) -> list[str]:
    """Return the folded words to search for, without filler unless nothing else is left."""
    words = match_key(text).split()
    meaningful = [word for word in words if word not in SEARCH_FILLER]
    return meaningful or words


# What people type to pick a language, besides pressing its button.
LANGUAGE_NAMES: dict[str, tuple[str, ...]] = {
    "vi": ("vi", "viet", "tieng viet", "vietnamese"),
    "en": ("en", "english", "tieng anh", "anh"),
}


def language_named(text: str) -> str | None:
    """Return the language code `text` names, or None."""
    key = match_key(text)
    return next((code for code, names in LANGUAGE_NAMES.items() if key in names), None)


# Short names people use for programs and forms, besides the names in the catalogs and
# the codes themselves (ky_nang, full_time …).
PROGRAM_SHORT_NAMES: dict[Program, tuple[str, ...]] = {
    Program.SO_CAP_LLCT: ("so cap", "so cap ly luan"),
    Program.TRUNG_CAP_LLCT: ("trung cap", "trung cap ly luan", "trung cap llct"),
    Program.CAP_NHAT_KIEN_THUC: ("cap nhat", "cap nhat kien thuc", "cnkt"),
    Program.KY_NANG: ("ky nang", "skills"),
    Program.NGHIEP_VU: ("nghiep vu",),
    Program.CHUYEN_DE: ("chuyen de",),
    Program.DANG_VIEN_MOI: ("dang vien moi", "dang vien"),
}
FORM_SHORT_NAMES: dict[Form, tuple[str, ...]] = {
    Form.FULL_TIME: ("tap trung", "full time", "fulltime"),
    Form.PART_TIME: ("khong tap trung", "part time", "parttime", "tai chuc"),
    Form.ONLINE: ("truc tuyen", "online"),
}
ELIGIBLE_WORDS = ("du dieu kien", "eligible", "cho toi", "for me")
_MONTH_YEAR = re.compile(r"\b(\d{1,2})[/.-](\d{4})\b")
_YEAR_MONTH = re.compile(r"\b(\d{4})-(\d{1,2})\b")


@cache
def _aliases() -> list[tuple[str, Program | Form]]:
    """Return every name of a program or form, longest first (so "khong tap trung" wins)."""
    names: list[tuple[str, Program | Form]] = []
    for program in Program:
        written = {match_key(program.value), *PROGRAM_SHORT_NAMES[program]}
        written |= {match_key(t(program_name(program), lang)) for lang in LANGUAGES}
        names += [(name, program) for name in written]
    for form in Form:
        written = {match_key(form.value), *FORM_SHORT_NAMES[form]}
        written |= {match_key(t(form_name(form), lang)) for lang in LANGUAGES}
        names += [(name, form) for name in written]
    return sorted(names, key=lambda alias: -len(alias[0]))


def _take_month(text: str) -> tuple[dt.date | None, str]:
    for pattern, year_first in ((_YEAR_MONTH, True), (_MONTH_YEAR, False)):
        if match := pattern.search(text):
            year, month = (match[1], match[2]) if year_first else (match[2], match[1])
            if 1 <= int(month) <= 12 and 2000 <= int(year) <= 2100:
                rest = text[: match.start()] + " " + text[match.end() :]
                return dt.date(int(year), int(month), 1), rest
    return None, text


def list_filters(text: str) -> tuple[ListQuery, str]:
    """Return the filters written after /classes and whatever words were not understood."""
    month, rest = _take_month(fold(text))
    padded = f" {match_key(rest)} "
    eligible = False
    for words in ELIGIBLE_WORDS:
        if f" {words} " in padded:
            eligible = True
            padded = padded.replace(f" {words} ", " ")
    program: Program | None = None
    form: Form | None = None
    for name, value in _aliases():
        if f" {name} " not in padded:
            continue
        if isinstance(value, Program) and program is None:
            program = value
        elif isinstance(value, Form) and form is None:
            form = value
        else:
            continue
        padded = padded.replace(f" {name} ", " ", 1)
    query = ListQuery(program=program, form=form, month=month, eligible=eligible)
    return query, " ".join(padded.split())
