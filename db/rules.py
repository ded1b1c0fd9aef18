"""Pure rules about classes: seats, registration windows and who may register.

No database access here: callers load the facts (counts, quota usage) and these functions
decide, returning reasons so a flow can explain a refusal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from db.models import ClassStatus, Person, RegistrationStatus, TheoryLevel, TrainingClass

# Registrations that hold one of the class's seats: confirmed ones, those awaiting the unit
# head (so an approval never finds the class full) and a seat offered from the waitlist.
SEAT_STATUSES = (
    RegistrationStatus.CONFIRMED,
    RegistrationStatus.PENDING_APPROVAL,
    RegistrationStatus.OFFERED,
)
# Registrations that take a seat of a unit's quota: the same, so a unit cannot
# over-nominate while approvals or offers are pending.
QUOTA_STATUSES = SEAT_STATUSES


class Refusal(StrEnum):
    """Why a person may not register for a class."""

    CANCELLED = "cancelled"
    REGISTRATION_CLOSED = "registration_closed"
    DEADLINE_PASSED = "deadline_passed"
    AGE_UNKNOWN = "age_unknown"
    TOO_OLD = "too_old"
    THEORY_LEVEL_LOW = "theory_level_low"
    QUOTA_USED_UP = "quota_used_up"
    ALREADY_REGISTERED = "already_registered"
    STARTED = "started"
    DATES_CLASH = "dates_clash"


@dataclass(frozen=True)
class Reason:
    """One refusal with the facts that explain it (ages, levels, dates, quota use)."""

    refusal: Refusal
    facts: dict[str, str | int | dt.date | None] = field(default_factory=dict)


@dataclass(frozen=True)
class QuotaUse:
    """A unit's quota for one class and how many of its seats are taken."""

    unit_id: int
    unit_name: str
    seats: int
    used: int

    @property
    def used_up(self) -> bool:
        """Return whether no seat of the quota is left."""
        return self.used >= self.seats


def seats_left(capacity: int, taken: int) -> int:
    """Return the seats not held by a registration (SEAT_STATUSES; never negative)."""
    return max(capacity - taken, 0)


def deadline_passed(training_class: TrainingClass, today: dt.date) -> bool:
    """Return whether the registration deadline is over; it is open through its last day."""
    return today > training_class.registration_deadline


def registration_closed(training_class: TrainingClass, today: dt.date) -> Reason | None:
    """Return why the class takes no registrations today, or None when it does."""
    if training_class.status == ClassStatus.CANCELLED:
        return Reason(Refusal.CANCELLED)
    if training_class.status == ClassStatus.CLOSED:
        return Reason(Refusal.REGISTRATION_CLOSED)
    if deadline_passed(training_class, today):
        return Reason(Refusal.DEADLINE_PASSED, {"deadline": training_class.registration_deadline})
    return None


def registration_open(training_class: TrainingClass, today: dt.date) -> bool:
    """Return whether the class takes registrations today."""
    return registration_closed(training_class, today) is None


def age_limit(training_class: TrainingClass) -> int | None:
    """Return the class's maximum age, or None when it has none.

    Rosters write 0 for "no limit" as often as they leave the cell empty.
    """
    return training_class.max_age if training_class.max_age else None


def age_in_year(birth_year: int, year: int) -> int:
    """Return a person's age as counted in cadre rules: by year, not birthday."""
    return year - birth_year


def dates_overlap(one: TrainingClass, other: TrainingClass) -> bool:
    """Return whether two classes share at least one day."""
    return one.start_date <= other.end_date and other.start_date <= one.end_date


def refusal_reasons(
    person: Person,
    training_class: TrainingClass,
    today: dt.date,
    quota: QuotaUse | None,
    *,
    registered: RegistrationStatus | None = None,
    held: Sequence[TrainingClass] = (),
) -> list[Reason]:
    """Return why `person` may not register for `training_class` today; empty means eligible.

    `quota` is the quota of the person's unit or of its nearest ancestor that has one;
    `registered` the status of the person's live registration for this class, if any;
    `held` the other classes in which the person holds a seat (for date clashes).
    """
    closed = registration_closed(training_class, today)
    reasons: list[Reason] = [closed] if closed is not None else []
    if registered is not None:
        reasons.append(Reason(Refusal.ALREADY_REGISTERED, {"status": registered.value}))
    for other in held:
        if other.id != training_class.id and dates_overlap(training_class, other):
            reasons.append(
                Reason(
                    Refusal.DATES_CLASH,
                    {
                        "code": other.code,
                        "title": other.title,
                        "start": other.start_date,
                        "end": other.end_date,
                    },
                )
            )
    max_age = age_limit(training_class)
    year = training_class.start_date.year
    if max_age is not None:
        if person.birth_year is None:
            reasons.append(Reason(Refusal.AGE_UNKNOWN, {"max_age": max_age, "year": year}))
        elif (age := age_in_year(person.birth_year, year)) > max_age:
            reasons.append(Reason(Refusal.TOO_OLD, {"age": age, "max_age": max_age, "year": year}))
    required = training_class.required_theory_level
    if required is not None and theory_rank(person.theory_level) < required.rank:
        reasons.append(
            Reason(
                Refusal.THEORY_LEVEL_LOW,
                {
                    "required": required.value,
                    "have": person.theory_level.value if person.theory_level else None,
                },
            )
        )
    if quota is not None and quota.used_up:
        reasons.append(
            Reason(
                Refusal.QUOTA_USED_UP,
                {"unit": quota.unit_name, "seats": quota.seats, "used": quota.used},
            )
        )
    return reasons


def theory_rank(level: TheoryLevel | None) -> int:
    """Return the rank of a theory level, 0 for none."""
    return level.rank if level is not None else 0
