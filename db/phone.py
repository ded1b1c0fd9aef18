"""Vietnamese phone numbers in the roster's form: ten digits starting with 0."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s.\-()]")
_LOCAL = re.compile(r"0[35789]\d{8}")


def normalize_phone(raw: str) -> str | None:
    """Return `raw` as 0XXXXXXXXX, or None when it is not a Vietnamese mobile number.

    Accepts the roster's 0912…, Telegram's 84912… and the international +84912…, with
    spaces, dots, dashes or brackets between digits.
    """
    digits = _SEPARATORS.sub("", raw.strip())
    if digits.startswith("+"):
        digits = digits[1:]
        if not digits.startswith("84"):
            return None
    if digits.startswith("84") and len(digits) == 11:
        digits = "0" + digits[2:]
    return digits if _LOCAL.fullmatch(digits) else None
