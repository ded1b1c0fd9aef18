"""When notifications are due: reminder offsets, quiet hours and the jobs' settings.

Times in the configuration are the school's local times (`[bot] timezone`); everything
stored is UTC. The parsers raise ValueError with a sentence for the config file.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from db.reminders import ClassStart
from handlers.types import ChatSettings

_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_DAYS_AT = re.compile(r"(\d{1,2})d\s+(\S+)")
_BEFORE = re.compile(r"(\d{1,3})([hm])")


def parse_clock(text: str) -> dt.time:
    """Return the time of day written as HH:MM (24-hour)."""
    match = _CLOCK.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a time of day as HH:MM (e.g. 08:00)")
    return dt.time(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class ReminderOffset:
    """When a reminder is due before a class: days before at a clock time, or a span before.

    "7d 08:00" is 08:00 seven days before the first day; "2h" (or "90m") is that long
    before the first session starts.
    """

    text: str
    days: int = 0
    at: dt.time | None = None
    before: dt.timedelta | None = None

    def due(self, starts_at: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
        """Return when the reminder is due for a class whose first session starts then."""
        if self.before is not None:
            return starts_at - self.before
        assert self.at is not None
        day = starts_at.astimezone(zone).date() - dt.timedelta(days=self.days)
        return dt.datetime.combine(day, self.at, tzinfo=zone).astimezone(dt.UTC)


def parse_offset(text: str) -> ReminderOffset:
    """Return the reminder offset written as "Nd HH:MM", "Nh" or "Nm"."""
    cleaned = " ".join(text.split())
    if match := _DAYS_AT.fullmatch(cleaned):
        days = int(match.group(1))
        if days < 1:
            raise ValueError(f"{text!r}: days before must be 1 or more (use hours for the day)")
        return ReminderOffset(cleaned, days=days, at=parse_clock(match.group(2)))
    if match := _BEFORE.fullmatch(cleaned):
        amount = int(match.group(1))
        if amount < 1:
            raise ValueError(f"{text!r}: must be at least 1{match.group(2)} before the start")
        unit = "hours" if match.group(2) == "h" else "minutes"
        return ReminderOffset(cleaned, before=dt.timedelta(**{unit: amount}))
    raise ValueError(
        f'{text!r} is not a reminder offset: write days before at a time ("7d 08:00") '
        'or hours or minutes before the first session ("2h", "90m")'
    )


@dataclass(frozen=True)
class QuietHours:
    """A nightly span of local time in which nothing non-urgent is sent."""

    start: dt.time
    end: dt.time

    def contains(self, moment: dt.datetime, zone: dt.tzinfo) -> bool:
        """Return whether `moment` falls in the quiet hours."""
        clock = moment.astimezone(zone).time()
        if self.start <= self.end:
            return self.start <= clock < self.end
        return clock >= self.start or clock < self.end

    def ends_after(self, moment: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
        """Return when the quiet hours that hold at `moment` end (UTC)."""
        local = moment.astimezone(zone)
        end = dt.datetime.combine(local.date(), self.end, tzinfo=zone)
        if end <= local:
            end += dt.timedelta(days=1)
        return end.astimezone(dt.UTC)


def parse_quiet_hours(text: str) -> QuietHours | None:
    """Return the quiet hours written as "HH:MM-HH:MM", or None for "" (no quiet hours)."""
    if not text.strip():
        return None
    start, dash, end = text.partition("-")
    if not dash:
        raise ValueError(f'{text!r} is not a span of time as "21:00-07:00" ("" for none)')
    hours = QuietHours(parse_clock(start), parse_clock(end))
    if hours.start == hours.end:
        raise ValueError(f'{text!r} starts and ends at once; use "" for no quiet hours')
    return hours


DEFAULT_REMINDERS = ("7d 08:00", "1d 08:00", "2h")
DEFAULT_ONLINE_LINK = "1d 08:00"


@dataclass(frozen=True)
class NotifySettings:
    """What the notification jobs need of the configuration."""

    chat: ChatSettings = field(default_factory=ChatSettings)
    quiet_hours: QuietHours | None = QuietHours(dt.time(21), dt.time(7))
    reminders: tuple[ReminderOffset, ...] = tuple(parse_offset(t) for t in DEFAULT_REMINDERS)
    # When an online class's participants get the link to join it.
    online_link: ReminderOffset = field(default_factory=lambda: parse_offset(DEFAULT_ONLINE_LINK))
    # The unit heads' daily digest and the admins' daily summary, in local time.
    digest_at: dt.time = dt.time(17)
    admin_summary_at: dt.time = dt.time(7, 30)
    # A registration pending approval longer than this is brought to the unit heads.
    pending_alert_after: dt.timedelta = dt.timedelta(days=1)
    # Unit heads are warned this many days before a registration deadline.
    deadline_warning_days: int = 3

    @property
    def zone(self) -> ZoneInfo:
        """Return the school's time zone."""
        return self.chat.zone

    def quiet(self, moment: dt.datetime) -> bool:
        """Return whether `moment` falls in the quiet hours."""
        return self.quiet_hours is not None and self.quiet_hours.contains(moment, self.zone)


@dataclass(frozen=True)
class Due:
    """A reminder that has come: when, and by which offset."""

    at: dt.datetime
    offset: ReminderOffset

    @property
    def urgent(self) -> bool:
        """Return whether it passes quiet hours: one hours before the first session does."""
        return self.offset.before is not None


def due_times(offsets: tuple[ReminderOffset, ...], start: ClassStart, zone: ZoneInfo) -> list[Due]:
    """Return when each reminder before the class is due, earliest first.

    Offsets before the first session ("2h") need a schedule: without one the class has
    no clock time, so they are left out.
    """
    found: dict[dt.datetime, Due] = {}
    for offset in offsets:
        if offset.before is None or start.scheduled:
            moment = offset.due(start.at, zone)
            if moment < start.at:
                found.setdefault(moment, Due(moment, offset))
    return [found[moment] for moment in sorted(found)]


def latest_due(
    offsets: tuple[ReminderOffset, ...], start: ClassStart, zone: ZoneInfo, now: dt.datetime
) -> Due | None:
    """Return the latest reminder that has come, or None (none yet, or the class started).

    Only the latest is ever sent: one missed while the service was down, or due before
    the person registered, goes out late only while no later one is due.
    """
    if now >= start.at:
        return None
    passed = [due for due in due_times(offsets, start, zone) if due.at <= now]
    return passed[-1] if passed else None
