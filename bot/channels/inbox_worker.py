"""The inbox worker: every channel's updates stored first, then handled and answered from the store.

A channel stores each platform update in the inbox (db/inbox.py) before the platform is
told it arrived (`InboxWorker.receive`). Workers (`InboxWorker.work`, several a process,
in any number of processes) then take the updates from the store, each chat's in order,
under a lease: an update is handled in one unit of work that also keeps its rendered
replies (HANDLED), and the replies are sent afterwards (ANSWERED). The same for every
channel:

- a worker settles an update only while it holds the lease it claimed; one whose lease
  ran out (LeaseLost) sends nothing and leaves the update to the worker that took it;
- replies are kept until sent: a crash before HANDLED handles the update again, a crash
  after it sends the kept replies once more; an update stored twice is answered once;
- an update whose handling fails db.inbox.MAX_ATTEMPTS times ends FAILED with an
  apology, and its chat goes on; replies that cannot be sent are tried again up to
  MAX_SEND_ATTEMPTS times (only once when the platform refused them for good), and a
  429 waits without counting an attempt.

What differs per platform is the channel's `Platform` part: its update type, how a
payload is keyed, what the chat sees while it waits, how an update is answered, and how
replies are sent (raising bot/senders.py's neutral errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import metrics
from bot.senders import (
    DeliveryError,
    PermanentFailure,
    QuotaExhausted,
    Throttled,
    Unreachable,
)
from db import inbox
from db.leases import LeaseLost
from db.models import InboundUpdate, InboxStatus
from db.repos import Repos
from handlers.channel_alerts import report_quota_exhausted
from handlers.types import ChatSettings

log = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=60)
# A worker with nothing to do looks again this often, for updates other processes stored.
IDLE_SECONDS = 1.0
MAX_SEND_ATTEMPTS = 5

# A rendered message, as kept with its update until it is sent (JSON).
Outgoing = dict[str, Any]
U = TypeVar("U")


class BadPayload(ValueError):
    """A payload that is not one of the platform's updates; `reason` holds no personal data."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Platform(Protocol[U]):
    """What a channel tells the inbox worker about its platform; U is its update type."""

    @property
    def channel(self) -> str:
        """Return the channel's name (inbox rows, accounts, metrics and logs)."""
        ...

    def stored_as(self, payload: dict[str, Any]) -> tuple[str, str]:
        """Return the update's key (the same for a redelivery) and its chat; raise BadPayload."""
        ...

    def update_of(self, payload: dict[str, Any]) -> U:
        """Return the update of a stored payload."""
        ...

    async def acknowledge(self, update: U) -> None:
        """Tell the platform at once that the update is taken (a button press); never fail."""
        ...

    def working_on(self, update: U) -> AbstractAsyncContextManager[None]:
        """Return what the chat sees while its update is being handled ("typing…")."""
        ...

    async def handle(self, session: AsyncSession, update: U, now: dt.datetime) -> list[Outgoing]:
        """Answer one update in the caller's unit of work; return the rendered replies."""
        ...

    def apology(self, update: U) -> list[Outgoing]:
        """Return the rendered apology for an update that could not be handled (or none)."""
        ...

    async def send_replies(self, update: U, messages: Sequence[Outgoing]) -> None:
        """Send an update's replies in order; raise bot/senders.py's errors on failure."""
        ...

    def recipient_of(self, update: U) -> str | None:
        """Return the account the replies go to, marked unreachable when it blocked the bot."""
        ...


def now_utc() -> dt.datetime:
    """Return the current time, aware in UTC."""
    return dt.datetime.now(dt.UTC)


def backoff(attempts: int) -> dt.timedelta:
    """Return the wait before retry number `attempts` + 1: 1, 2, 4 … up to 60 seconds."""
    return dt.timedelta(seconds=min(60, 2 ** max(0, attempts)))


@dataclass
class InboxWorker(Generic[U]):
    """One process's inbox work for one channel: store, then handle and answer each update."""

    platform: Platform[U]
    sessionmaker: async_sessionmaker[AsyncSession]
    # For telling the admins that the platform's message quota is used up.
    chat: ChatSettings
    lease: dt.timedelta = LEASE
    idle_seconds: float = IDLE_SECONDS
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def channel(self) -> str:
        """Return the channel's name."""
        return self.platform.channel

    def stop(self) -> None:
        """Ask the loops to finish: the current update is completed, no new one taken."""
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """Return whether the channel was asked to stop."""
        return self._stopping.is_set()

    async def pause(self, seconds: float) -> None:
        """Wait `seconds` or until stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # Receiving -----------------------------------------------------------------------

    async def receive(self, payloads: Sequence[dict[str, Any]]) -> int:
        """Store updates in one unit of work; return how many were new.

        Raise BadPayload, storing none, if one is not an update.
        """
        new = 0
        async with self.sessionmaker() as session, session.begin():
            for payload in payloads:
                key, chat_id = self.platform.stored_as(payload)
                if await inbox.store(session, self.channel, key, chat_id, payload):
                    new += 1
        if new:
            self._wake.set()
        return new

    # Handling ------------------------------------------------------------------------

    async def work(self) -> None:
        """Handle stored updates until stopped; wait for new ones when the inbox is empty."""
        while not self.stopping:
            self._wake.clear()
            try:
                busy = await self.process_one()
            except Exception as exc:  # the database went away: wait, then try again
                log.error("%s inbox worker error: %s", self.channel, type(exc).__name__)
                busy = False
            if not busy and not self.stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.idle_seconds)

    async def process_one(self) -> bool:
        """Take one update from the inbox and handle or resend it; return False if none."""
        now = now_utc()
        async with self.sessionmaker() as session, session.begin():
            row = await inbox.claim(session, self.channel, now=now, lease=self.lease)
        if row is None:
            return False
        assert row.lease_until is not None
        token = row.lease_until
        update = self.platform.update_of(row.payload)
        messages = row.replies or []
        # At once, even if handling fails or waits.
        await self.platform.acknowledge(update)
        try:
            if row.status == InboxStatus.RECEIVED:
                try:
                    async with self.platform.working_on(update):
                        with metrics.handling(self.channel):
                            async with self.sessionmaker() as session, session.begin():
                                messages = await self.platform.handle(session, update, now)
                                # LeaseLost here undoes the handling: another worker has it.
                                await inbox.mark_handled(
                                    session, row.id, messages, now, token=token
                                )
                except LeaseLost:
                    raise
                except Exception as exc:
                    metrics.update_handled(self.channel, failed=True)
                    await self._handling_failed(row, token, update, exc)
                    return True
                metrics.update_handled(self.channel)
            await self._deliver(row, token, update, messages)
        except LeaseLost:
            log.warning(
                "%s update %s (row %s): lease ran out and the update was taken again; "
                "left to that worker",
                self.channel,
                row.update_key,
                row.id,
            )
        return True

    async def _handling_failed(
        self, row: InboundUpdate, token: dt.datetime, update: U, exc: Exception
    ) -> None:
        """Count the failure; after the last attempt apologise and let the chat go on."""
        # Ids and the error's type only: its message may quote what the user wrote.
        log.error(
            "%s update %s (row %s) failed: %s",
            self.channel,
            row.update_key,
            row.id,
            type(exc).__name__,
        )
        apology = self.platform.apology(update)
        async with self.sessionmaker() as session, session.begin():
            failed = await inbox.record_failure(
                session,
                row.id,
                type(exc).__name__,
                token=token,
                now=now_utc(),
                retry_after=backoff(row.attempts),
                replies=apology,
            )
        if failed:
            with contextlib.suppress(DeliveryError):
                await self.platform.send_replies(update, apology)
        self._wake.set()

    # Sending -------------------------------------------------------------------------

    async def _deliver(
        self, row: InboundUpdate, token: dt.datetime, update: U, messages: list[Outgoing]
    ) -> None:
        """Send a handled update's replies and mark it answered; retry later on failure.

        The lease is renewed first, so the send has a whole lease before another worker
        may take the update; if it was already taken (LeaseLost), nothing is sent.
        """
        async with self.sessionmaker() as session, session.begin():
            token = await inbox.renew(session, row.id, token=token, until=now_utc() + self.lease)
        try:
            await self.platform.send_replies(update, messages)
        except DeliveryError as error:
            await self._send_failed(row, token, update, error)
            return
        if messages:
            metrics.sent(self.channel, "reply", len(messages))
        async with self.sessionmaker() as session, session.begin():
            await inbox.mark_answered(session, row.id, token=token)

    async def _send_failed(
        self, row: InboundUpdate, token: dt.datetime, update: U, error: DeliveryError
    ) -> None:
        """Settle replies that could not be sent, by what the failure means."""
        if isinstance(error, Throttled):
            metrics.throttled(self.channel)
            log.warning(
                "%s update %s: rate limited for %ss",
                self.channel,
                row.update_key,
                error.retry_after,
            )
        else:
            log.warning(
                "replies to %s update %s (row %s) not sent: %s",
                self.channel,
                row.update_key,
                row.id,
                error.reason,
            )
        async with self.sessionmaker() as session, session.begin():
            if isinstance(error, Unreachable):
                # The user blocked the bot or is gone: nothing to retry.
                recipient = self.platform.recipient_of(update)
                if recipient is not None:
                    await Repos(session).people.set_reachable(self.channel, recipient, False)
                await inbox.mark_answered(session, row.id, token=token)
                return
            if isinstance(error, Throttled):
                # The platform's rate limit: not a failure of this update, so no attempt is
                # counted.
                until = now_utc() + dt.timedelta(seconds=error.retry_after)
                await inbox.postpone(session, row.id, token=token, until=until)
            else:
                metrics.failed(self.channel, "reply")
                # Read again: handling it just now started the count of send failures at 0.
                current = await session.get(InboundUpdate, row.id, populate_existing=True)
                attempts = current.attempts if current else 0
                await inbox.record_failure(
                    session,
                    row.id,
                    error.reason,
                    token=token,
                    now=now_utc(),
                    retry_after=backoff(attempts),
                    # A refusal (a used-up quota above all) is not retried.
                    max_attempts=1 if isinstance(error, PermanentFailure) else MAX_SEND_ATTEMPTS,
                )
                if isinstance(error, QuotaExhausted):
                    await report_quota_exhausted(
                        Repos(session),
                        self.channel,
                        error.reason,
                        now=now_utc(),
                        settings=self.chat,
                    )
        self._wake.set()
