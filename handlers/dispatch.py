"""The one entry point of every channel: answer what a user did, carrying the chat's state."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from db.repos import Repos
from handlers import broadcast
from handlers.broadcast_buttons import decode_broadcast
from handlers.callbacks import (
    Action,
    ListQuery,
    SearchPage,
    SetLanguage,
    ShowClass,
    ShowList,
    ShowMenu,
    decode,
)
from handlers.catalog import show_class, show_class_by_code, show_list, show_menu
from handlers.choices import Choice, OutOfRange, buttons_of, choices_of, pick
from handlers.help import (
    Outcome,
    cancel,
    help_reply,
    show_help,
    stale_button,
    start,
    unknown_command,
)
from handlers.i18n import supported_language
from handlers.language import ask_language, change_language, choose_language, set_language
from handlers.link_codes import answer_code, claim_phone, code_command, looks_like_code
from handlers.linking import log_out, looks_like_phone, share_contact, type_phone
from handlers.my_registrations import show_my_registrations
from handlers.notice_settings import choose_channel, decode_choice, show_settings
from handlers.phrases import Intent, intent_of, list_filters
from handlers.registration import answer_confirmation
from handlers.registration_buttons import decode_registration
from handlers.registration_press import press_registration
from handlers.search import answer_query, ask_query, search, show_search_page
from handlers.state import Context, State, Step, read_state, write_state
from handlers.types import ChatSettings, Incoming, Msg, Reply
from handlers.unit_buttons import decode_unit
from handlers.unit_flow import UNIT_STEPS, answer_unit, press_unit
from handlers.unit_head import unit_command

# Longer than any question or class title; anything longer is a paste gone wrong.
MAX_TEXT_LENGTH = 300
# Control characters (but tab and newline) and lone surrogates: a terminal's stray bytes
# or a client's bug. PostgreSQL refuses NUL in text and no encoder takes a lone surrogate.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


def printable(text: str | None) -> str | None:
    """Return `text` without control characters and lone surrogates."""
    return _UNPRINTABLE.sub("", text) if text else text


Command = Callable[[State, str, Incoming, Context], Awaitable[Outcome]]


@dataclass(frozen=True)
class Answer:
    """The replies to one incoming event and the language to render them in."""

    replies: list[Reply]
    language: str


async def dispatch(
    incoming: Incoming, repos: Repos, *, now: dt.datetime, settings: ChatSettings
) -> Answer:
    """Answer one incoming event, reading and saving the chat's state in the caller's unit of work.

    Call it inside one transaction: `async with sessionmaker() as s, s.begin(): …`.
    """
    if now.tzinfo is None:
        raise ValueError("dispatch needs an aware `now`")
    incoming = replace(incoming, text=printable(incoming.text), button=printable(incoming.button))
    conversation = await repos.conversations.get_or_create(incoming.channel, incoming.chat_id)
    state = read_state(conversation, now, settings.default_language)
    if conversation.language is None and (hint := supported_language(incoming.language_hint)):
        state = replace(state, language=hint)  # a new chat speaks the user's app language
    person = await repos.people.for_account(incoming.channel, incoming.user_id, now)
    ctx = Context(
        repos=repos,
        person=person,
        now=now,
        settings=settings,
        channel=incoming.channel,
        user_id=incoming.user_id,
        links_by_code=incoming.links_by_code,
    )
    state, replies = await answer(state, incoming, ctx)
    # Replies without buttons (an error, a prompt) leave the last buttons pressable.
    if buttons_of(replies):
        state = replace(state, choices=choices_of(replies, state.language))
    write_state(conversation, state, now)
    return Answer(replies, state.language)


async def answer(state: State, incoming: Incoming, ctx: Context) -> Outcome:
    """Route a contact, a button, a command, a pending question's answer, a choice or text."""
    if incoming.contact_phone is not None:
        return await share_contact(state, incoming, ctx)
    if incoming.button is not None:
        return await press(state, incoming.button, ctx)
    if state.step == Step.BROADCAST_TEXT and not (incoming.text or "").lstrip().startswith("/"):
        # An announcement: taken whole (line breaks, any length up to its own limit).
        return await broadcast.answer_text(state, incoming, ctx)
    text = " ".join((incoming.text or "").split())
    if not text:
        return await show_help(state, ctx)
    if len(text) > MAX_TEXT_LENGTH:
        too_long = Msg("input.too_long", {"length": len(text), "limit": MAX_TEXT_LENGTH})
        return state, [Reply(lines=(too_long,))]
    incoming = replace(incoming, text=text)
    if text.startswith("/"):
        return await run_command(state, text, incoming, ctx)
    if ctx.person is None and looks_like_phone(text):
        if ctx.links_by_code:
            return await claim_phone(state, text, ctx)
        return await type_phone(state, incoming, ctx)
    if ctx.links_by_code and ctx.person is None and looks_like_code(text):
        return await answer_code(state, text, ctx)
    picked = pick(text, state.choices)
    if isinstance(picked, Choice):
        return await press(state, picked.data, ctx)
    # Any other text answers the pending question, even a number ("45" finds K45).
    if state.step == Step.SEARCH_QUERY:
        return await answer_query(state, incoming, ctx)
    if state.step in UNIT_STEPS:
        return await answer_unit(state, incoming, ctx)
    if state.step in broadcast.TYPED_STEPS:
        return await broadcast.answer_typed(state, incoming, ctx)
    if state.step == Step.CONFIRM:
        return await answer_confirmation(state, incoming, ctx, press)
    if isinstance(picked, OutOfRange):
        return state, [_out_of_range(picked, ctx)]
    if state.step == Step.CHOOSE_LANGUAGE:
        return await choose_language(state, incoming, ctx)
    return await answer_text(state, incoming, ctx)


def _out_of_range(picked: OutOfRange, ctx: Context) -> Reply:
    if picked.count == 0:
        return help_reply(ctx, (Msg("choice.none", {"number": picked.number}),))
    return Reply(
        lines=(Msg("choice.out_of_range", {"number": picked.number, "count": picked.count}),)
    )


async def answer_text(state: State, incoming: Incoming, ctx: Context) -> Outcome:
    """Answer a question the bot recognises, or search for the words."""
    text = incoming.text or ""
    match intent_of(text):
        case Intent.ELIGIBLE:
            return await show_list(state, ListQuery(eligible=True), ctx)
        case Intent.UPCOMING:
            return await show_list(state, ListQuery(), ctx)
        case Intent.HELP:
            return await show_help(state, ctx)
        case Intent.GREETING:
            return await start(state, incoming, ctx)
        case None:
            return await search(state, text, ctx, typed_freely=True)


async def press(state: State, data: str, ctx: Context) -> Outcome:
    """Do what a button (pressed, or chosen by typing) asks for."""
    if (unit_action := decode_unit(data)) is not None:
        return await press_unit(state, unit_action, ctx)
    if (registration_button := decode_registration(data)) is not None:
        return await press_registration(state, registration_button, ctx)
    if (channel_choice := decode_choice(data)) is not None:
        return await choose_channel(state, channel_choice, ctx)

    if (broadcast_button := decode_broadcast(data)) is not None:
        return await broadcast.press_broadcast(state, broadcast_button, ctx)
    match decode(data):
        case ShowList(query):
            return await show_list(state, query, ctx)
        case ShowMenu(menu, query):
            return await show_menu(state, menu, query, ctx)
        case ShowClass(class_id):
            return await show_class(state, class_id, ctx)
        case SearchPage(page, tag):
            return await show_search_page(state, page, tag, ctx)
        case SetLanguage(language):
            return await set_language(state, language, ctx)
        case Action.HELP:
            return await show_help(state, ctx)
        case Action.ASK_SEARCH:
            return await ask_query(state, ctx)
        case Action.LANGUAGES:
            return await ask_language(state, ctx)
        case None:
            return stale_button(state, ctx)


async def _start(state: State, _argument: str, incoming: Incoming, ctx: Context) -> Outcome:
    return await start(state, incoming, ctx)


async def _help(state: State, _argument: str, _incoming: Incoming, ctx: Context) -> Outcome:
    return await show_help(state, ctx)


async def _cancel(state: State, _argument: str, incoming: Incoming, ctx: Context) -> Outcome:
    return await cancel(state, incoming, ctx)


async def _classes(state: State, argument: str, _incoming: Incoming, ctx: Context) -> Outcome:
    query, not_understood = list_filters(argument)
    notes = [Msg("catalog.unknown_filter", {"text": not_understood})] if not_understood else []
    return await show_list(state, query, ctx, notes)


async def _eligible(state: State, _argument: str, _incoming: Incoming, ctx: Context) -> Outcome:
    return await show_list(state, ListQuery(eligible=True), ctx)


async def _class(state: State, argument: str, _incoming: Incoming, ctx: Context) -> Outcome:
    return await show_class_by_code(state, argument, ctx)


async def _search(state: State, argument: str, _incoming: Incoming, ctx: Context) -> Outcome:
    if not argument:
        return await ask_query(state, ctx)
    return await search(state, argument, ctx, typed_freely=False)


async def _logout(state: State, _argument: str, incoming: Incoming, ctx: Context) -> Outcome:
    return await log_out(state, incoming, ctx)


async def _my(state: State, _argument: str, _incoming: Incoming, ctx: Context) -> Outcome:
    return await show_my_registrations(state, ctx)


async def _lang(state: State, argument: str, _incoming: Incoming, ctx: Context) -> Outcome:
    return await change_language(state, argument, ctx)


async def _settings(state: State, _argument: str, _incoming: Incoming, ctx: Context) -> Outcome:
    return await show_settings(state, ctx)


async def _code(state: State, argument: str, _incoming: Incoming, ctx: Context) -> Outcome:
    return await code_command(state, argument, ctx)


COMMANDS: dict[str, Command] = {
    "/start": _start,
    "/help": _help,
    "/classes": _classes,
    "/eligible": _eligible,
    "/class": _class,
    "/search": _search,
    "/lang": _lang,
    "/my": _my,
    "/cancel": _cancel,
    "/logout": _logout,
    "/unit": unit_command,
    "/settings": _settings,
    "/code": _code,
    "/broadcast": broadcast.broadcast_command,
}


async def run_command(state: State, text: str, incoming: Incoming, ctx: Context) -> Outcome:
    """Run a /command; in groups Telegram appends @botname, which is ignored."""
    word, _, argument = text.partition(" ")
    handler = COMMANDS.get(word.split("@", 1)[0].lower())
    if handler is None:
        return unknown_command(state, word, ctx)
    return await handler(state, argument.strip(), incoming, ctx)
