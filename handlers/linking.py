"""Account linking: a chat proves who it is by sharing its own phone number, or unlinks."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

from db.models import Person
from db.phone import normalize_phone
from handlers.help import Outcome, help_reply
from handlers.notices import notify
from handlers.state import Context, State
from handlers.types import Incoming, Msg, Reply

log = logging.getLogger(__name__)

# Ten or eleven digits, maybe after a "+" and with spaces, dots, dashes or brackets: a
# phone number typed as text. Shorter numbers ("45" finds K45) are search words.
_TYPED_PHONE = re.compile(r"\+?\d{10,11}")
_SEPARATORS = re.compile(r"[\s.\-()]")


def contact_request(msg: Msg) -> Reply:
    """Return `msg`, which asks for the user's own phone number, with the contact button."""
    return Reply(lines=(msg,), ask_contact=True)


def looks_like_phone(text: str) -> bool:
    """Return whether `text` is a phone number typed as text rather than a search word."""
    return _TYPED_PHONE.fullmatch(_SEPARATORS.sub("", text)) is not None


def _greeting(person: Person) -> Msg:
    return Msg("start.person", {"name": person.full_name, "unit": person.unit.name})


async def share_contact(state: State, incoming: Incoming, ctx: Context) -> Outcome:
    """Link the chat account to the roster person whose phone the user shared as their own."""
    state = replace(state, step=None)
    if not incoming.contact_user_id or incoming.contact_user_id != ctx.user_id:
        log.info("contact of another user refused on %s for account %s", ctx.channel, ctx.user_id)
        return state, [contact_request(Msg("linking.not_own_contact"))]
    raw = incoming.contact_phone or ""
    phone = normalize_phone(raw)
    if phone is None:
        shown = raw if raw.startswith(("+", "0")) else f"+{raw}"  # Telegram drops the "+"
        return state, [help_reply(ctx, (Msg("linking.invalid_phone", {"phone": shown}),))]
    person = await ctx.repos.people.by_phone(phone)
    if person is None:
        return state, [help_reply(ctx, (Msg("linking.not_in_roster", {"phone": phone}),))]
    account = await ctx.repos.people.link(person, ctx.channel, ctx.user_id, ctx.now)
    if account.external_id != ctx.user_id:
        return state, [await refuse_conflict(person, ctx)]
    linked = replace(ctx, person=person)
    if ctx.person is not None and ctx.person.id == person.id:
        return state, [help_reply(linked, (_greeting(person),))]
    log.info("account %s on %s linked to person %s", ctx.user_id, ctx.channel, person.id)
    return state, [help_reply(linked, (_greeting(person), Msg("linking.linked")))]


async def refuse_conflict(person: Person, ctx: Context) -> Reply:
    """Refuse to move a person's link to this account; tell the admins, if any."""
    log.warning(
        "person %s is linked to another account on %s; account %s refused",
        person.id,
        ctx.channel,
        ctx.user_id,
    )
    notice = Reply(
        lines=(
            Msg(
                "linking.conflict_notice",
                {
                    "name": person.full_name,
                    "phone": person.phone,
                    "unit": person.unit.name,
                    "channel": ctx.channel,
                },
            ),
        )
    )
    admins = await ctx.repos.people.admins(ctx.settings.admins)
    for admin in admins:
        await notify(
            ctx.repos,
            admin.id,
            "linking.conflict",
            f"link-conflict:{person.id}:{ctx.channel}:{ctx.user_id}:{admin.id}",
            notice,
            due_at=ctx.now,
        )
    lines = [Msg("linking.conflict")]
    if admins:
        lines.append(Msg("linking.conflict_reported"))
    return Reply(lines=tuple(lines))


async def log_out(state: State, _incoming: Incoming, ctx: Context) -> Outcome:
    """Unlink this chat account from its roster person; the chat goes on as a visitor."""
    state = replace(state, step=None)
    visitor = replace(ctx, person=None)
    if not await ctx.repos.people.unlink(ctx.channel, ctx.user_id):
        return state, [help_reply(visitor, (Msg("linking.not_linked"),))]
    log.info("account %s on %s unlinked", ctx.user_id, ctx.channel)
    # Where no contact proves a phone (Zalo) linking again takes a typed number and a code.
    said = Msg("linking.logged_out_by_code") if ctx.links_by_code else Msg("linking.logged_out")
    return state, [help_reply(visitor, (said,))]


async def type_phone(state: State, _incoming: Incoming, _ctx: Context) -> Outcome:
    """Explain that a typed number proves nothing and ask for the contact button instead."""
    return replace(state, step=None), [contact_request(Msg("linking.typed_phone"))]
