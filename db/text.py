"""Text folding: compare Vietnamese text without case, diacritics or extra spaces."""

from __future__ import annotations

import re
import unicodedata

# Unit and class codes: ASCII letters, digits and - _ . / only, so that lower() folds them
# alike on SQLite (ASCII only) and PostgreSQL, and ':' and ';' stay free to separate them
# in a classes file's unit_quotas cell.
_CODE = re.compile(r"[A-Za-z0-9._/-]+")
CODE_CHARACTERS = "ASCII letters, digits and - _ . /"

# đ/Đ is a letter of its own, not d plus a combining mark, so NFD leaves it alone.
_LETTERS = str.maketrans({"đ": "d", "Đ": "d"})


def fold(text: str) -> str:
    """Return `text` lower-cased, without diacritics, with runs of whitespace made one space."""
    decomposed = unicodedata.normalize("NFD", text.translate(_LETTERS))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(unicodedata.normalize("NFC", bare).lower().split())


def is_code(text: str) -> bool:
    """Return whether `text` may be a unit or class code (see CODE_CHARACTERS)."""
    return _CODE.fullmatch(text) is not None
