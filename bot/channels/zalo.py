"""The Zalo channel: updates in through the inbox, replies out through the Zalo Bot API.

The same guarantees as Telegram's, from the same inbox worker (bot/channels/inbox_worker.py,
for which this channel is the `Platform` for Zalo): every update is stored in the inbox
(db/inbox.py) before Zalo is told it arrived (a webhook post is answered 200 only once
stored); workers take each chat's updates in order under leases, keep the rendered
replies with the update until they are sent, and answer a repeated update once.
Zalo's updates have no id of their own and getUpdates no offset: an update is known by
its `message_id`, the inbox's (channel, update_key).

Zalo has no buttons and no message editing: a reply's buttons are a numbered list that
the user answers by typing "2" or the button's words (handlers/choices.py, shared with
the console), and a new message goes where Telegram would edit one. Zalo cannot prove a
phone number either, so accounts link by a one-time code (handlers/link_codes.py).

Notices (outbox rows) are sent by the delivery engine (bot/delivery.py); this channel is
its `Sender` for Zalo and maps Zalo's errors to the engine's neutral ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.inbox_worker import (
    IDLE_SECONDS,
    LEASE,
    BadPayload,
    InboxWorker,
    Outgoing,
    now_utc,
)
from bot.channels.text_split import split_text
from bot.channels.zalo_api import MAX_TEXT, ZaloApiError, ZaloBot, ZaloError, ZaloNetworkError
from bot.config import Settings
from bot.senders import (
    DeliveryError,
    PermanentFailure,
    QuotaExhausted,
    TemporaryFailure,
    Throttled,
    Unreachable,
)
from db.repos import Repos
from handlers.choices import render_numbered
from handlers.dispatch import dispatch
from handlers.i18n import t
from handlers.pushed_choices import remember_pushed_choices
from handlers.types import Incoming, Msg, Reply

log = logging.getLogger(__name__)

CHANNEL = "zalo"
TEXT_EVENT = "message.text.received"
# An answer that takes longer than this shows "typing…" in the chat meanwhile.
TYPING_AFTER = 1.0
# A 429 without a retry_after waits this long.
DEFAULT_RETRY_AFTER = 5.0


class BadZaloUpdate(BadPayload):
    """A body that is not a Zalo message update; `reason` says what is missing."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not a Zalo message update: {reason}", reason)


def _id(value: Any) -> str | None:
    """Return a Zalo id (a string; a number is taken as its digits), or None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str) and str(value).strip():
        return str(value).strip()
    return None


def parts_of(update: dict[str, Any]) -> tuple[str, str, str]:
    """Return the update's message id, chat id and sender id; raise BadZaloUpdate."""
    message = update.get("message")
    if not isinstance(message, dict):
        raise BadZaloUpdate("no message")
    chat = message.get("chat")
    sender = message.get("from")
    message_id = _id(message.get("message_id"))
    chat_id = _id(chat.get("id")) if isinstance(chat, dict) else None
    sender_id = _id(sender.get("id")) if isinstance(sender, dict) else None
    if message_id is None:
        raise BadZaloUpdate("no message_id")
    if chat_id is None:
        raise BadZaloUpdate("no chat.id")
    if sender_id is None:
        raise BadZaloUpdate("no from.id")
    return message_id, chat_id, sender_id


def is_private(update: dict[str, Any]) -> bool:
    """Return whether the update comes from a one-to-one chat with the bot."""
    chat = update["message"].get("chat") or {}
    return str(chat.get("chat_type") or "PRIVATE").upper() != "GROUP"


def incoming_of(update: dict[str, Any]) -> Incoming | None:
    """Translate a message update into the neutral Incoming; None for a bot's message."""
    _message_id, chat_id, sender_id = parts_of(update)
    message = update["message"]
    if (message.get("from") or {}).get("is_bot") is True:
        return None
    text = message.get("text")
    event = update.get("event_name") or TEXT_EVENT
    # A picture, a sticker or an unsupported message comes as empty text: answered with help.
    if event != TEXT_EVENT or not isinstance(text, str):
        text = ""
    return Incoming(
        channel=CHANNEL, chat_id=chat_id, user_id=sender_id, text=text, links_by_code=True
    )


def render_replies(replies: Sequence[Reply], language: str) -> list[Outgoing]:
    """Render replies for Zalo: numbered choices, texts of at most 2,000 characters.

    A file cannot be sent on Zalo: the reply says so instead.
    """
    messages: list[Outgoing] = []
    texts = render_numbered(replies, language, hint=True)
    for reply, text in zip(replies, texts, strict=True):
        if reply.document is not None:
            note = Msg("zalo.no_file", {"filename": reply.document.filename})
            text = f"{text}\n\n{t(note, language)}" if text else t(note, language)
        messages.extend({"text": chunk} for chunk in split_text(text, MAX_TEXT))
    return messages


def delivery_error(exc: ZaloError) -> DeliveryError:
    """Map a Zalo failure onto the delivery engine's neutral errors.

    429 with a pause → Throttled; a used-up quota → QuotaExhausted; 403 and an unknown
    chat → Unreachable; 5xx, timeouts and network errors → TemporaryFailure; any other
    refusal → PermanentFailure.
    """
    if isinstance(exc, ZaloNetworkError):
        return TemporaryFailure(str(exc)[:200])
    assert isinstance(exc, ZaloApiError)
    reason = f"{exc.code} {exc.description}"[:200]
    if exc.code == 429 and exc.retry_after is not None and not exc.is_quota:
        return Throttled(reason, exc.retry_after)
    if exc.is_quota:
        return QuotaExhausted(f"quota: {reason}"[:200])
    if exc.is_gone:
        return Unreachable(reason)
    if exc.is_temporary:
        return TemporaryFailure(reason)
    return PermanentFailure(reason)


# /healthz waits this long for the Zalo Bot API.
PROBE_SECONDS = 5.0


class ZaloChannel:
    """One process's share of the Zalo work: receive, handle, send, deliver notices."""

    def __init__(
        self,
        bot: ZaloBot,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        workers: int = 4,
        lease: dt.timedelta = LEASE,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.bot = bot
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.workers = workers
        self.inbox = InboxWorker(
            self, sessionmaker, settings.chat, lease=lease, idle_seconds=idle_seconds
        )

    # Lifecycle -----------------------------------------------------------------------

    async def initialize(self) -> None:
        """Connect to the Bot API and check the token (getMe)."""
        await self.bot.start()
        await self.bot.get_me()

    async def shutdown(self) -> None:
        """Close the Bot API client."""
        await self.bot.close()

    async def probe(self) -> None:
        """Raise unless the Zalo Bot API answers a getMe now (for /healthz)."""
        await asyncio.wait_for(self.bot.get_me(), PROBE_SECONDS)

    def stop(self) -> None:
        """Ask the loops to finish: the current update is completed, no new one taken."""
        self.inbox.stop()

    # Receiving -----------------------------------------------------------------------

    async def receive(self, updates: Sequence[dict[str, Any]]) -> int:
        """Store updates in one unit of work; return how many were new.

        Raise BadZaloUpdate, storing none, if one is not a message update.
        """
        return await self.inbox.receive(updates)

    def stored_as(self, payload: dict[str, Any]) -> tuple[str, str]:
        """Return the update's message id and its chat, for the inbox; raise BadZaloUpdate."""
        message_id, chat_id, _sender = parts_of(payload)
        return message_id, chat_id

    def update_of(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Return the update of a stored payload: the payload itself."""
        return payload

    async def poll(self) -> None:
        """Fetch updates by long polling until stopped; each is stored before the next poll.

        Zalo hands an update out once (there is no offset to acknowledge it by), so one
        that cannot be stored yet (the database is down) is kept in memory and stored
        before anything new is asked for. Failures are logged and retried after a growing
        pause: polling never just ends.
        """
        timeout = self.settings.zalo.poll_timeout
        pending: list[dict[str, Any]] = []
        failures = 0
        webhook_deleted = False
        while not self.inbox.stopping:
            try:
                if not webhook_deleted:
                    # Polling and a webhook exclude each other: getUpdates fails while set.
                    await self.bot.delete_webhook()
                    webhook_deleted = True
                    log.info("zalo polling started")
                if not pending:
                    pending = await self.bot.get_updates(timeout)
                for update in list(pending):
                    try:
                        await self.receive([update])
                    except BadZaloUpdate as exc:
                        log.warning("zalo update dropped: %s", exc.reason)
                    pending.remove(update)
            except ZaloApiError as exc:
                failures += 1
                pause = exc.retry_after if exc.retry_after is not None else 2.0**failures
                log.warning("zalo polling failed (%s); retrying", exc.code)
                await self.inbox.pause(min(60.0, pause))
                continue
            except Exception as exc:  # the network or the database: wait, then try again
                failures += 1
                log.warning("zalo polling failed (%s); retrying", type(exc).__name__)
                await self.inbox.pause(min(30.0, 2.0**failures))
                continue
            failures = 0
        log.info("zalo polling stopped")

    # Handling ------------------------------------------------------------------------

    async def work(self) -> None:
        """Handle stored updates until stopped (bot/channels/inbox_worker.py)."""
        await self.inbox.work()

    async def acknowledge(self, _update: dict[str, Any]) -> None:
        """Tell Zalo nothing at once: it has no buttons to stop spinning."""

    @contextlib.asynccontextmanager
    async def working_on(self, update: dict[str, Any]) -> AsyncIterator[None]:
        """Show "typing…" in the chat while the answer takes more than a moment."""
        typing = asyncio.create_task(self._typing_later(parts_of(update)[1]))
        try:
            yield
        finally:
            typing.cancel()

    async def _typing_later(self, chat_id: str) -> None:
        """Show "typing…" if the answer takes more than a moment; never fail for it."""
        await asyncio.sleep(TYPING_AFTER)
        with contextlib.suppress(ZaloError):
            await self.bot.send_chat_action(chat_id)

    async def handle(
        self, session: AsyncSession, update: dict[str, Any], now: dt.datetime
    ) -> list[Outgoing]:
        """Answer one update in the caller's unit of work; return the rendered replies."""
        if not is_private(update):
            return self._group_answer(update)
        incoming = incoming_of(update)
        if incoming is None:
            return []
        answer = await dispatch(incoming, Repos(session), now=now, settings=self.settings.chat)
        return render_replies(answer.replies, answer.language)

    def _group_answer(self, update: dict[str, Any]) -> list[Outgoing]:
        """Answer a command in a group by pointing to the private chat; ignore the rest."""
        text = update["message"].get("text")
        if not isinstance(text, str) or not text.startswith("/"):
            return []
        replies = [Reply(lines=(Msg("zalo.private_only"),))]
        return render_replies(replies, self.settings.bot.default_language)

    def apology(self, update: dict[str, Any]) -> list[Outgoing]:
        """Return the apology for a message in a private chat, else none."""
        if not is_private(update):
            return []
        reply = Reply(lines=(Msg("error.internal"),))
        return render_replies([reply], self.settings.bot.default_language)

    # Sending -------------------------------------------------------------------------

    async def send_replies(self, update: dict[str, Any], messages: Sequence[Outgoing]) -> None:
        """Send an update's replies to its chat; raise the delivery engine's errors on failure."""
        try:
            await self.send(parts_of(update)[1], messages)
        except ZaloError as exc:
            raise delivery_error(exc) from None

    def recipient_of(self, update: dict[str, Any]) -> str | None:
        """Return the chat, marked unreachable when Zalo says it is blocked or gone."""
        return parts_of(update)[1]

    async def send(self, chat_id: str, messages: Sequence[Outgoing]) -> None:
        """Send rendered messages to a chat in order."""
        for message in messages:
            if message.get("text"):
                await self.bot.send_message(chat_id, message["text"])

    # Notices -------------------------------------------------------------------------

    @property
    def channel(self) -> str:
        """Return the channel's name on accounts: the delivery engine's key for this sender."""
        return CHANNEL

    async def send_notice(self, external_id: str, reply: Reply, language: str) -> None:
        """Send a notice to a linked chat; raise the delivery engine's errors on failure.

        Its buttons become the chat's numbered choices, so typing "1" presses the first.
        """
        try:
            await self.send(external_id, render_replies([reply], language))
        except ZaloError as exc:
            raise delivery_error(exc) from None
        async with self.sessionmaker() as session, session.begin():
            await remember_pushed_choices(
                Repos(session), CHANNEL, external_id, [reply], language, now=now_utc()
            )


def startup_failure(exc: Exception, settings: Settings) -> str | None:
    """Return one sentence for a failure to start the Zalo channel, never the token."""
    zalo = settings.zalo
    if isinstance(exc, ZaloApiError):
        if exc.code in (401, 403, 404):
            return (
                "Zalo refused the bot token ([zalo] token or TRAININGBOT_ZALO_TOKEN): check it "
                f"in Zalo Bot Creator ({exc.code} {exc.description})".rstrip()
            )
        return f"Zalo refused to start the bot: {exc.code} {exc.description}".rstrip()
    if isinstance(exc, ZaloNetworkError):
        return (
            f"cannot reach the Zalo Bot API at {zalo.base_url} ({exc}): check [zalo] base_url "
            "and the network"
        )
    telegram_webhook = settings.telegram.token is not None and settings.telegram.mode == "webhook"
    if isinstance(exc, OSError) and zalo.mode == "webhook" and not telegram_webhook:
        host, port = settings.zalo_listen
        reason = exc.strerror or type(exc).__name__
        return (
            f"cannot listen for the webhook on {host}:{port} ({reason}): check [zalo] "
            "listen_host and listen_port (unset, they are [telegram]'s)"
        )
    return None
