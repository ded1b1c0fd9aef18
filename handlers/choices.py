"""Buttons as numbered choices: how text channels show them and how typed text presses them.

Telegram shows real buttons, but every channel records the last buttons shown, so typing
"2" or a button's words presses it in a chat without buttons (Zalo, the console) too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from db.text import fold
from handlers.i18n import t
from handlers.types import Button, Msg, Reply

# A label may be "short name · description"; typing the short name alone presses it.
LABEL_SEPARATOR = " · "
_NON_WORD = re.compile(r"[^\w]+")
# One or two digits press a button; longer numbers ("2027", "045") are words to search for.
_NUMBER = re.compile(r"#?\s*(\d{1,2})\s*[.)]?")


@dataclass(frozen=True)
class Choice:
    """A button as remembered between messages: its data and the words that press it."""

    data: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class OutOfRange:
    """A number was typed that names no button shown."""

    number: int
    count: int


def match_key(text: str) -> str:
    """Return `text` folded to bare words, for comparing typed text with a label."""
    return " ".join(_NON_WORD.sub(" ", fold(text)).replace("_", " ").split())


def buttons_of(replies: Sequence[Reply]) -> list[Button]:
    """Return the buttons of `replies` in the order they are numbered, from 1."""
    return [button for reply in replies for row in reply.buttons for button in row]


def choices_of(replies: Sequence[Reply], language: str) -> tuple[Choice, ...]:
    """Return the choices the buttons of `replies` offer, labels read in `language`."""
    choices = []
    for button in buttons_of(replies):
        label = t(button.label, language)
        words = {match_key(label), match_key(label.split(LABEL_SEPARATOR)[0])}
        choices.append(Choice(button.data, tuple(sorted(word for word in words if word))))
    return tuple(choices)


def pick(text: str, choices: Sequence[Choice]) -> Choice | OutOfRange | None:
    """Return the choice `text` presses (by number or by words), OutOfRange, or None."""
    if number := _NUMBER.fullmatch(text.strip()):
        index = int(number.group(1))
        if 1 <= index <= len(choices):
            return choices[index - 1]
        return OutOfRange(index, len(choices))
    key = match_key(text)
    if not key:
        return None
    return next((choice for choice in choices if key in choice.words), None)


def reply_text(reply: Reply, language: str) -> str:
    """Return the text of a reply: one line per message, multi-line messages set apart."""
    text = ""
    for line in (t(msg, language) for msg in reply.lines):
        if not text:
            text = line
        elif "\n" in line or text.endswith("\n\n"):
            text = text.rstrip("\n") + "\n\n" + line + ("\n\n" if "\n" in line else "")
        else:
            text += "\n" + line
    return text.strip("\n")


def answer_hint(count: int) -> Msg:
    """Return how to answer `count` numbered choices: "Trả lời 1, 2 hoặc 3"."""
    if count == 1:
        return Msg("numbered.reply_one")
    if count <= 4:
        first = ", ".join(str(number) for number in range(1, count))
        return Msg("numbered.reply_some", {"first": first, "last": count})
    return Msg("numbered.reply_range", {"count": count})


def render_numbered(replies: Sequence[Reply], language: str, *, hint: bool = False) -> list[str]:
    """Return each reply as plain text with its buttons listed as numbered choices.

    With `hint`, the last reply with buttons ends with how to answer ("Trả lời 1 hoặc
    2"): a chat without buttons (Zalo) says so, the console's prompt is hint enough.
    """
    texts = []
    number = 0
    for reply in replies:
        parts = [reply_text(reply, language)]
        options = []
        for button in (button for row in reply.buttons for button in row):
            number += 1
            options.append(f"  {number}. {t(button.label, language)}")
        if options:
            parts.append("\n".join(options))
        texts.append("\n\n".join(part for part in parts if part))
    if hint and number:
        last = max(index for index, reply in enumerate(replies) if reply.buttons)
        texts[last] += "\n" + t(answer_hint(number), language)
    return texts
