"""Linking by a one-time code, where the platform cannot prove a phone number (Zalo).

The user types their phone number; the bot links the chat account only once it types a
code that reached the person some other way: sent by the bot to the person's account on
another channel (through the outbox), or given to them by their unit head or an admin
(`/code PHONE`). Telegram keeps linking by a shared contact (handlers/linking.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import replace

from db import link_codes, units
from db.link_codes import Outcome as Redeemed
from db.models import ChannelAccount, Person
from db.phone import normalize_phone
from handlers.help import Outcome, help_reply
from handlers.linking import refuse_conflict
from handlers.notices import notify
from handlers.state import Context, State, Step
from handlers.types import Msg, Param, Reply
from handlers.unit_head import head_of

log = logging.getLogger(__name__)

# The channel whose accounts link by code; the codes unit heads issue are for it.
CODE_CHANNEL = "zalo"
# Channels a code can be sent through: the console is a terminal, not a way to reach anyone.
CHANNEL_NAMES: dict[str, Msg] = {
    "telegram": Msg("channel.telegram"),
    "zalo": Msg("channel.zalo"),
}
_CODE = re.compile(rf"\d{{{link_codes.CODE_DIGITS}}}")
_SPACES = re.compile(r"[\s.\-]")


def looks_like_code(text: str) -> bool:
    """Return whether `text` is a link code (six digits, spaces allowed)."""
    return _CODE.fullmatch(_SPACES.sub("", text)) is not None


def _clock(ctx: Context, moment: dt.datetime | None) -> str:
    """Return a moment as local HH:MM dd/mm/yyyy."""
    assert moment is not None
    return moment.astimezone(ctx.zone).strftime("%H:%M %d/%m/%Y")


async def _other_accounts(ctx: Context, person: Person) -> list[ChannelAccount]:
    """Return the person's reachable accounts on channels the bot can send a code through."""
    accounts = []
    for channel in CHANNEL_NAMES:
        if channel == ctx.channel:
            continue
        account = await ctx.repos.people.account_of(person.id, channel)
        if account is not None and account.reachable:
            accounts.append(account)
    return accounts


async def claim_phone(state: State, text: str, ctx: Context) -> Outcome:
    """Start linking this account to the person whose phone was typed: ask for their code."""
    state = replace(state, step=None, target=None)
    phone = normalize_phone(text)
    if phone is None:
        return state, [help_reply(ctx, (Msg("linking.invalid_phone", {"phone": text}),))]
    person = await ctx.repos.people.by_phone(phone)
    if person is None:
        return state, [help_reply(ctx, (Msg("linking.not_in_roster", {"phone": phone}),))]
    held = await ctx.repos.people.account_of(person.id, ctx.channel)
    if held is not None and held.external_id != ctx.user_id:
        return state, [await refuse_conflict(person, ctx)]
    waiting = replace(state, step=Step.LINK_CODE, target=person.id)
    others = await _other_accounts(ctx, person)
    if not others:
        log.info(
            "link code asked on %s by %s: person %s has no other",
            ctx.channel,
            ctx.user_id,
            person.id,
        )
        return waiting, [Reply(lines=(Msg("linkcode.ask_staff", {"phone": phone}),))]
    issued = await link_codes.issue_for_account(
        ctx.repos.session, person.id, ctx.channel, ctx.user_id, now=ctx.now
    )
    # The code goes where the outbox sends the person's notices: one of these accounts.
    where = CHANNEL_NAMES[others[0].channel]
    if issued is None:
        return waiting, [Reply(lines=(Msg("linkcode.already_sent", {"channel": where}),))]
    minutes = int(link_codes.SELF_LIFETIME.total_seconds() // 60)
    notice = Reply(
        lines=(
            Msg(
                "linkcode.notice",
                {
                    "code": issued.code,
                    "channel": CHANNEL_NAMES.get(ctx.channel),
                    "minutes": minutes,
                },
            ),
        )
    )
    await notify(
        ctx.repos,
        person.id,
        "linking.code",
        f"link-code:{person.id}:{ctx.channel}:{ctx.user_id}:{ctx.now.isoformat()}",
        notice,
        due_at=ctx.now,
        urgent=True,
        expires_at=issued.expires_at,
    )
    log.info(
        "link code for person %s sent for account %s on %s", person.id, ctx.user_id, ctx.channel
    )
    return waiting, [Reply(lines=(Msg("linkcode.sent", {"channel": where, "minutes": minutes}),))]


async def answer_code(state: State, text: str, ctx: Context) -> Outcome:
    """Link the chat account if `text` is a live code of the person it asked to be linked to."""
    person_id = state.target if state.step == Step.LINK_CODE else None
    if person_id is None:
        # The question was dropped (another command) or forgotten: the code this account
        # asked for still tells whom it is for.
        session = ctx.repos.session
        person_id = await link_codes.asked_by(session, ctx.channel, ctx.user_id, now=ctx.now)
        state = replace(state, step=Step.LINK_CODE, target=person_id)
    if person_id is None:
        return replace(state, step=None, target=None), [Reply(lines=(Msg("linkcode.none"),))]
    code = _SPACES.sub("", text)
    result = await link_codes.redeem(
        ctx.repos.session, person_id, ctx.channel, ctx.user_id, code, now=ctx.now
    )
    if result.outcome == Redeemed.WRONG:
        return state, [Reply(lines=(Msg("linkcode.wrong", {"left": result.left}),))]
    if result.outcome == Redeemed.LOCKED:
        until = _clock(ctx, result.until)
        return state, [Reply(lines=(Msg("linkcode.locked", {"until": until}),))]
    done = replace(state, step=None, target=None)
    if result.outcome == Redeemed.NO_CODE:
        return done, [Reply(lines=(Msg("linkcode.none"),))]
    person = await units.person(ctx.repos.session, person_id)
    if person is None:  # removed from the roster meanwhile
        return done, [help_reply(ctx, (Msg("linkcode.none"),))]
    account = await ctx.repos.people.link(person, ctx.channel, ctx.user_id, ctx.now)
    if account.external_id != ctx.user_id:
        return done, [await refuse_conflict(person, ctx)]
    log.info("account %s on %s linked to person %s by code", ctx.user_id, ctx.channel, person.id)
    linked = replace(ctx, person=person)
    greeting = Msg("start.person", {"name": person.full_name, "unit": person.unit.name})
    return done, [help_reply(linked, (greeting, Msg("linking.linked")))]


async def code_command(state: State, argument: str, ctx: Context) -> Outcome:
    """`/code PHONE`: a unit head or admin issues a link code for a person of their units.

    `/code 123456` in a chat linking by code enters that code.
    """
    if ctx.links_by_code and ctx.person is None and looks_like_code(argument):
        return await answer_code(state, argument, ctx)
    state = replace(state, step=None)
    head = await head_of(ctx)
    if head is None:
        return state, [help_reply(ctx, (Msg("linkcode.only_heads"),))]
    phone = normalize_phone(argument) if argument else None
    if phone is None:
        return state, [Reply(lines=(Msg("linkcode.usage"),))]
    person = await ctx.repos.people.by_phone(phone)
    if person is None:
        return state, [Reply(lines=(Msg("linking.not_in_roster", {"phone": phone}),))]
    if not head.covers(person):
        return state, [Reply(lines=(Msg("unit.not_your_unit"),))]
    issued = await link_codes.issue_for_person(
        ctx.repos.session, person.id, issued_by_id=head.person.id, now=ctx.now, channel=CODE_CHANNEL
    )
    log.info("link code for person %s issued by person %s", person.id, head.person.id)
    params: dict[str, Param] = {
        "name": person.full_name,
        "phone": person.phone,
        "code": issued.code,
        "until": _clock(ctx, issued.expires_at),
    }
    return state, [Reply(lines=(Msg("linkcode.issued", params),))]
