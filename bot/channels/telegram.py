"""The Telegram channel: updates in through the inbox, replies out through the Bot API.

Updates come from long polling (our own getUpdates loop) or a webhook; each is stored in
the inbox (db/inbox.py) before Telegram is told it arrived, then the inbox workers
(bot/channels/inbox_worker.py) take them from the store in each chat's order; this
channel is their `Platform` for Telegram: translate to `Incoming`, `dispatch`, render,
send.

Notices (outbox rows) are sent by the delivery engine (bot/delivery.py), which owns the
rate limits; this channel is its `Sender` for Telegram and maps the Bot API's answers to
the engine's neutral errors (bot/senders.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Bot, BotCommand, Message, Update
from telegram.constants import ChatType
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import Application

from bot import metrics
from bot.channels.inbox_worker import IDLE_SECONDS, LEASE, InboxWorker
from bot.channels.inbox_worker import now_utc as now_utc
from bot.channels.telegram_render import (
    CHANNEL,
    Outgoing,
    can_edit,
    document_file,
    inline_markup,
    markup,
    render_replies,
)
from bot.channels.telegram_webhook import BadUpdate
from bot.config import Settings, TelegramSettings
from bot.senders import (
    ChannelDown,
    PermanentFailure,
    TemporaryFailure,
    Throttled,
    Unreachable,
)
from db.models import Conversation
from db.repos import Repos
from handlers.dispatch import dispatch
from handlers.i18n import supported_language, t
from handlers.types import Attachment, AttachmentKind, Incoming, Msg, Reply

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ("message", "callback_query", "my_chat_member")
# The bot's menu: command → description key. Texts live in handlers/locales/*/telegram.po.
COMMANDS = (
    ("start", Msg("telegram.command.start")),
    ("classes", Msg("telegram.command.classes")),
    ("search", Msg("telegram.command.search")),
    ("my", Msg("telegram.command.my")),
    ("help", Msg("telegram.command.help")),
    ("lang", Msg("telegram.command.lang")),
    ("logout", Msg("telegram.command.logout")),
    ("unit", Msg("telegram.command.unit")),
    ("settings", Msg("telegram.command.settings")),
)
# While the Bot API refuses the token, notices wait this long between two tries.
TOKEN_REFUSED_PAUSE = 60.0
# With poll_timeout = 0 (short polling), the pause between two empty getUpdates.
EMPTY_POLL_PAUSE = 1.0
# /healthz: an API call that succeeded this recently shows the Bot API reachable; else a
# getMe (at most this long) asks.
HEALTHY_WITHIN = 60.0
PROBE_TIMEOUT = 5.0


def build_application(settings: TelegramSettings) -> Application[Any, Any, Any, Any, Any, Any]:
    """Return the PTB Application for the configured bot, without PTB's own updater."""
    if settings.token is None:
        raise ValueError("no Telegram token configured")
    # PTB 22 gives durations (a 429's retry_after) as int with a deprecation warning, raised
    # inside the Bot API call, before the RetryAfter reaches us; opting in to timedelta, as
    # PTB asks, makes a 429 a plain RetryAfter (an error where warnings are errors).
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    root = settings.base_url
    return (
        Application.builder()
        .token(settings.token.get_secret_value())
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        .updater(None)
        .build()
    )


def startup_failure(exc: Exception, settings: TelegramSettings) -> str | None:
    """Return one sentence for a failure to start the channel, never the token; else None.

    Start-up is getMe (a refused token, an unreachable server), the webhook's listening
    port and setWebhook.
    """
    if isinstance(exc, InvalidToken):
        return (
            "Telegram refused the bot token ([telegram] token or TRAININGBOT_TELEGRAM_TOKEN): "
            "check it with @BotFather"
        )
    if isinstance(exc, NetworkError) and not isinstance(exc, BadRequest):
        # (PTB's BadRequest is a NetworkError too: Telegram's answer, handled below.)
        return (
            f"cannot reach the Telegram Bot API at {settings.base_url} ({type(exc).__name__}): "
            "check [telegram] base_url and the network"
        )
    if isinstance(exc, TelegramError):
        reason = exc.message
        if settings.token is not None:
            reason = reason.replace(settings.token.get_secret_value(), "…")
        return f"Telegram refused to start the bot: {reason}"
    if isinstance(exc, OSError):
        where = f"{settings.listen_host}:{settings.listen_port}"
        reason = exc.strerror or type(exc).__name__
        return (
            f"cannot listen for the webhook on {where} ({reason}): check [telegram] "
            "listen_host and listen_port"
        )
    return None


class TelegramProbe:
    """/healthz's check of the Bot API for a process that does not run the channel.

    `trainingbot web` serves the admin without the chat; with a token configured it
    still reports whether Telegram answers (a getMe, at most once per HEALTHY_WITHIN).
    """

    channel = CHANNEL

    def __init__(self, settings: TelegramSettings, healthy_within: float = HEALTHY_WITHIN) -> None:
        self.application = build_application(settings)
        self.healthy_within = healthy_within
        self._ready = False

    async def probe(self) -> None:
        """Raise unless the Bot API answered recently or answers a getMe now."""
        last = metrics.last_api_success(CHANNEL)
        if last is not None and time.time() - last < self.healthy_within:
            return
        if not self._ready:
            # initialize() is a getMe itself.
            await asyncio.wait_for(self.application.initialize(), PROBE_TIMEOUT)
            self._ready = True
        else:
            await asyncio.wait_for(self.application.bot.get_me(), PROBE_TIMEOUT)
        metrics.api_succeeded(CHANNEL)

    async def close(self) -> None:
        """Close the Bot API client."""
        if self._ready:
            await self.application.shutdown()


def chat_key(update: Update) -> str:
    """Return the chat an update belongs to, for ordering; the update itself if none."""
    if update.effective_chat is not None:
        return str(update.effective_chat.id)
    if update.effective_user is not None:
        return str(update.effective_user.id)
    return f"update:{update.update_id}"


def is_private(update: Update) -> bool:
    """Return whether the update comes from a one-to-one chat with the bot."""
    chat = update.effective_chat
    return chat is None or chat.type == ChatType.PRIVATE


def incoming_of(update: Update) -> Incoming | None:
    """Translate a message or a button press into the neutral Incoming, else None."""
    user = update.effective_user
    chat = update.effective_chat
    if user is None or chat is None:
        return None
    base = Incoming(
        channel=CHANNEL,
        chat_id=str(chat.id),
        user_id=str(user.id),
        language_hint=user.language_code,
    )
    if update.callback_query is not None:
        return replace(base, button=update.callback_query.data or "")
    message = update.message
    if message is None:
        return None
    if message.contact is not None:
        contact = message.contact
        return replace(
            base,
            contact_phone=contact.phone_number,
            contact_user_id=str(contact.user_id) if contact.user_id else None,
        )
    attachment = attachment_of(message)
    if attachment is not None:
        return replace(base, text=message.caption or "", attachment=attachment)
    # A sticker or a voice message comes as empty text, which the flows answer with help.
    return replace(base, text=message.text or "")


def attachment_of(message: Message) -> Attachment | None:
    """Return the photo (its largest size) or document of a message, by Telegram's file id."""
    if message.photo:
        largest = message.photo[-1]
        return Attachment(AttachmentKind.PHOTO, CHANNEL, largest.file_id)
    document = message.document
    if document is not None:
        return Attachment(
            AttachmentKind.DOCUMENT,
            CHANNEL,
            document.file_id,
            filename=document.file_name,
            mime_type=document.mime_type,
        )
    return None


def _retry_seconds(exc: RetryAfter) -> float:
    """Return how long Telegram asked to wait, whichever type PTB gives it as."""
    with warnings.catch_warnings():
        # PTB 22 warns that the type will become timedelta; either is handled here.
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class TelegramChannel:
    """One process's share of the Telegram work: receive, handle, send, deliver notices."""

    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        workers: int = 4,
        lease: dt.timedelta = LEASE,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.application = application
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.workers = workers
        self.inbox = InboxWorker(
            self, sessionmaker, settings.chat, lease=lease, idle_seconds=idle_seconds
        )

    @property
    def bot(self) -> Bot:
        """Return the Bot API client."""
        bot: Bot = self.application.bot
        return bot

    # Lifecycle -----------------------------------------------------------------------

    async def initialize(self) -> None:
        """Connect to the Bot API (getMe) and publish the command menu in vi and en."""
        await self.application.initialize()
        for language in ("vi", "en"):
            commands = [BotCommand(name, t(msg, language)) for name, msg in COMMANDS]
            await self.bot.set_my_commands(
                commands, language_code=None if language == "vi" else language
            )

    async def shutdown(self) -> None:
        """Close the Bot API client."""
        await self.application.shutdown()

    async def probe(self) -> None:
        """Raise unless the Bot API answers: a recent successful call, else a getMe."""
        last = metrics.last_api_success(CHANNEL)
        if last is not None and time.time() - last < HEALTHY_WITHIN:
            return
        await asyncio.wait_for(self.bot.get_me(), PROBE_TIMEOUT)
        metrics.api_succeeded(CHANNEL)

    def stop(self) -> None:
        """Ask the loops to finish: the current update is completed, no new one taken."""
        self.inbox.stop()

    def update_of(self, payload: dict[str, Any]) -> Update:
        """Return the PTB Update of a stored payload."""
        return Update.de_json(payload, self.bot)

    # Receiving -----------------------------------------------------------------------

    async def receive(self, payloads: Sequence[dict[str, Any]]) -> int:
        """Store updates (Bot API JSON) in one unit of work; return how many were new.

        Raise BadUpdate, storing none, if one does not parse as an update.
        """
        return await self.inbox.receive(payloads)

    def stored_as(self, payload: dict[str, Any]) -> tuple[str, str]:
        """Return the update's id and its chat, for the inbox; raise BadUpdate."""
        try:
            update = self.update_of(payload)
        except Exception as exc:  # PTB raises whatever the malformed field causes
            raise BadUpdate(payload.get("update_id", 0), type(exc).__name__) from None
        return str(update.update_id), chat_key(update)

    async def poll(self) -> None:
        """Fetch updates by long polling until stopped; acknowledge a batch only once stored.

        Telegram forgets updates below the offset of the next getUpdates, so the next
        offset is asked for only after the batch is committed to the inbox. A failure (the
        Bot API or the database unreachable) is logged and retried with the same offset,
        after a growing pause: nothing acknowledged is lost, and polling never just ends.
        """
        timeout = self.settings.telegram.poll_timeout
        offset: int | None = None
        failures = 0
        webhook_deleted = False
        while not self.inbox.stopping:
            try:
                if not webhook_deleted:
                    await self.bot.delete_webhook()
                    webhook_deleted = True
                    log.info("telegram polling started")
                updates = await self.bot.get_updates(
                    offset=offset, timeout=timeout, allowed_updates=list(ALLOWED_UPDATES)
                )
                metrics.api_succeeded(CHANNEL)
                if updates:
                    await self.receive([update.to_dict() for update in updates])
                    offset = max(update.update_id for update in updates) + 1
                elif timeout == 0:
                    # Short polling answers at once: without a pause it would spin.
                    await self.inbox.pause(EMPTY_POLL_PAUSE)
            except RetryAfter as exc:
                metrics.throttled(CHANNEL)
                await self.inbox.pause(_retry_seconds(exc))
                continue
            except Exception as exc:  # the Bot API or the database: wait, then try again
                failures += 1
                # The error's type only: a database error's text may quote an update.
                log.warning("telegram polling failed (%s); retrying", type(exc).__name__)
                await self.inbox.pause(min(30.0, 2.0**failures))
                continue
            failures = 0
        log.info("telegram polling stopped")

    # Handling ------------------------------------------------------------------------

    async def work(self) -> None:
        """Handle stored updates until stopped (bot/channels/inbox_worker.py)."""
        await self.inbox.work()

    async def acknowledge(self, update: Update) -> None:
        """Answer a button press at once, even if handling fails or waits: it stops spinning.

        An answer again (a retry) or too late is refused by Telegram, which is fine.
        """
        if update.callback_query is not None:
            with contextlib.suppress(TelegramError):
                await update.callback_query.answer()

    def working_on(self, _update: Update) -> AbstractAsyncContextManager[None]:
        """Show nothing while an update is handled: Telegram answers fast enough."""
        return contextlib.nullcontext()

    async def handle(
        self, session: AsyncSession, update: Update, now: dt.datetime
    ) -> list[Outgoing]:
        """Answer one update in the caller's unit of work; return the rendered replies."""
        repos = Repos(session)
        member = update.my_chat_member
        if member is not None:
            if member.chat.type == ChatType.PRIVATE:
                status = member.new_chat_member.status
                if status in ("kicked", "member"):
                    await repos.people.set_reachable(
                        CHANNEL, str(member.from_user.id), status == "member"
                    )
            return []
        if not is_private(update):
            return self._group_answer(update)
        incoming = incoming_of(update)
        if incoming is None:
            return []
        await self._first_language(repos, incoming)
        answer = await dispatch(incoming, repos, now=now, settings=self.settings.chat)
        return render_replies(answer.replies, answer.language)

    async def _first_language(self, repos: Repos, incoming: Incoming) -> None:
        """Start a new chat in the language of the user's Telegram app, if the bot speaks it.

        The flows do not read `language_hint` (yet); /lang still changes it later.
        """
        language = supported_language(incoming.language_hint)
        if language is None:
            return
        key = (incoming.channel, incoming.chat_id)
        if await repos.session.get(Conversation, key) is None:
            conversation = await repos.conversations.get_or_create(*key)
            conversation.language = language

    def _group_answer(self, update: Update) -> list[Outgoing]:
        """Answer a command in a group by pointing to the private chat; ignore the rest.

        Registration is personal and the flows keep state per chat, so groups are not
        served; answering every group message would flood the group.
        """
        message = update.message
        if message is None or not (message.text or "").startswith("/"):
            return []
        language = self._hint_language(update)
        return render_replies([Reply(lines=(Msg("telegram.private_only"),))], language)

    def _hint_language(self, update: Update) -> str:
        """Return the sender's Telegram language if the bot speaks it, else the default."""
        user = update.effective_user
        hint = supported_language(user.language_code if user else None)
        return hint or self.settings.bot.default_language

    def apology(self, update: Update) -> list[Outgoing]:
        """Return the apology for a message or button press in a private chat, else none."""
        if not is_private(update) or incoming_of(update) is None:
            return []
        language = self._hint_language(update)
        return render_replies([Reply(lines=(Msg("error.internal"),))], language)

    # Sending -------------------------------------------------------------------------

    async def send_replies(self, update: Update, messages: Sequence[Outgoing]) -> None:
        """Send an update's replies; raise the inbox worker's errors on failure.

        403 (blocked) → Unreachable; 429 → Throttled; any other failure → TemporaryFailure,
        tried again up to MAX_SEND_ATTEMPTS times (bot/channels/inbox_worker.py).
        """
        try:
            await self.send(update, messages)
        except Forbidden as exc:
            raise Unreachable(f"403 {exc.message}"[:200]) from None
        except RetryAfter as exc:
            raise Throttled("429 Too Many Requests", _retry_seconds(exc)) from None
        except TelegramError as exc:
            raise TemporaryFailure(type(exc).__name__) from None

    def recipient_of(self, update: Update) -> str | None:
        """Return the sender, marked unreachable when the replies are refused with 403."""
        user = update.effective_user
        return None if user is None else str(user.id)

    async def send(self, update: Update, messages: Sequence[Outgoing]) -> None:
        """Edit the pressed message (its query is answered on claiming) or send the replies."""
        query = update.callback_query
        chat = update.effective_chat
        if chat is None or not messages:
            return
        pressed = query.message if query is not None else None
        if isinstance(pressed, Message) and can_edit(messages):
            try:
                await self.bot.edit_message_text(
                    messages[0]["text"],
                    chat_id=chat.id,
                    message_id=pressed.message_id,
                    reply_markup=inline_markup(messages[0]),
                )
                return
            except BadRequest as exc:
                # The same text again (a double tap): the message already shows it.
                if "message is not modified" in exc.message.lower():
                    return
                # Too old to edit, deleted …: send it as a new message.
        await self.send_messages(chat.id, messages)

    async def send_messages(
        self, chat_id: int | str, messages: Sequence[Outgoing]
    ) -> Message | None:
        """Send rendered messages to a chat in order; return the last one sent."""
        sent: Message | None = None
        for message in messages:
            attachment = message.get("attachment")
            document = document_file(message)
            if attachment:
                # A file already on Telegram, sent again by its id; the text is its caption.
                send_file = (
                    self.bot.send_photo
                    if attachment["kind"] == AttachmentKind.PHOTO.value
                    else self.bot.send_document
                )
                sent = await send_file(
                    chat_id,
                    attachment["file_id"],
                    caption=message["text"] or None,
                    reply_markup=markup(message),
                )
            elif document is None:
                sent = await self.bot.send_message(
                    chat_id, message["text"], reply_markup=markup(message)
                )
            else:
                if message["text"]:
                    await self.bot.send_message(chat_id, message["text"])
                sent = await self.bot.send_document(chat_id, document, reply_markup=markup(message))
        return sent

    # Notices -------------------------------------------------------------------------

    @property
    def channel(self) -> str:
        """Return the channel's name on accounts: the delivery engine's key for this sender."""
        return CHANNEL

    async def send_notice(self, external_id: str, reply: Reply, language: str) -> str | None:
        """Send a notice to a linked chat; return the id of its (last) message.

        Raise the delivery engine's errors on failure: 429 → Throttled; a refused token
        (401/404) → ChannelDown, tried again every TOKEN_REFUSED_PAUSE seconds; 403
        (blocked, deactivated) and a chat Telegram does not know → Unreachable; timeouts,
        network errors and 5xx (PTB's NetworkError) → TemporaryFailure; any other refusal
        → PermanentFailure.
        """
        with _delivery_errors():
            sent = await self.send_messages(external_id, render_replies([reply], language))
        return None if sent is None else str(sent.message_id)

    async def edit_notice(
        self, external_id: str, message_id: str, reply: Reply, language: str
    ) -> None:
        """Make a message the bot sent show `reply` (a broadcast's progress, say).

        The same text again is a success; a reply that is not one plain text message, or
        a message Telegram no longer lets edit, is a PermanentFailure (send a new one).
        """
        messages = render_replies([reply], language)
        if not can_edit(messages):
            raise PermanentFailure("reply cannot replace a message")
        with _delivery_errors():
            try:
                await self.bot.edit_message_text(
                    messages[0]["text"],
                    chat_id=external_id,
                    message_id=int(message_id),
                    reply_markup=inline_markup(messages[0]),
                )
            except BadRequest as exc:
                if "message is not modified" in exc.message.lower():
                    return
                raise


@contextlib.contextmanager
def _delivery_errors() -> Iterator[None]:
    """Turn the Bot API's errors into the delivery engine's neutral ones (bot/senders.py)."""
    try:
        yield
    except RetryAfter as exc:
        raise Throttled("429 Too Many Requests", _retry_seconds(exc)) from None
    except InvalidToken:
        # 401/404: the token was revoked or mistyped; no notice is to blame.
        raise ChannelDown("the Bot API refused the bot token", TOKEN_REFUSED_PAUSE) from None
    except Forbidden as exc:
        raise Unreachable(f"403 {exc.message}"[:200]) from None
    except BadRequest as exc:
        if "chat not found" in exc.message.lower():
            raise Unreachable("400 chat not found") from None
        raise PermanentFailure(f"400 {exc.message}"[:200]) from None
    except (TimedOut, NetworkError) as exc:
        raise TemporaryFailure(f"{type(exc).__name__}: {exc.message}"[:200]) from None
    except TelegramError as exc:
        raise PermanentFailure(f"{type(exc).__name__}: {exc.message}"[:200]) from None
