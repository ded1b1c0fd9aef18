"""The web admin's texts: a gettext catalog per language (bot/web/locales), keys as in handlers."""

from __future__ import annotations

import datetime as dt
import warnings
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.messages.pofile import read_po

from handlers.i18n import CatalogWarning, t
from handlers.types import Msg

LANGUAGES = ("vi", "en")
LOCALES = Path(__file__).resolve().parent / "locales"
DATE_FORMATS = {"vi": "dd/MM/yyyy", "en": "d MMM yyyy"}
# The school's words for programs, forms, theory levels and registration statuses are
# the chat's (handlers/locales): one name for each thing wherever it is shown.
SHARED_PREFIXES = ("program.", "form.", "level.", "status.")


@cache
def catalog(language: str) -> dict[str, str]:
    """Return the web catalog of `language` as key → template, read once."""
    with (LOCALES / language / "LC_MESSAGES" / "web.po").open("rb") as po_file:
        messages = read_po(po_file, locale=language)
    return {
        str(message.id): str(message.string)
        for message in messages
        if isinstance(message.id, str) and message.id and message.string
    }


def text(language: str, key: str, **params: Any) -> str:
    """Return the text of `key` in `language` with `params` filled in."""
    template = catalog(language).get(key)
    if template is None and key.startswith(SHARED_PREFIXES):
        return t(Msg(key), language)
    if template is None:
        warnings.warn(f"no {language} web text for {key!r}", CatalogWarning, stacklevel=2)
        return key
    if not params:
        return template
    try:
        return template.format_map(params)
    except (KeyError, IndexError, ValueError) as exc:
        warnings.warn(f"{key!r} in {language}: {exc!r}", CatalogWarning, stacklevel=2)
        return template


def date_text(value: dt.date | None, language: str) -> str:
    """Return a date as the language writes it (01/12/2026, 1 Dec 2026)."""
    if value is None:
        return ""
    return format_date(value, DATE_FORMATS[language], locale=language)


def moment_text(value: dt.datetime | None, language: str, zone: ZoneInfo) -> str:
    """Return a moment in local time: the date and HH:MM."""
    if value is None:
        return ""
    local = value.astimezone(zone)
    return f"{date_text(local.date(), language)} {local:%H:%M}"
