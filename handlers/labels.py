"""Messages naming catalog things: programs, forms, levels, months, a class's state."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from db.models import Form, Program, TheoryLevel, TrainingClass
from db.rules import Reason, Refusal, registration_closed, seats_left
from handlers.types import Msg, Param


def program_name(program: Program) -> Msg:
    """Return the program's name."""
    return Msg(f"program.{program.value}")


def form_name(form: Form) -> Msg:
    """Return the form's name."""
    return Msg(f"form.{form.value}")


def level_name(level: str | None) -> Msg:
    """Return a theory level's name, or "none" when the person has none."""
    if level is None or level not in TheoryLevel.__members__.values():
        return Msg("level.none")
    return Msg(f"level.{level}")


def status_name(status: str) -> Msg:
    """Return a registration status in words."""
    return Msg(f"status.{status}")


def local_time(moment: dt.datetime, zone: ZoneInfo) -> Msg:
    """Return a moment as local time and date, e.g. "08:00 ngày 01/12/2026"."""
    local = moment.astimezone(zone)
    return Msg("common.datetime", {"time": f"{local:%H:%M}", "date": local.date()})


def month_name(month: dt.date) -> Msg:
    """Return the month and year of `month`, e.g. "Tháng 12/2026" or "December 2026"."""
    return Msg("common.month", {"month": Msg(f"month.{month.month}"), "year": month.year})


def seats_text(training_class: TrainingClass, taken: int) -> Msg:
    """Return how many seats are left."""
    left = seats_left(training_class.capacity, taken)
    if left == 0:
        return Msg("class.full", {"capacity": training_class.capacity})
    return Msg("class.seats_left", {"left": left, "capacity": training_class.capacity})


def registration_text(training_class: TrainingClass, today: dt.date) -> Msg:
    """Return whether registration is open and until when."""
    deadline = training_class.registration_deadline
    match registration_closed(training_class, today):
        case None:
            return Msg("class.open_until", {"deadline": deadline})
        case Reason(refusal=Refusal.CANCELLED):
            return Msg("class.cancelled")
        case Reason(refusal=Refusal.REGISTRATION_CLOSED):
            return Msg("class.closed")
        case _:
            return Msg("class.deadline_passed", {"deadline": deadline})


def _refusal_params(reason: Reason) -> dict[str, Param]:
    params: dict[str, Param] = dict(reason.facts)
    if reason.refusal == Refusal.ALREADY_REGISTERED:
        status = reason.facts.get("status")
        params["status"] = status_name(str(status))
    if reason.refusal == Refusal.THEORY_LEVEL_LOW:
        required = reason.facts.get("required")
        have = reason.facts.get("have")
        params["required"] = level_name(required if isinstance(required, str) else None)
        params["have"] = level_name(have if isinstance(have, str) else None)
    return params


def refusal_text(reason: Reason) -> Msg:
    """Return one reason a person may not register, as a bullet line."""
    return Msg(f"refusal.{reason.refusal.value}", _refusal_params(reason))


def refusal_about(reason: Reason, name: str) -> Msg:
    """Return one reason `name` may not be registered, told to a unit head, as a bullet line.

    The learner's texts (refusal_text) speak to the learner ("đồng chí đã đăng ký…");
    these name the person, for a head nominating them.
    """
    return Msg(f"nominee_refusal.{reason.refusal.value}", {**_refusal_params(reason), "name": name})
