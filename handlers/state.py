"""A chat's conversation state, read from and written back to its Conversation row."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from db.models import Conversation, Person
from db.repos import Repos
from handlers.choices import Choice
from handlers.i18n import supported_language
from handlers.types import ChatSettings

# A question left unanswered this long is forgotten: the next message starts afresh.
STEP_LIFETIME = dt.timedelta(minutes=30)


class Flow(StrEnum):
    """The flow a chat is in the middle of."""

    SEARCH = "search"
    LANGUAGE = "language"
    UNIT = "unit"
    REGISTRATION = "registration"
    LINKING = "linking"

    BROADCAST = "broadcast"


class Step(StrEnum):
    """The question a chat is waiting to have answered."""

    SEARCH_QUERY = "search_query"
    CHOOSE_LANGUAGE = "choose_language"
    # A unit head types why a registration (State.target) is rejected; a typed reason
    # waits in State.note until the head confirms it.
    REJECT_REASON = "reject_reason"
    # A unit head types part of a name or phone to nominate for class State.target.
    NOMINEE_QUERY = "nominee_query"
    # A yes/no question (register? cancel?) whose first button is yes and second no.
    CONFIRM = "confirm"
    # A chat linking by a one-time code (Zalo) types the code for person State.target.
    LINK_CODE = "link_code"

    # An admin or unit head writes an announcement (State.target: the draft it replaces,
    # if any); the text is taken whole, line breaks included.
    BROADCAST_TEXT = "broadcast_text"
    # They type part of a unit's name or code (draft State.target), kept in State.note.
    BROADCAST_UNITS = "broadcast_units"
    # They type part of a class's code or title (draft State.target).
    BROADCAST_CLASS = "broadcast_class"


FLOW_OF_STEP = {
    Step.SEARCH_QUERY: Flow.SEARCH,
    Step.CHOOSE_LANGUAGE: Flow.LANGUAGE,
    Step.REJECT_REASON: Flow.UNIT,
    Step.NOMINEE_QUERY: Flow.UNIT,
    Step.CONFIRM: Flow.REGISTRATION,
    Step.LINK_CODE: Flow.LINKING,
    Step.BROADCAST_TEXT: Flow.BROADCAST,
    Step.BROADCAST_UNITS: Flow.BROADCAST,
    Step.BROADCAST_CLASS: Flow.BROADCAST,
}
# Steps that wait longer than STEP_LIFETIME: an announcement takes a while to write.
STEP_LIFETIMES = {Step.BROADCAST_TEXT: dt.timedelta(hours=2)}


@dataclass(frozen=True)
class State:
    """Where a chat is: language, pending question, and what its last buttons refer to."""

    language: str
    step: Step | None = None
    # Callback data of the list last shown, for a detail's Back button.
    last_list: str | None = None
    # The last search, for its Next/Previous buttons.
    last_query: str | None = None
    # The buttons last shown, so typed numbers and words press them.
    choices: tuple[Choice, ...] = ()
    # What the pending question is about (a registration or class id), kept with the step.
    target: int | None = None
    # Text the pending question holds on to (a typed rejection reason awaiting its
    # confirmation), kept with the step.
    note: str | None = None


@dataclass(frozen=True)
class Context:
    """What a handler may use besides the state: the data, who is talking, when, and where."""

    repos: Repos
    person: Person | None
    now: dt.datetime
    settings: ChatSettings
    # Who is talking on which platform.
    channel: str = ""
    user_id: str = ""
    # The channel cannot prove a phone number: accounts link by a one-time code.
    links_by_code: bool = False

    @property
    def zone(self) -> ZoneInfo:
        """Return the school's time zone."""
        return self.settings.zone

    @property
    def is_admin(self) -> bool:
        """Return whether the person talking is a school admin (roster role or [bot] admins)."""
        person = self.person
        return person is not None and (person.is_admin or person.phone in self.settings.admins)

    @property
    def leads_units(self) -> bool:
        """Return whether the person talking may use /unit: a unit head or an admin."""
        return self.person is not None and (self.person.is_unit_head or self.is_admin)

    @property
    def today(self) -> dt.date:
        """Return today's date where the school is."""
        return self.now.astimezone(self.zone).date()


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _target(data: dict[str, Any]) -> int | None:
    value = data.get("target")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_state(conversation: Conversation, now: dt.datetime, default_language: str) -> State:
    """Return the state stored in `conversation`, forgetting a question that expired."""
    data = conversation.data if isinstance(conversation.data, dict) else {}
    step: Step | None = None
    expired = conversation.expires_at is not None and conversation.expires_at <= now
    if conversation.step is not None and conversation.step in Step.__members__.values():
        step = None if expired else Step(conversation.step)
    stored = conversation.choices if isinstance(conversation.choices, list) else []
    choices = tuple(
        Choice(str(choice["data"]), tuple(str(word) for word in choice.get("words", [])))
        for choice in stored
        if isinstance(choice, dict) and "data" in choice
    )
    language = (
        supported_language(conversation.language) or supported_language(default_language) or "vi"
    )
    return State(
        language=language,
        step=step,
        last_list=_text(data, "last_list"),
        last_query=_text(data, "last_query"),
        choices=choices,
        target=_target(data) if step else None,
        note=_text(data, "note") if step else None,
    )


def write_state(conversation: Conversation, state: State, now: dt.datetime) -> None:
    """Store `state` in `conversation` (new objects, so the JSON columns are saved)."""
    conversation.language = state.language
    conversation.step = state.step.value if state.step else None
    conversation.flow = FLOW_OF_STEP[state.step].value if state.step else None
    lifetime = STEP_LIFETIMES.get(state.step, STEP_LIFETIME) if state.step else None
    conversation.expires_at = now + lifetime if lifetime else None
    conversation.choices = [
        {"data": choice.data, "words": list(choice.words)} for choice in state.choices
    ]
    data: dict[str, Any] = {}
    if state.last_list:
        data["last_list"] = state.last_list
    if state.last_query:
        data["last_query"] = state.last_query
    if state.step and state.target is not None:
        data["target"] = state.target
    if state.step and state.note is not None:
        data["note"] = state.note
    conversation.data = data
