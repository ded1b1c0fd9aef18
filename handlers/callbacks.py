"""Button data: compact strings (under 64 bytes) that name what a button does.

Decoding never raises: a stale or forged string decodes to None and the flow answers
politely. Examples: `cl:p=2;prog=ky_nang;form=online;m=2026-12;e=1` (a list page),
`fp:prog=ky_nang` (the program menu over that list), `cd:42` (class 42), `sr:3:1a2b3c4d` (page 3 of
the search whose query has that fingerprint), `lg:en`, `hp` (help).
"""

from __future__ import annotations

import datetime as dt
import re
import zlib
from dataclasses import dataclass
from enum import StrEnum

from db.catalog import ClassFilter
from db.models import Form, Program
from db.text import fold

MAX_PAGE = 9999
# Ids are 32-bit integers in the database; a bigger one would be a database error.
MAX_ID = 2**31 - 1
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_NUMBER = re.compile(r"[1-9]\d{0,9}")
_TAG = re.compile(r"[0-9a-f]{8}")


class Action(StrEnum):
    """Buttons that need no parameters."""

    HELP = "hp"
    ASK_SEARCH = "sq"
    LANGUAGES = "lm"


class Menu(StrEnum):
    """The filter menus of the class list."""

    PROGRAM = "fp"
    FORM = "ff"
    MONTH = "fm"


@dataclass(frozen=True)
class ListQuery:
    """One page of the upcoming-classes list with its filters."""

    page: int = 1
    program: Program | None = None
    form: Form | None = None
    month: dt.date | None = None  # first day of the month
    eligible: bool = False

    @property
    def filters(self) -> ClassFilter:
        """Return the database filter of this list."""
        return ClassFilter(program=self.program, form=self.form, month=self.month)

    @property
    def filtered(self) -> bool:
        """Return whether any filter is set."""
        return bool(self.program or self.form or self.month or self.eligible)

    def fields(self) -> str:
        """Return the filters (no page) as `key=value;…`."""
        parts = []
        if self.program:
            parts.append(f"prog={self.program.value}")
        if self.form:
            parts.append(f"form={self.form.value}")
        if self.month:
            parts.append(f"m={self.month:%Y-%m}")
        if self.eligible:
            parts.append("e=1")
        return ";".join(parts)


@dataclass(frozen=True)
class ShowList:
    query: ListQuery


@dataclass(frozen=True)
class ShowMenu:
    menu: Menu
    query: ListQuery


@dataclass(frozen=True)
class ShowClass:
    class_id: int


@dataclass(frozen=True)
class SearchPage:
    page: int
    # Which search the page belongs to, so a page button under an older search's results
    # is recognised as stale instead of paging through the newest search.
    tag: str


@dataclass(frozen=True)
class SetLanguage:
    language: str


Callback = ShowList | ShowMenu | ShowClass | SearchPage | SetLanguage | Action


def list_data(query: ListQuery) -> str:
    """Return the data of a button that shows this list page."""
    fields = query.fields()
    return f"cl:p={query.page}" + (f";{fields}" if fields else "")


def menu_data(menu: Menu, query: ListQuery) -> str:
    """Return the data of a button that opens a filter menu over this list."""
    return f"{menu.value}:{query.fields()}"


def class_data(class_id: int) -> str:
    """Return the data of a button that shows a class."""
    return f"cd:{class_id}"


def search_tag(query: str) -> str:
    """Return a short fingerprint of a search query, for its page buttons."""
    return f"{zlib.crc32(fold(query).encode()):08x}"


def search_page_data(page: int, query: str) -> str:
    """Return the data of a button that shows a page of the search for `query`."""
    return f"sr:{page}:{search_tag(query)}"


def language_data(language: str) -> str:
    """Return the data of a button that switches the language."""
    return f"lg:{language}"


def number_in(text: str, maximum: int = MAX_ID) -> int | None:
    """Return the positive number `text` spells (no sign, no leading 0), if at most `maximum`."""
    if not _NUMBER.fullmatch(text):
        return None
    value = int(text)
    return value if value <= maximum else None


def _month(text: str) -> dt.date | None:
    match = _MONTH.fullmatch(text)
    if match is None or not 2000 <= int(match[1]) <= 2100 or not 1 <= int(match[2]) <= 12:
        return None
    return dt.date(int(match[1]), int(match[2]), 1)


def _list_query(text: str, *, paged: bool) -> ListQuery | None:
    values: dict[str, str] = {}
    for part in text.split(";") if text else []:
        key, sep, value = part.partition("=")
        if not sep or key in values:
            return None
        values[key] = value
    if not set(values) <= {"p", "prog", "form", "m", "e"} or ("p" in values) != paged:
        return None
    page = number_in(values["p"], MAX_PAGE) if paged else 1
    program = values.get("prog")
    form = values.get("form")
    month = values.get("m")
    eligible = values.get("e")
    if (
        page is None
        or (program is not None and program not in Program.__members__.values())
        or (form is not None and form not in Form.__members__.values())
        or (month is not None and _month(month) is None)
        or eligible not in (None, "1")
    ):
        return None
    return ListQuery(
        page=page,
        program=Program(program) if program else None,
        form=Form(form) if form else None,
        month=_month(month) if month else None,
        eligible=eligible == "1",
    )


def decode(data: str) -> Callback | None:
    """Return what a button's data asks for, or None when it is stale or malformed."""
    if data in Action.__members__.values():
        return Action(data)
    prefix, sep, rest = data.partition(":")
    if not sep:
        return None
    if prefix == "cl":
        query = _list_query(rest, paged=True)
        return ShowList(query) if query else None
    if prefix in Menu.__members__.values():
        query = _list_query(rest, paged=False)
        return ShowMenu(Menu(prefix), query) if query else None
    if prefix == "cd":
        class_id = number_in(rest, MAX_ID)
        return ShowClass(class_id) if class_id else None
    if prefix == "sr":
        page_text, _, tag = rest.partition(":")
        page = number_in(page_text, MAX_PAGE)
        return SearchPage(page, tag) if page and _TAG.fullmatch(tag) else None
    if prefix == "lg" and rest in ("vi", "en"):
        return SetLanguage(rest)
    return None
