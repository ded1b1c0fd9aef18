"""Button data of the unit-head flows; decoding never raises (stale or forged: None).

`ul:2` (page 2 of /unit), `uc:42` (class 42 for the unit), `ap:7` / `rj:7` (approve or
reject registration 7), `rr:7:2` (reject it for preset reason 2), `rt:7:513` (reject it
for the reason typed, kept in the chat's state; 513 tags that text), `nm:42:1` (page 1 of
the people to nominate for class 42), `np:42:9` (nominate person 9: confirm?),
`nx:42:9` (confirmed), `nd:7` (the nominee declines).
Every id is checked again against the presser's scope when the button is pressed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from handlers.callbacks import MAX_ID, MAX_PAGE, number_in

# Preset rejection reasons are numbered from 1 (see unit_head.PRESET_REASONS).
MAX_PRESET = 9
# A typed reason's tag, from 1: a confirm button of an older reason does not confirm a newer.
MAX_TAG = 99_999


@dataclass(frozen=True)
class UnitPage:
    page: int


@dataclass(frozen=True)
class UnitClass:
    class_id: int


@dataclass(frozen=True)
class Approve:
    registration_id: int


@dataclass(frozen=True)
class Reject:
    registration_id: int


@dataclass(frozen=True)
class RejectFor:
    registration_id: int
    preset: int


@dataclass(frozen=True)
class RejectTyped:
    registration_id: int
    tag: int


@dataclass(frozen=True)
class NomineePage:
    class_id: int
    page: int


@dataclass(frozen=True)
class PickNominee:
    class_id: int
    person_id: int


@dataclass(frozen=True)
class Nominate:
    class_id: int
    person_id: int


@dataclass(frozen=True)
class DeclineNomination:
    registration_id: int


UnitCallback = (
    UnitPage
    | UnitClass
    | Approve
    | Reject
    | RejectFor
    | RejectTyped
    | NomineePage
    | PickNominee
    | Nominate
    | DeclineNomination
)


def unit_page_data(page: int) -> str:
    """Return the data of a button that shows a page of /unit."""
    return f"ul:{page}"


def unit_class_data(class_id: int) -> str:
    """Return the data of a button that shows a class to a unit head."""
    return f"uc:{class_id}"


def approve_data(registration_id: int) -> str:
    """Return the data of a button that approves a registration."""
    return f"ap:{registration_id}"


def reject_data(registration_id: int) -> str:
    """Return the data of a button that starts rejecting a registration."""
    return f"rj:{registration_id}"


def reject_for_data(registration_id: int, preset: int) -> str:
    """Return the data of a button that rejects a registration for a preset reason."""
    return f"rr:{registration_id}:{preset}"


def reason_tag(reason: str) -> int:
    """Return the tag of a typed reason, 1 to MAX_TAG."""
    return zlib.crc32(reason.encode()) % MAX_TAG + 1


def reject_typed_data(registration_id: int, reason: str) -> str:
    """Return the data of a button that confirms rejecting for the typed `reason`."""
    return f"rt:{registration_id}:{reason_tag(reason)}"


def nominee_page_data(class_id: int, page: int) -> str:
    """Return the data of a button that lists people to nominate for a class."""
    return f"nm:{class_id}:{page}"


def pick_nominee_data(class_id: int, person_id: int) -> str:
    """Return the data of a button that picks a person to nominate (asks to confirm)."""
    return f"np:{class_id}:{person_id}"


def nominate_data(class_id: int, person_id: int) -> str:
    """Return the data of a button that nominates a person."""
    return f"nx:{class_id}:{person_id}"


def decline_nomination_data(registration_id: int) -> str:
    """Return the data of the nominee's button that declines a nomination."""
    return f"nd:{registration_id}"


def _numbers(text: str, *maxima: int) -> list[int] | None:
    parts = text.split(":")
    if len(parts) != len(maxima):
        return None
    values = [number_in(part, maximum) for part, maximum in zip(parts, maxima, strict=True)]
    return None if None in values else [v for v in values if v is not None]


def decode_unit(data: str) -> UnitCallback | None:
    """Return what a unit-head button asks for, or None when the data is not one."""
    prefix, sep, rest = data.partition(":")
    if not sep:
        return None
    one = _numbers(rest, MAX_ID)
    two = _numbers(rest, MAX_ID, MAX_ID)
    match prefix:
        case "ul":
            page = _numbers(rest, MAX_PAGE)
            return UnitPage(page[0]) if page else None
        case "uc":
            return UnitClass(one[0]) if one else None
        case "ap":
            return Approve(one[0]) if one else None
        case "rj":
            return Reject(one[0]) if one else None
        case "rr":
            preset = _numbers(rest, MAX_ID, MAX_PRESET)
            return RejectFor(preset[0], preset[1]) if preset else None
        case "rt":
            tagged = _numbers(rest, MAX_ID, MAX_TAG)
            return RejectTyped(tagged[0], tagged[1]) if tagged else None
        case "nm":
            paged = _numbers(rest, MAX_ID, MAX_PAGE)
            return NomineePage(paged[0], paged[1]) if paged else None
        case "np":
            return PickNominee(two[0], two[1]) if two else None
        case "nx":
            return Nominate(two[0], two[1]) if two else None
        case "nd":
            return DeclineNomination(one[0]) if one else None
    return None
