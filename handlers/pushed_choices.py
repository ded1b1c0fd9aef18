"""Buttons of a notice made pressable by typing, in chats without buttons (Zalo).

A notice with buttons (an offered seat: accept or decline) reaches a Zalo chat as a
numbered list. For "1" to press the notice's first button rather than one of a list the
chat saw before, the chat's remembered choices become the notice's, as a reply's would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from db.repos import Repos
from handlers.choices import buttons_of, choices_of
from handlers.state import read_state, write_state
from handlers.types import Reply


async def remember_pushed_choices(
    repos: Repos,
    channel: str,
    chat_id: str,
    replies: Sequence[Reply],
    language: str,
    *,
    now: dt.datetime,
) -> None:
    """Make the buttons of `replies`, just sent to the chat, the ones typed numbers press."""
    if not buttons_of(replies):
        return
    conversation = await repos.conversations.get_or_create(channel, chat_id)
    state = read_state(conversation, now, language)
    write_state(conversation, replace(state, choices=choices_of(replies, language)), now)
