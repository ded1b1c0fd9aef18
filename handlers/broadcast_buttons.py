"""Button data of broadcasts; decoding never raises (stale or forged: None).

Every button carries the broadcast's id, checked against the presser on each press:
`ba:12` (choose the audience of draft 12), `bk:12:2` (audience kind 2: chosen units),
`bl:12:3` (page 3 of the units; 0: the matches of the name typed), `bu:12:40:3` (choose
or drop unit 40, then show page 3 again), `bm:12:2` (page 2 of the classes), `bc:12:7`
(the participants of class 7), `bp:12:4` (the learners of program 4), `bv:12` (preview),
`bz:12` (urgent or not), `bw:12` (rewrite the text), `bx:12` (drop the draft),
`bg:12:513` (send it; 513 tags the draft as previewed, so an older preview's button
does not send a draft changed since), `bq:12` (progress), `bs:12` (stop it).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from db.broadcasts import AudienceKind
from db.models import Program
from handlers.callbacks import MAX_ID, MAX_PAGE, number_in

# Audience kinds and programs are numbered from 1 in button data, in their enums' order.
KINDS = tuple(AudienceKind)
PROGRAMS = tuple(Program)
MAX_TAG = 99_999


class Do(StrEnum):
    """What a broadcast button asks for, by its prefix."""

    AUDIENCE = "ba"
    KIND = "bk"
    UNITS = "bl"
    TOGGLE_UNIT = "bu"
    CLASSES = "bm"
    CLASS = "bc"
    PROGRAM = "bp"
    PREVIEW = "bv"
    URGENT = "bz"
    REWRITE = "bw"
    DROP = "bx"
    SEND = "bg"
    PROGRESS = "bq"
    STOP = "bs"


# How many numbers follow the broadcast id, and their maxima (0 allowed where noted).
_ARGS: dict[Do, tuple[int, ...]] = {
    Do.KIND: (len(KINDS),),
    Do.UNITS: (MAX_PAGE,),
    Do.TOGGLE_UNIT: (MAX_ID, MAX_PAGE),
    Do.CLASSES: (MAX_PAGE,),
    Do.CLASS: (MAX_ID,),
    Do.PROGRAM: (len(PROGRAMS),),
    Do.SEND: (MAX_TAG,),
}
# Arguments that may be 0: a units page of 0 is the typed name's matches.
_ZERO_ALLOWED = {(Do.UNITS, 0), (Do.TOGGLE_UNIT, 1)}


@dataclass(frozen=True)
class BroadcastButton:
    """A broadcast button: what to do, the broadcast's id and the action's numbers."""

    do: Do
    broadcast_id: int
    args: tuple[int, ...] = ()


def data(do: Do, broadcast_id: int, *args: int) -> str:
    """Return the data of a broadcast button."""
    return ":".join([do.value, str(broadcast_id), *(str(arg) for arg in args)])


def kind_data(broadcast_id: int, kind: AudienceKind) -> str:
    """Return the data of the button that picks an audience kind."""
    return data(Do.KIND, broadcast_id, KINDS.index(kind) + 1)


def program_data(broadcast_id: int, program: Program) -> str:
    """Return the data of the button that picks a program's learners."""
    return data(Do.PROGRAM, broadcast_id, PROGRAMS.index(program) + 1)


def draft_tag(audience: dict[str, Any] | None, urgent: bool, message: dict[str, Any]) -> int:
    """Return a tag of what a draft says, to whom and how urgently: 1 to MAX_TAG."""
    text = json.dumps([audience, urgent, message], sort_keys=True, ensure_ascii=False)
    return zlib.crc32(text.encode()) % MAX_TAG + 1


def _number(text: str, maximum: int, zero: bool) -> int | None:
    if zero and text == "0":
        return 0
    return number_in(text, maximum)


def decode_broadcast(text: str) -> BroadcastButton | None:
    """Return what a broadcast button asks for, or None when the data is not one."""
    prefix, sep, rest = text.partition(":")
    if not sep or prefix not in Do.__members__.values():
        return None
    do = Do(prefix)
    parts = rest.split(":")
    maxima = _ARGS.get(do, ())
    if len(parts) != len(maxima) + 1:
        return None
    broadcast_id = number_in(parts[0], MAX_ID)
    args = [
        _number(part, maximum, (do, index) in _ZERO_ALLOWED)
        for index, (part, maximum) in enumerate(zip(parts[1:], maxima, strict=True))
    ]
    if broadcast_id is None or None in args:
        return None
    return BroadcastButton(do, broadcast_id, tuple(arg for arg in args if arg is not None))
