"""Which notices may go out as ZNS template messages, and the values their templates get.

A ZNS template is approved by Zalo in advance with named parameters; the school maps each
parameter to a value of the notice (`[zns.templates.KIND] fields`). A notice is a Reply
of message keys and parameters (handlers/notices.py); its values are those parameters,
rendered as text in the template's language, plus a few that every notice has:

- `message`: the whole notice as the chat would show it (without buttons);
- `details`: its lines after the first (what changed, who registered …);
- `person.name`, `person.phone`: the recipient from the roster;
- `=text`: the text itself (a constant of the template, e.g. the school's name).

Only the kinds below can have a template: the others (digests, admins' summaries, link
codes, alerts about channels) are for people who use the bot, and go by chat only.
"""

from __future__ import annotations

from dataclasses import dataclass

from babel.dates import format_date

from handlers.i18n import DATE_FORMATS, t
from handlers.types import Msg, Param, Reply

# Values every notice has, besides the parameters of its kind.
COMMON_SOURCES = ("message", "details", "person.name", "person.phone")
# A notice that lacks a parameter (a reminder of a class without a place yet) gives this.
MISSING = "-"
CLASS_FACTS = ("code", "title", "start", "end")


@dataclass(frozen=True)
class ZnsKind:
    """A kind of notice that may go by ZNS: the outbox kinds it covers, its parameters."""

    name: str
    outbox_kinds: tuple[str, ...]
    # Parameters its notices carry (some only sometimes: then they give MISSING).
    sources: tuple[str, ...]


ZNS_KINDS: dict[str, ZnsKind] = {
    kind.name: kind
    for kind in (
        ZnsKind("reminder", ("class.reminder",), (*CLASS_FACTS, "when", "place")),
        ZnsKind("online_link", ("class.online_link",), (*CLASS_FACTS, "when", "url")),
        ZnsKind(
            "change",
            ("class.changed", "class.cancelled"),
            (*CLASS_FACTS, "location", "old_location", "old_start", "old_end", "first", "url"),
        ),
        ZnsKind(
            "deadline_warning",
            ("unit.deadline_warning",),
            (*CLASS_FACTS, "deadline", "days", "unit", "used", "seats"),
        ),
        ZnsKind("broadcast", ("broadcast",), ("text",)),
        ZnsKind("nomination", ("registration.nominated",), (*CLASS_FACTS, "head", "position")),
        ZnsKind(
            "decision", ("registration.approved", "registration.rejected"), (*CLASS_FACTS, "reason")
        ),
        ZnsKind("offer", ("registration.offered",), (*CLASS_FACTS, "expires")),
    )
}


def kind_of(outbox_kind: str) -> ZnsKind | None:
    """Return the ZNS kind that covers an outbox kind, or None (chat only)."""
    return next((k for k in ZNS_KINDS.values() if outbox_kind in k.outbox_kinds), None)


def source_error(kind: ZnsKind, source: str) -> str | None:
    """Return why `source` cannot fill a parameter of `kind`'s template, or None if it can."""
    if source.startswith("="):
        return None if source[1:].strip() else "an empty constant (write =TEXT)"
    if source in kind.sources or source in COMMON_SOURCES:
        return None
    known = ", ".join([*kind.sources, *COMMON_SOURCES])
    return f"{source!r} is not a value of a {kind.name} notice (expected one of: {known}, or =TEXT)"


def _text(value: Param, language: str) -> str:
    if isinstance(value, Msg):
        return t(value, language)
    if value is None:
        return ""
    if isinstance(value, int | str):
        return str(value)
    # A date, formatted as the language writes it (dd/mm/yyyy in Vietnamese).
    return format_date(value, DATE_FORMATS[language], locale=language)


def notice_values(reply: Reply, *, language: str, person_name: str, phone: str) -> dict[str, str]:
    """Return every value of a notice a template parameter may take, rendered as text."""
    values: dict[str, str] = {}
    for line in reply.lines:
        for name, value in line.params.items():
            values.setdefault(name, _text(value, language))
    texts = [t(line, language) for line in reply.lines]
    values["message"] = "\n".join(texts)
    values["details"] = "\n".join(texts[1:])
    values["person.name"] = person_name
    values["person.phone"] = phone
    return values


def template_data(
    fields: dict[str, str], values: dict[str, str], max_lengths: dict[str, int]
) -> dict[str, str]:
    """Return the template's parameters filled from the notice's values, cut to their lengths."""
    data: dict[str, str] = {}
    for parameter, source in fields.items():
        value = source[1:].strip() if source.startswith("=") else values.get(source, "")
        value = " ".join(value.split()) if "\n" not in value else value.strip()
        if not value:
            value = MISSING
        limit = max_lengths.get(parameter)
        if limit is not None and len(value) > limit:
            value = value[: max(1, limit - 1)].rstrip() + "…"
        data[parameter] = value
    return data
