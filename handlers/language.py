"""Choosing the conversation's language (/lang vi|en)."""

from __future__ import annotations

from dataclasses import replace

from handlers.callbacks import language_data
from handlers.help import Outcome, help_reply
from handlers.i18n import LANGUAGES
from handlers.phrases import language_named
from handlers.state import Context, State, Step
from handlers.types import Button, Incoming, Msg, Reply


def _language_buttons() -> tuple[tuple[Button, ...], ...]:
    return (tuple(Button(Msg(f"lang.{code}"), language_data(code)) for code in LANGUAGES),)


async def ask_language(state: State, ctx: Context, before: tuple[Msg, ...] = ()) -> Outcome:
    """Offer the languages as buttons and wait for a choice."""
    reply = Reply(lines=(*before, Msg("lang.choose")), buttons=_language_buttons())
    return replace(state, step=Step.CHOOSE_LANGUAGE), [reply]


async def set_language(state: State, language: str, ctx: Context) -> Outcome:
    """Switch the conversation to `language` and say so in it."""
    state = replace(state, language=language, step=None)
    return state, [help_reply(ctx, (Msg("lang.set"),))]


async def change_language(state: State, argument: str, ctx: Context) -> Outcome:
    """Handle /lang [code]: switch, or offer the choice when none or an unknown one is given."""
    if not argument:
        return await ask_language(state, ctx)
    language = language_named(argument)
    if language is None:
        return await ask_language(state, ctx, (Msg("lang.unknown", {"language": argument}),))
    return await set_language(state, language, ctx)


async def choose_language(state: State, incoming: Incoming, ctx: Context) -> Outcome:
    """Take a language typed while the language buttons are waiting; else ask again."""
    language = language_named(incoming.text or "")
    if language is None:
        return await ask_language(state, ctx, (Msg("choice.expected"),))
    return await set_language(state, language, ctx)
