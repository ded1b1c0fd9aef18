"""The Zalo channel: updates in through the inbox, replies out through the Zalo Bot API.

The same guarantees as Telegram's (bot/channels/telegram.py): every update is stored in
the inbox (db/inbox.py) before Zalo is told it arrived (a webhook post is answered 200
only once stored); workers take each chat's updates in order under leases, keep the
rendered replies with the update until they are sent, and answer a repeated update once.
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
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import metrics
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
from db import inbox
from db.leases import LeaseLost
from db.models import InboundUpdate, InboxStatus
from db.repos import Repos
from handlers.channel_alerts import report_quota_exhausted
from handlers.choices import render_numbered
from handlers.dispatch import dispatch
from handlers.i18n import t
from handlers.pushed_choices import remember_pushed_choices
from handlers.types import Incoming, Msg, Reply

log = logging.getLogger(__name__)

CHANNEL = "zalo"
TEXT_EVENT = "message.text.received"
LEASE = dt.timedelta(seconds=60)
IDLE_SECONDS = 1.0
MAX_SEND_ATTEMPTS = 5
# An answer that takes longer than this shows "typing…" in the chat meanwhile.
TYPING_AFTER = 1.0
# A 429 without a retry_after waits this long.
DEFAULT_RETRY_AFTER = 5.0

Outgoing = dict[str, Any]


class BadZaloUpdate(ValueError):
    """A body that is not a Zalo message update; `reason` says what is missing."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not a Zalo message update: {reason}")
        self.reason = reason


def now_utc() -> dt.datetime:
    """Return the current time, aware in UTC."""
    return dt.datetime.now(dt.UTC)


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


def _backoff(attempts: int) -> dt.timedelta:
    """Return the wait before retry number `attempts` + 1: 1, 2, 4 … up to 60 seconds."""
    return dt.timedelta(seconds=min(60, 2 ** max(0, attempts)))


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
        self.lease = lease
        self.idle_seconds = idle_seconds
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

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
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """Return whether the channel was asked to stop."""
        return self._stopping.is_set()

    # Receiving -----------------------------------------------------------------------

    async def receive(self, updates: Sequence[dict[str, Any]]) -> int:
        """Store updates in one unit of work; return how many were new.

        Raise BadZaloUpdate, storing none, if one is not a message update.
        """
        new = 0
        async with self.sessionmaker() as session, session.begin():
            for update in updates:
                message_id, chat_id, _sender = parts_of(update)
                if await inbox.store(session, CHANNEL, message_id, chat_id, update):
                    new += 1
        if new:
            self._wake.set()
        return new

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
        while not self.stopping:
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
                await self._pause(min(60.0, pause))
                continue
            except Exception as exc:  # the network or the database: wait, then try again
                failures += 1
                log.warning("zalo polling failed (%s); retrying", type(exc).__name__)
                await self._pause(min(30.0, 2.0**failures))
                continue
            failures = 0
        log.info("zalo polling stopped")

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds` or until stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # Handling ------------------------------------------------------------------------

    async def work(self) -> None:
        """Handle stored updates until stopped; wait for new ones when the inbox is empty."""
        while not self.stopping:
            self._wake.clear()
            try:
                busy = await self.process_one()
            except Exception as exc:  # the database went away: wait, then try again
                log.error("zalo inbox worker error: %s", type(exc).__name__)
                busy = False
            if not busy and not self.stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.idle_seconds)

    async def process_one(self) -> bool:
        """Take one update from the inbox and handle or resend it; return False if none."""
        now = now_utc()
        async with self.sessionmaker() as session, session.begin():
            row = await inbox.claim(session, CHANNEL, now=now, lease=self.lease)
        if row is None:
            return False
        assert row.lease_until is not None
        token = row.lease_until
        update = row.payload
        messages = row.replies or []
        try:
            if row.status == InboxStatus.RECEIVED:
                typing = asyncio.create_task(self._typing_later(row.chat_id))
                try:
                    with metrics.handling(CHANNEL):
                        async with self.sessionmaker() as session, session.begin():
                            messages = await self.handle(session, update, now)
                            # LeaseLost here undoes the handling: another worker has it.
                            await inbox.mark_handled(session, row.id, messages, now, token=token)
                except LeaseLost:
                    raise
                except Exception as exc:
                    metrics.update_handled(CHANNEL, failed=True)
                    await self._handling_failed(row, token, exc)
                    return True
                finally:
                    typing.cancel()
                metrics.update_handled(CHANNEL)
            await self._deliver(row.id, token, row.chat_id, messages)
        except LeaseLost:
            log.warning(
                "zalo update %s (row %s): lease ran out and the update was taken again; "
                "left to that worker",
                row.update_key,
                row.id,
            )
        return True

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

    async def _handling_failed(
        self, row: InboundUpdate, token: dt.datetime, exc: Exception
    ) -> None:
        """Count the failure; after the last attempt apologise and let the chat go on."""
        # Ids and the error's type only: its message may quote what the user wrote.
        log.error("zalo update %s (row %s) failed: %s", row.update_key, row.id, type(exc).__name__)
        apology: list[Outgoing] = []
        if is_private(row.payload):
            reply = Reply(lines=(Msg("error.internal"),))
            apology = render_replies([reply], self.settings.bot.default_language)
        async with self.sessionmaker() as session, session.begin():
            failed = await inbox.record_failure(
                session,
                row.id,
                type(exc).__name__,
                token=token,
                now=now_utc(),
                retry_after=_backoff(row.attempts),
                replies=apology,
            )
        if failed:
            with contextlib.suppress(ZaloError):
                await self.send(row.chat_id, apology)
        self._wake.set()

    # Sending -------------------------------------------------------------------------

    async def _deliver(
        self, row_id: int, token: dt.datetime, chat_id: str, messages: list[Outgoing]
    ) -> None:
        """Send a handled update's replies and mark it answered; retry later on failure."""
        async with self.sessionmaker() as session, session.begin():
            token = await inbox.renew(session, row_id, token=token, until=now_utc() + self.lease)
        try:
            await self.send(chat_id, messages)
        except ZaloError as exc:
            await self._send_failed(row_id, token, chat_id, delivery_error(exc))
            return
        if messages:
            metrics.sent(CHANNEL, "reply", len(messages))
        async with self.sessionmaker() as session, session.begin():
            await inbox.mark_answered(session, row_id, token=token)

    async def _send_failed(
        self, row_id: int, token: dt.datetime, chat_id: str, error: DeliveryError
    ) -> None:
        """Settle replies that could not be sent, by what the failure means."""
        log.warning("replies to zalo row %s not sent: %s", row_id, error.reason)
        async with self.sessionmaker() as session, session.begin():
            if isinstance(error, Unreachable):
                # The user blocked the bot or is gone: nothing to retry.
                await Repos(session).people.set_reachable(CHANNEL, chat_id, False)
                await inbox.mark_answered(session, row_id, token=token)
                return
            if isinstance(error, Throttled):
                # Zalo's rate limit: not a failure of this update, so no attempt is counted.
                metrics.throttled(CHANNEL)
                until = now_utc() + dt.timedelta(seconds=error.retry_after)
                await inbox.postpone(session, row_id, token=token, until=until)
            else:
                metrics.failed(CHANNEL, "reply")
                row = await session.get(InboundUpdate, row_id, populate_existing=True)
                attempts = row.attempts if row else 0
                permanent = isinstance(error, PermanentFailure)
                await inbox.record_failure(
                    session,
                    row_id,
                    error.reason,
                    token=token,
                    now=now_utc(),
                    retry_after=_backoff(attempts),
                    # A refusal (a used-up quota above all) is not retried.
                    max_attempts=1 if permanent else MAX_SEND_ATTEMPTS,
                )
                if isinstance(error, QuotaExhausted):
                    await report_quota_exhausted(
                        Repos(session),
                        CHANNEL,
                        error.reason,
                        now=now_utc(),
                        settings=self.settings.chat,
                    )
        self._wake.set()

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
