"""/settings: which of a person's linked channels carries their notices.

The delivery engine sends each notice to one account per person: the chosen channel
(`person.preferred_channel`) while it is reachable, else the one they wrote from last.
Never to both.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace

from sqlalchemy import select

from db.models import ChannelAccount
from handlers.help import Outcome, help_reply
from handlers.link_codes import CHANNEL_NAMES
from handlers.state import Context, State
from handlers.types import Button, Msg, Param, Reply

log = logging.getLogger(__name__)

PREFIX = "ch"
AUTOMATIC = "auto"


def choice_data(channel: str | None) -> str:
    """Return the data of the button that sends notices to `channel` (None: the last used)."""
    return f"{PREFIX}:{channel or AUTOMATIC}"


def decode_choice(data: str) -> str | None:
    """Return the channel a settings button names ("auto" for the last used), else None."""
    prefix, sep, rest = data.partition(":")
    if prefix != PREFIX or not sep or (rest != AUTOMATIC and rest not in CHANNEL_NAMES):
        return None
    return rest


async def _accounts(ctx: Context) -> list[ChannelAccount]:
    """Return the talking person's accounts on chat channels, in channel order."""
    assert ctx.person is not None
    stmt = select(ChannelAccount).where(
        ChannelAccount.person_id == ctx.person.id,
        ChannelAccount.channel.in_(list(CHANNEL_NAMES)),
    )
    rows = list((await ctx.repos.session.scalars(stmt)).all())
    order = list(CHANNEL_NAMES)
    return sorted(rows, key=lambda account: order.index(account.channel))


async def show_settings(state: State, ctx: Context, before: tuple[Msg, ...] = ()) -> Outcome:
    """Show where notices go and offer the person's linked channels to choose from."""
    state = replace(state, step=None)
    person = ctx.person
    if person is None:
        return state, [help_reply(ctx, (*before, Msg("settings.link_first")))]
    accounts = await _accounts(ctx)
    lines = [*before, Msg("settings.title")]
    for account in accounts:
        name: dict[str, Param] = {"channel": CHANNEL_NAMES[account.channel]}
        linked = Msg("settings.linked", name)
        lines.append(linked if account.reachable else Msg("settings.unreachable", name))
    reachable = [account for account in accounts if account.reachable]
    chosen = next((a for a in reachable if a.channel == person.preferred_channel), None)
    never = dt.datetime.min.replace(tzinfo=dt.UTC)
    last = max(reachable, key=lambda a: a.last_seen_at or never, default=None)
    if chosen is not None:
        lines.append(Msg("settings.goes_chosen", {"channel": CHANNEL_NAMES[chosen.channel]}))
    elif last is not None:
        lines.append(Msg("settings.goes_last", {"channel": CHANNEL_NAMES[last.channel]}))
    else:
        lines.append(Msg("settings.goes_nowhere"))
    if len(accounts) < len(CHANNEL_NAMES):
        lines.append(Msg("settings.link_more"))
    buttons: tuple[tuple[Button, ...], ...] = ()
    if len(reachable) > 1:
        row = [Button(Msg("settings.choose_last"), choice_data(None))]
        row += [
            Button(
                Msg("settings.choose", {"channel": CHANNEL_NAMES[a.channel]}),
                choice_data(a.channel),
            )
            for a in reachable
        ]
        buttons = tuple((button,) for button in row)
    return state, [Reply(lines=tuple(lines), buttons=buttons)]


async def choose_channel(state: State, choice: str, ctx: Context) -> Outcome:
    """Send the person's notices to `choice` (a linked channel, or "auto": the last used)."""
    person = ctx.person
    if person is None:
        return await show_settings(state, ctx)
    if choice == AUTOMATIC:
        person.preferred_channel = None
        log.info("person %s: notices to the channel used last", person.id)
        return await show_settings(state, ctx, (Msg("settings.saved_last"),))
    linked = {account.channel for account in await _accounts(ctx) if account.reachable}
    if choice not in linked:
        return await show_settings(state, ctx, (Msg("button.stale"),))
    person.preferred_channel = choice
    log.info("person %s: notices to %s", person.id, choice)
    saved = Msg("settings.saved", {"channel": CHANNEL_NAMES[choice]})
    return await show_settings(state, ctx, (saved,))
