"""Message catalogs: turn a `Msg` into text in one language, at the channel edge."""

from __future__ import annotations

import datetime as dt
import warnings
from functools import cache
from pathlib import Path

from babel.dates import format_date
from babel.messages.pofile import read_po

from handlers.types import Msg, Param

LANGUAGES = ("vi", "en")
# Shipped as package data (pyproject.toml).
LOCALES = Path(__file__).resolve().parent / "locales"
DATE_FORMATS = {"vi": "dd/MM/yyyy", "en": "d MMM yyyy"}


class CatalogWarning(UserWarning):
    """A message key or parameter is missing: a bug, shown as a warning in production."""


def supported_language(language: str | None) -> str | None:
    """Return `language` if the bot speaks it (ignoring case and region), else None."""
    if not language:
        return None
    base = language.strip().lower().replace("_", "-").split("-")[0]
    return base if base in LANGUAGES else None


def catalog_files(language: str) -> list[Path]:
    """Return the .po files of `language`: one per feature, so features never share one."""
    return sorted((LOCALES / language / "LC_MESSAGES").glob("*.po"))


@cache
def messages(language: str) -> dict[str, str]:
    """Return every catalog of `language` as key → template, read once from its .po files."""
    merged: dict[str, str] = {}
    for path in catalog_files(language):
        with path.open("rb") as po_file:
            catalog = read_po(po_file, locale=language)
        for message in catalog:
            if not (isinstance(message.id, str) and message.id):
                continue
            if message.id in merged:
                raise ValueError(f"{path}: message {message.id!r} is defined in two catalogs")
            if isinstance(message.string, str):
                merged[message.id] = message.string
    return merged


def _text(value: Param, language: str) -> str:
    if value is None:
        return ""
    if isinstance(value, Msg):
        return t(value, language)
    if isinstance(value, dt.date):
        return format_date(value, DATE_FORMATS[language], locale=language)
    return str(value)


def t(msg: Msg, language: str) -> str:
    """Return `msg` in `language`, translating parameters that are messages or dates."""
    template = messages(language).get(msg.key)
    if not template:
        warnings.warn(f"no {language} text for {msg.key!r}", CatalogWarning, stacklevel=2)
        return msg.key
    params = {name: _text(value, language) for name, value in msg.params.items()}
    try:
        return template.format_map(params)
    except (KeyError, IndexError, ValueError) as exc:
        warnings.warn(f"{msg.key!r} in {language}: {exc!r}", CatalogWarning, stacklevel=2)
        return template
