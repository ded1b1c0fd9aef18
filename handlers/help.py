"""Greeting, help, and the answers to input the bot does not understand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from handlers.callbacks import Action, ListQuery, list_data
from handlers.state import Context, State
from handlers.types import Button, Incoming, Msg, Reply
from handlers.unit_buttons import unit_page_data

Outcome = tuple[State, list[Reply]]


def main_menu(ctx: Context) -> tuple[tuple[Button, ...], ...]:
    """Return the buttons for what the bot can do."""
    first_row = [Button(Msg("menu.upcoming"), list_data(ListQuery()))]
    if ctx.person is not None:
        first_row.append(Button(Msg("menu.eligible"), list_data(ListQuery(eligible=True))))
    rows: tuple[tuple[Button, ...], ...] = (
        tuple(first_row),
        (
            Button(Msg("menu.search"), Action.ASK_SEARCH.value),
            Button(Msg("menu.language"), Action.LANGUAGES.value),
        ),
    )
    if ctx.leads_units:
        rows += ((Button(Msg("unit.menu"), unit_page_data(1)),),)
    return rows


def help_reply(ctx: Context, before: Sequence[Msg] = ()) -> Reply:
    """Return what the bot can do, after `before` (why help is shown, if not asked for)."""
    mine: list[Msg] = []
    if ctx.person is not None:
        mine.append(Msg("help.my"))
        if ctx.leads_units:
            mine.append(Msg("help.unit"))
            mine.append(Msg("help.code"))
        mine.append(Msg("help.settings"))

        if ctx.is_admin:
            mine.append(Msg("help.broadcast_admin"))
        elif ctx.leads_units:
            mine.append(Msg("help.broadcast_head"))
        mine.append(Msg("help.logout"))
    return Reply(lines=(*before, Msg("help.text"), *mine), buttons=main_menu(ctx))


async def start(state: State, _incoming: Incoming, ctx: Context) -> Outcome:
    """Greet the user by name and unit when linked; else ask them to share their phone."""
    person = ctx.person
    if person is None:
        replies = [help_reply(ctx, (Msg("start.visitor"), Msg("start.intro")))]
        # The contact button comes last, so it is what the chat shows under the text box;
        # where no contact proves a phone (Zalo), the person types it and gets a code.
        ask = (
            Reply(lines=(Msg("linkcode.ask_phone"),))
            if ctx.links_by_code
            else Reply(lines=(Msg("linking.ask_contact"),), ask_contact=True)
        )
        return replace(state, step=None), [*replies, ask]
    greeting = Msg("start.person", {"name": person.full_name, "unit": person.unit.name})
    return replace(state, step=None), [help_reply(ctx, (greeting, Msg("start.intro")))]


async def show_help(state: State, ctx: Context) -> Outcome:
    """Explain what the bot can do."""
    return replace(state, step=None), [help_reply(ctx)]


async def cancel(state: State, _incoming: Incoming, ctx: Context) -> Outcome:
    """Drop the pending question, if any."""
    return replace(state, step=None), [help_reply(ctx, (Msg("cancel.done"),))]


def unknown_command(state: State, command: str, ctx: Context) -> Outcome:
    """Answer a /command the bot does not know; drop any pending question.

    Whatever is typed next must not be taken as the answer to a question asked before.
    """
    return replace(state, step=None), [
        help_reply(ctx, (Msg("help.unknown_command", {"command": command}),))
    ]


def stale_button(state: State, ctx: Context) -> Outcome:
    """Answer a button whose data no longer applies (old message, deleted class, forgery).

    Any pending question is dropped: the help shown replaces it, so text typed next is
    read afresh, never as a late answer (a rejection reason, say).
    """
    return replace(state, step=None), [help_reply(ctx, (Msg("button.stale"),))]
