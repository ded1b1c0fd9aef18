"""Show each broadcast's progress in its author's chat, and its report when it is over.

The service runs this loop beside the delivery engine. Each round claims the broadcasts
whose progress message is due (db.broadcasts.claim_progress: a lease per broadcast, so
of several processes one updates a given message), asks handlers.broadcast_progress what
to show, and shows it through the author's channel's Sender: an edit of the one progress
message where the channel edits (Telegram), a new message at milestones where it cannot,
then the report as a new message. Business rules stay in handlers and db; this only
moves messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.senders import (
    DeliveryError,
    Editor,
    PermanentFailure,
    Sender,
    Throttled,
    Unreachable,
    show,
)
from db import broadcasts
from db.broadcasts import ProgressDue
from handlers.broadcast_progress import progress_update
from handlers.i18n import supported_language

log = logging.getLogger(__name__)

# A progress message that fails for a passing reason (5xx, a timeout) is tried again then.
RETRY_AFTER = dt.timedelta(seconds=10)


def now_utc() -> dt.datetime:
    """Return the current time in UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass
class BroadcastMonitor:
    """One process's updater of broadcasts' progress messages, over its channels' senders."""

    sessionmaker: async_sessionmaker[AsyncSession]
    senders: Sequence[Sender]
    default_language: str = "vi"
    # A progress message is updated at most this often (the report comes at once).
    every: dt.timedelta = dt.timedelta(seconds=5)
    # How long a claimed broadcast's message is this process's to update.
    lease: dt.timedelta = dt.timedelta(seconds=60)
    # How often the loop looks for broadcasts started or finished.
    idle_seconds: float = 1.0
    clock: Callable[[], dt.datetime] = now_utc

    def __post_init__(self) -> None:
        self._by_channel = {sender.channel: sender for sender in self.senders}

    @classmethod
    def of(
        cls,
        sessionmaker: async_sessionmaker[AsyncSession],
        senders: Sequence[Sender],
        settings: Settings,
    ) -> BroadcastMonitor:
        """Return the monitor a configuration asks for."""
        every = dt.timedelta(seconds=settings.broadcast.progress_seconds)
        return cls(
            sessionmaker,
            senders,
            default_language=settings.bot.default_language,
            every=every,
            idle_seconds=min(1.0, every.total_seconds()),
        )

    async def round(self) -> int:
        """Show what is due of every broadcast on these channels; return how many were due."""
        if not self._by_channel:
            return 0
        async with self.sessionmaker() as session, session.begin():
            due = await broadcasts.claim_progress(
                session,
                sorted(self._by_channel),
                now=self.clock(),
                lease=self.lease,
                every=self.every,
            )
        for item in due:
            try:
                await self._show(item)
            except Exception as exc:  # one broadcast's trouble must not stop the others
                log.error(
                    "broadcast %s: progress not shown: %s", item.broadcast_id, type(exc).__name__
                )
        return len(due)

    async def run(self, stopping: asyncio.Event) -> None:
        """Update progress messages until `stopping` is set."""
        while not stopping.is_set():
            try:
                await self.round()
            except Exception as exc:
                log.error("broadcast progress round failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.idle_seconds)

    async def _show(self, due: ProgressDue) -> None:
        """Show one broadcast's progress (and report), then record what it shows."""
        sender = self._by_channel[due.channel]
        update = progress_update(
            due.broadcast_id,
            due.text,
            due.status,
            due.progress,
            due.shown,
            edits=isinstance(sender, Editor),
        )
        language = supported_language(due.language) or self.default_language
        message_id = due.message_id
        reported = False
        try:
            if update is not None and update.progress is not None:
                message_id = await show(sender, due.chat_id, message_id, update.progress, language)
            if update is not None and update.report is not None:
                await sender.send_notice(due.chat_id, update.report, language)
                reported = True
        except Throttled as exc:
            await self._postpone(due, dt.timedelta(seconds=max(exc.retry_after, 0.5)))
            return
        except (Unreachable, PermanentFailure) as exc:
            # The author blocked the bot or the chat is gone: stop trying to tell them.
            log.warning("broadcast %s: author's chat refused (%s)", due.broadcast_id, exc.reason)
            reported = due.finished
        except DeliveryError as exc:
            log.warning("broadcast %s: progress not shown (%s)", due.broadcast_id, exc.reason)
            await self._postpone(due, RETRY_AFTER)
            return
        shown = update.shown if update is not None else (due.shown or {})
        async with self.sessionmaker() as session, session.begin():
            recorded = await broadcasts.record_progress(
                session,
                due,
                message_id=message_id,
                shown=shown,
                now=self.clock(),
                reported=reported,
            )
        if not recorded:
            log.warning(
                "broadcast %s: progress lease ran out before it was recorded", due.broadcast_id
            )

    async def _postpone(self, due: ProgressDue, wait: dt.timedelta) -> None:
        async with self.sessionmaker() as session, session.begin():
            await broadcasts.postpone_progress(session, due, until=self.clock() + wait)
