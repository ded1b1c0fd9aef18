"""Button data of registration: register, confirm, my registrations, cancel, calendar, offers.

Each button carries the id it acts on, so it still works after a restart or in another
process: `rg:42` (ask to register for class 42), `rc:42` (confirm it), `my` (my
registrations), `mc:7` (ask to cancel registration 7), `mx:7` (cancel it), `ic:7` (its
calendar file), `oa:7` / `od:7` (accept / decline the seat offered, see seat_notices).
Decoding never raises: anything else decodes to None.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from handlers.callbacks import number_in
from handlers.seat_notices import ACCEPT_OFFER, DECLINE_OFFER

MY_REGISTRATIONS = "my"


class Do(StrEnum):
    """What a registration button asks for, by its prefix."""

    REGISTER = "rg"
    CONFIRM = "rc"
    ASK_CANCEL = "mc"
    CANCEL = "mx"
    CALENDAR = "ic"
    ACCEPT = ACCEPT_OFFER
    DECLINE = DECLINE_OFFER


@dataclass(frozen=True)
class RegistrationButton:
    """A registration button: what to do, and the class (rg, rc) or registration id."""

    do: Do
    id: int


@dataclass(frozen=True)
class MyRegistrations:
    """The button that lists the person's registrations."""


def button_data(do: Do, target_id: int) -> str:
    """Return the data of a registration button."""
    return f"{do.value}:{target_id}"


def register_data(class_id: int) -> str:
    """Return the data of the Register button of a class."""
    return button_data(Do.REGISTER, class_id)


def decode_registration(data: str) -> RegistrationButton | MyRegistrations | None:
    """Return what a registration button asks for, or None when the data is not one."""
    if data == MY_REGISTRATIONS:
        return MyRegistrations()
    prefix, sep, rest = data.partition(":")
    target_id = number_in(rest)
    if not sep or prefix not in Do.__members__.values() or target_id is None:
        return None
    return RegistrationButton(Do(prefix), target_id)
