"""The console channel: chat with the bot in a terminal or through a pipe, one line a message."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from db.phone import normalize_phone
from db.repos import Repos
from handlers.attachments import carried
from handlers.choices import render_numbered
from handlers.dispatch import dispatch
from handlers.i18n import supported_language, t
from handlers.types import Document, Incoming, Msg

log = logging.getLogger(__name__)

CHANNEL = "console"
VISITOR = "visitor"
PROMPT = "> "
# Files sent in the chat (calendar entries) are saved here, relative to the working directory.
DOCUMENTS = Path("var") / "calendar"


class ConsoleError(Exception):
    """The console cannot start; the message is for the person at the terminal."""


async def _identify(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    as_phone: str | None,
    language: str | None,
) -> tuple[str, str]:
    """Link the console account to the roster person (or none); return chat id and language."""
    external_id = VISITOR
    async with sessionmaker() as session, session.begin():
        repos = Repos(session)
        if as_phone is not None:
            phone = normalize_phone(as_phone)
            if phone is None:
                raise ConsoleError(f"{as_phone!r} is not a Vietnamese mobile number (0XXXXXXXXX)")
            person = await repos.people.by_phone(phone)
            if person is None:
                raise ConsoleError(f"no person with phone {phone} in the roster")
            await repos.people.ensure_account(person, CHANNEL, phone)
            external_id = phone
        conversation = await repos.conversations.get_or_create(CHANNEL, external_id)
        if language is not None:
            conversation.language = supported_language(language)
        chat_language = supported_language(conversation.language) or settings.bot.default_language
    return external_id, chat_language


async def _lines(stdin: TextIO) -> AsyncIterator[str]:
    """Yield lines of `stdin` until its end.

    A daemon thread reads, so Ctrl-C interrupts a wait for input at once and a pending read
    never keeps the process alive.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def deliver(line: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the console has quit
            loop.call_soon_threadsafe(queue.put_nowait, line)

    def pump() -> None:
        try:
            for line in iter(stdin.readline, ""):
                deliver(line)
        except (OSError, ValueError):  # stdin closed or undecodable: treat as its end
            pass
        finally:
            deliver(None)

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line


async def _say(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    incoming: Incoming,
    stdout: TextIO,
    language: str,
) -> str:
    """Dispatch one message in its own unit of work, print the replies, return the language.

    A failure is logged and answered with an apology in the chat's `language`, and the
    chat goes on: one bad message must not end the conversation.
    """
    try:
        async with sessionmaker() as session, session.begin():
            repos = Repos(session)
            answer = await dispatch(
                incoming, repos, now=dt.datetime.now(dt.UTC), settings=settings.chat
            )
    except Exception:
        log.exception("message in console chat %s failed", incoming.chat_id)
        stdout.write(t(Msg("error.internal"), language) + "\n\n")
        stdout.flush()
        return language
    # A photo or document from another platform cannot be shown here: its text says so.
    replies = [carried(reply, CHANNEL) for reply in answer.replies]
    texts = render_numbered(replies, answer.language)
    for reply, text in zip(replies, texts, strict=True):
        if reply.ask_contact:  # no contact button here: say how a terminal proves who it is
            text += "\n" + t(Msg("console.contact_hint"), answer.language)
        stdout.write(text + "\n\n")
    for document in (reply.document for reply in answer.replies if reply.document):
        path = save_document(document)
        stdout.write(
            t(Msg("console.document_saved", {"path": str(path)}), answer.language) + "\n\n"
        )
    stdout.flush()
    return answer.language


def save_document(document: Document) -> Path:
    """Write a document sent in the chat to var/calendar/ under the working directory."""
    path = DOCUMENTS / Path(document.filename).name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(document.content)
    return path


async def run_console(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    as_phone: str | None,
    language: str | None,
    stdin: TextIO,
    stdout: TextIO,
) -> int:
    """Chat in the terminal as a roster person (by phone) or a visitor; return the exit status."""
    try:
        chat_id, chat_language = await _identify(sessionmaker, settings, as_phone, language)
    except ConsoleError as exc:
        print(f"trainingbot: {exc}", file=sys.stderr)
        return 2

    def said(text: str) -> Incoming:
        return Incoming(channel=CHANNEL, chat_id=chat_id, user_id=chat_id, text=text)

    interactive = stdin.isatty()
    if interactive:
        stdout.write(t(Msg("console.banner"), chat_language) + "\n\n")
    if isinstance(stdin, io.TextIOWrapper):
        # A stray byte that is not UTF-8 (a terminal in another encoding) becomes U+FFFD
        # instead of ending the chat.
        stdin.reconfigure(errors="replace")
    chat_language = await _say(sessionmaker, settings, said("/start"), stdout, chat_language)
    try:
        if interactive:
            stdout.write(PROMPT)
            stdout.flush()
        async for line in _lines(stdin):
            if line.strip():
                chat_language = await _say(
                    sessionmaker, settings, said(line.strip()), stdout, chat_language
                )
            if interactive:
                stdout.write(PROMPT)
                stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        if interactive:
            stdout.write("\n")
    return 0
