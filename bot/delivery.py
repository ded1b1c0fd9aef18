"""The delivery engine: drain the outbox through the channels within their rate limits.

Each round claims a batch of due notices (db/outbox.py: at most one per person, each
with a send slot of its channel's shared global pace), sends each at its slot through the
channel's `Sender`, and settles it in its own unit of work:
- sent → SENT;
- Throttled (429; ChannelDown: the bot's token refused) → the notice waits `retry_after`
  (no attempt counted), every process's pace on the channel holds until then and slows
  down; this process's notices not yet sent on that channel are put back instead of
  sent into the pause;
- TemporaryFailure (5xx, timeout, network, or no answer within `send_timeout`) →
  retried after an exponential backoff with jitter, FAILED with the reason after
  `max_attempts`;
- Unreachable (403: blocked) → the account is marked unreachable; the notice goes to the
  person's other reachable account, else FAILED; the unit heads learn of it from the
  unreachable-people job;
- QuotaExhausted (a plan's message quota used up) → FAILED; the process holds the
  channel's other notices back for `quota_pause` (they wait instead of failing one by
  one) and the admins are told once a month;
- PermanentFailure → FAILED with the reason (shown to admins in their summary);
- Held (ZNS: the day's quota used up, tokens to renew) → the notice waits until the
  channel can send again, no attempt counted; the admins are told once a day.

People without a reachable chat account get the notices whose kind has a ZNS template by
ZNS, to their roster phone (`zns`, bot/channels/zns.py; db/outbox.py routes them).

A notice is settled only under its claim's lease; the lease outlives the slot by
`lease`, so a crash mid-send leaves the row to be claimed again: sent at most once more.
Right before sending, the engine checks that the notice is still queued under its lease:
one stopped meanwhile (a broadcast's) or taken by another worker is not sent.

A send gets `send_timeout` (shorter than the lease) and is not started with less of its
lease left, so no send outlives its lease and no two workers send a notice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import metrics
from bot.config import Settings
from bot.senders import (
    ChannelDown,
    DeliveryError,
    Held,
    PermanentFailure,
    QuotaExhausted,
    Sender,
    TemporaryFailure,
    Throttled,
    Unreachable,
)
from db import outbox
from db.leases import LeaseLost
from db.outbox import Notice, Pace
from db.repos import Repos
from handlers.channel_alerts import report_quota_exhausted
from handlers.i18n import supported_language
from handlers.notices import decode_reply
from handlers.types import Reply
from handlers.zns_alerts import report_held, report_without_template
from jobs.timing import NotifySettings

if TYPE_CHECKING:
    from bot.channels.zns import ZnsChannel

log = logging.getLogger(__name__)

# `drain` waits for notices held back this long at most (a chat's pace, a 429's pause),
# and gives up after this long without anything settled (a server refusing every send).
DRAIN_WAITS_FOR = dt.timedelta(seconds=30)
# A channel held (ZNS's quota, its tokens) is looked at again this often by a process.
HELD_RECHECK = dt.timedelta(minutes=1)
# The longest wait between two retries of a failing notice.
MAX_RETRY_DELAY = dt.timedelta(hours=1)


def now_utc() -> dt.datetime:
    """Return the current time in UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class DeliverySettings:
    """The delivery engine's limits, for every process together."""

    rate_per_second: float = 25.0
    per_chat_seconds: float = 1.0
    max_attempts: int = 5
    retry_base: dt.timedelta = dt.timedelta(seconds=5)
    batch_size: int = 50
    # How long a claimed notice may stay unsettled after its slot before another
    # process may take it (longer than any send may take).
    lease: dt.timedelta = dt.timedelta(seconds=60)
    # A send without an answer by then is abandoned as a timeout (and retried), so that
    # no send outlives its lease, whatever a channel's HTTP client would wait.
    send_timeout: float = 20.0
    idle_seconds: float = 1.0
    # A channel's own rate where it has one ([zalo] rate_per_second), else rate_per_second.
    channel_rates: dict[str, float] = field(default_factory=dict)
    # How long a channel whose quota is used up sends nothing before it tries again.
    quota_pause: dt.timedelta = dt.timedelta(hours=1)

    def __post_init__(self) -> None:
        if dt.timedelta(seconds=self.send_timeout) >= self.lease:
            raise ValueError("a send's timeout must be shorter than the lease")

    @classmethod
    def of(cls, settings: Settings) -> DeliverySettings:
        """Return the delivery settings of a configuration."""
        section = settings.notifications
        return cls(
            rate_per_second=section.rate_per_second,
            per_chat_seconds=section.per_chat_seconds,
            max_attempts=section.max_attempts,
            retry_base=dt.timedelta(seconds=section.retry_seconds),
            # A batch holds about two seconds of sends.
            batch_size=max(1, min(200, round(section.rate_per_second * 2))),
            channel_rates={
                "zalo": settings.zalo.rate_per_second,
                "zns": settings.zns.rate_per_second,
            },
        )


def backoff(attempts: int, base: dt.timedelta, *, rng: random.Random | None = None) -> dt.timedelta:
    """Return the wait before retry `attempts` + 1: base · 2^attempts, ±25 % jitter, capped."""
    delay: dt.timedelta = min(base * 2 ** max(0, attempts), MAX_RETRY_DELAY)
    jitter = rng.uniform(0.75, 1.25) if rng is not None else random.uniform(0.75, 1.25)
    return delay * jitter


@dataclass
class DeliveryReport:
    """What a run of the engine did, for `trainingbot jobs run-once` and the benchmarks."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    throttled: int = 0
    skipped: int = 0
    unreachable: int = 0
    lost_leases: int = 0

    def line(self) -> str:
        """Return the report as one line."""
        return (
            f"{self.sent} sent, {self.failed} failed, {self.retried} to retry, "
            f"{self.throttled} throttled, {self.skipped} skipped (expired), "
            f"{self.unreachable} unreachable"
        )


@dataclass
class DeliveryEngine:
    """One process's delivery worker over the given channels' senders."""

    sessionmaker: async_sessionmaker[AsyncSession]
    senders: Sequence[Sender]
    settings: DeliverySettings
    notify: NotifySettings
    clock: Callable[[], dt.datetime] = now_utc
    report: DeliveryReport = field(default_factory=DeliveryReport)
    # ZNS for people without a reachable chat, when configured.
    zns: ZnsChannel | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Per channel: this process sends nothing before then (a 429 asked to wait).
    _paused_until: dict[str, dt.datetime] = field(default_factory=dict)
    # Why a channel is held (ZNS), written on the notices that wait for it.
    _held_reasons: dict[str, str] = field(default_factory=dict)
    _sending: set[asyncio.Task[None]] = field(default_factory=set)
    # Set by `run`'s caller to stop: waits for slots end early, unsent notices go back.
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Notices this engine put back until a 429's pause ends: id → when they may go.
    _postponed: dict[int, dt.datetime] = field(default_factory=dict)
    # When the last claim found a channel paused with notices due for it, until when.
    _held_until: dt.datetime | None = None

    def __post_init__(self) -> None:
        self._by_channel = {sender.channel: sender for sender in self.senders}

    @property
    def pace(self) -> Pace:
        """Return the claim's pacing for these senders."""
        rates = self.settings.channel_rates
        channels = [*self._by_channel, *([self.zns.channel] if self.zns else [])]
        return Pace(
            interval={
                channel: 1.0 / rates.get(channel, self.settings.rate_per_second)
                for channel in channels
            },
            per_chat=self.settings.per_chat_seconds,
            lease=self.settings.lease,
        )

    def wake(self) -> None:
        """Look for due notices now instead of after the idle pause."""
        self._wake.set()

    def _quiet(self, now: dt.datetime) -> bool:
        hours = self.notify.quiet_hours
        return hours is not None and hours.contains(now, self.notify.zone)

    # Rounds ---------------------------------------------------------------------------

    async def claim(self) -> list[Notice]:
        """Claim the next batch of due notices (one unit of work)."""
        if not self._by_channel and self.zns is None:
            return []
        now = self.clock()
        route = self.zns.route(now) if self.zns is not None else None
        async with self.sessionmaker() as session, session.begin():
            claim = await outbox.claim_batch(
                session,
                sorted(self._by_channel),
                now=now,
                limit=self.settings.batch_size,
                pace=self.pace,
                quiet=self._quiet(now),
                zns_route=route,
            )
            if route is not None:
                await self._report_zns(session, claim, now)
        self.report.skipped += claim.skipped
        self.report.unreachable += claim.unreachable
        self._held_until = claim.held_until
        for notice in claim.notices:
            self._postponed.pop(notice.id, None)
        return claim.notices

    async def _report_zns(
        self, session: AsyncSession, claim: outbox.Claim, now: dt.datetime
    ) -> None:
        """Tell the admins (once a day) what ZNS could not carry in this claim."""
        repos = Repos(session)
        chat = self.notify.chat
        for kind, count in claim.without_template.items():
            # Alerts about channels that reach no admin are not themselves reported.
            if not kind.startswith(("zns.", "channel.")):
                await report_without_template(repos, kind, count, now=now, settings=chat)
        reason, until = claim.zns_held_reason, claim.zns_held_until
        if claim.zns_held and reason is not None and until is not None:
            topic = "auth"
            if reason.startswith("zns quota"):
                topic = "quota"
            elif reason.startswith("zns balance"):
                topic = "balance"
            await report_held(repos, reason, until, topic=topic, now=now, settings=chat)

    async def round(self) -> int:
        """Claim a batch and start sending it; return how many notices it took.

        Returns once the batch's last slot has come, while its last sends may still be
        in flight, so the next batch's slots follow without a gap.
        """
        notices = await self.claim()
        for notice in notices:
            task = asyncio.create_task(self._send_at_slot(notice))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        if notices:
            await self._wait_until(notices[-1].slot)
        return len(notices)

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver until `stopping` is set.

        The sends in flight are finished, not dropped; notices whose slot has not come
        are put back at once, for another process or the next start to send.
        """
        self._stopping = stopping
        while not stopping.is_set():
            try:
                taken = await self.round()
            except Exception as exc:
                log.error("delivery round failed: %s", type(exc).__name__)
                taken = 0
            if taken == 0:
                await self._idle()
        await self.finish()

    async def _idle(self) -> None:
        """Wait `idle_seconds`, or less if woken or stopped."""
        waits = [asyncio.create_task(self._wake.wait()), asyncio.create_task(self._stopping.wait())]
        await asyncio.wait(
            waits, timeout=self.settings.idle_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        for wait in waits:
            wait.cancel()
        self._wake.clear()

    async def finish(self) -> None:
        """Wait for the sends in flight to be settled."""
        if self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)

    async def drain(self) -> DeliveryReport:
        """Send everything due now, waiting for chats' paces, then return the report.

        Notices held back briefly (a chat's pace, a 429's pause of up to DRAIN_WAITS_FOR)
        are waited for; those waiting for a retry's backoff, a longer pause or the end of
        quiet hours stay queued. It gives up after DRAIN_WAITS_FOR without progress.
        """
        settled, settled_at = self._settled(), self.clock()
        while True:
            taken = await self.round()
            if self._settled() != settled:
                settled, settled_at = self._settled(), self.clock()
            elif self.clock() - settled_at > DRAIN_WAITS_FOR:
                break
            if taken:
                continue
            await self.finish()
            now = self.clock()
            if self._settled() != settled:
                settled, settled_at = self._settled(), now
            resume = await self._resume_at(now)
            if resume is None or resume > settled_at + DRAIN_WAITS_FOR:
                # A settle may have requeued a notice for another account: one more look.
                if await self.round():
                    continue
                break
            await self._wait_until(resume)
        await self.finish()
        return self.report

    def _settled(self) -> int:
        """Return how many notices this engine has settled (a 429 settles nothing)."""
        report = self.report
        return report.sent + report.failed + report.retried + report.skipped + report.unreachable

    async def _resume_at(self, now: dt.datetime) -> dt.datetime | None:
        """Return when a notice due now but held back may go, if one is; None otherwise.

        Held back: its person's pace, this engine's 429 pauses, or its channel's pace
        being too far ahead to claim for (another process's 429). A retry's backoff does
        not hold a notice back: it is due again later, not now.
        """
        async with self.sessionmaker() as session:
            paced = await outbox.next_paced(
                session, sorted(self._by_channel), now=now, quiet=self._quiet(now)
            )
        self._postponed = {key: until for key, until in self._postponed.items() if until > now}
        moments = [*self._postponed.values(), paced, self._held_until]
        return min((moment for moment in moments if moment is not None), default=None)

    # One notice -----------------------------------------------------------------------

    async def _wait_until(self, moment: dt.datetime) -> bool:
        """Wait until `moment`; return False if the engine was stopped before it came."""
        seconds = (moment - self.clock()).total_seconds()
        if seconds <= 0:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
            return False
        return True

    async def _send_at_slot(self, notice: Notice) -> None:
        try:
            if not await self._wait_until(notice.slot):
                async with self.sessionmaker() as session, session.begin():
                    await outbox.release(session, notice, per_chat=self.settings.per_chat_seconds)
                await self._give_back(notice)
                return
            if self.clock() + dt.timedelta(seconds=self.settings.send_timeout) > notice.token:
                # The process stalled past the slot (a suspended machine): the lease could
                # run out mid-send and another worker send the notice too. It is left to
                # the lease: another worker, or this one, takes it once it ran out.
                self.report.lost_leases += 1
                log.warning("outbox row %s: too late for its lease, not sent", notice.id)
                await self._give_back(notice)
                return
            await self._send(notice)
        except LeaseLost:
            # Its lease ran out (a very slow send) and another worker took it.
            self.report.lost_leases += 1
            log.warning("outbox row %s: lease lost before it was settled", notice.id)
        except Exception as exc:
            log.error("outbox row %s: delivery error %s", notice.id, type(exc).__name__)

    async def _send(self, notice: Notice) -> None:
        paused = self._paused_until.get(notice.channel)
        if paused is not None and paused > self.clock():
            # The channel asked to wait after this notice's slot was reserved.
            reason = self._held_reasons.get(notice.channel)
            async with self.sessionmaker() as session, session.begin():
                await outbox.postpone(session, notice, until=paused, reason=reason)
            await self._give_back(notice)
            self._postponed[notice.id] = paused
            return
        async with self.sessionmaker() as session:
            claimed = await outbox.is_claimed(session, notice)
        if not claimed:
            # Stopped (a broadcast) or taken again meanwhile: not sent, nothing to settle.
            log.info("outbox row %s is no longer queued under this claim: not sent", notice.id)
            await self._give_back(notice)
            return
        language = supported_language(notice.language) or self.notify.chat.default_language
        try:
            reply = decode_reply(notice.payload["reply"])
        except (KeyError, TypeError, ValueError) as exc:
            await self._settle_failed(notice, f"unreadable notice: {type(exc).__name__}")
            await self._give_back(notice)
            return
        try:
            provider_id = await self._deliver(notice, reply, language)
        except Held as exc:
            await self._held(notice, exc)
        except Throttled as exc:
            await self._throttled(notice, exc)
        except Unreachable as exc:
            await self._unreachable(notice, exc)
        except TemporaryFailure as exc:
            await self._retry(notice, exc)
        except QuotaExhausted as exc:
            await self._quota_exhausted(notice, exc)
        except PermanentFailure as exc:
            await self._settle_failed(notice, exc.reason)
        except DeliveryError as exc:
            await self._retry(notice, exc)
        else:
            async with self.sessionmaker() as session, session.begin():
                await outbox.mark_sent(
                    session,
                    notice,
                    now=self.clock(),
                    per_chat=self.settings.per_chat_seconds,
                    provider_message_id=provider_id,
                )
            self.report.sent += 1
            metrics.sent(notice.channel, "notice")

    async def _deliver(self, notice: Notice, reply: Reply, language: str) -> str | None:
        """Send the notice on its channel; return the message id to keep (ZNS's msg_id).

        No answer within `send_timeout` is a TemporaryFailure: a timed-out send may still
        have been delivered, and its retry can repeat it once (by ZNS with the same
        tracking id). A ZNS message's quota report is recorded at once, so that the day's
        guard sees it.
        """
        timeout = self.settings.send_timeout
        try:
            async with asyncio.timeout(timeout):
                if self.zns is None or notice.channel != self.zns.channel:
                    sender = self._by_channel[notice.channel]
                    await sender.send_notice(notice.external_id, reply, language)
                    return None
                accepted = await self.zns.send(notice, reply)
        except TimeoutError:
            raise TemporaryFailure(f"no answer within {timeout:g} s") from None
        async with self.sessionmaker() as session, session.begin():
            await self.zns.accepted(session, accepted, self.clock())
        return accepted.msg_id or None

    async def _give_back(self, notice: Notice) -> None:
        """Give a ZNS notice's place in the day's budget back: it was claimed, not sent."""
        if self.zns is not None and notice.channel == self.zns.channel:
            async with self.sessionmaker() as session, session.begin():
                await self.zns.give_back(session, self.clock())

    async def _held(self, notice: Notice, exc: Held) -> None:
        # The channel cannot send before `until` (ZNS's quota, its tokens): this notice and
        # the process's others on the channel wait, not failed, no attempt counted.
        log.warning("%s held until %s: %s", notice.channel, exc.until.isoformat(), exc.reason)
        # This process holds back only briefly: the database's hold is what counts, and an
        # admin may end it (a new authorization) long before `until`.
        pause = min(exc.until, self.clock() + HELD_RECHECK)
        current = self._paused_until.get(notice.channel)
        self._paused_until[notice.channel] = pause if current is None else max(current, pause)
        self._held_reasons[notice.channel] = exc.reason
        async with self.sessionmaker() as session, session.begin():
            await outbox.postpone(session, notice, until=exc.until, reason=exc.reason)
        self._postponed[notice.id] = exc.until
        self.wake()

    async def _throttled(self, notice: Notice, exc: Throttled) -> None:
        until = self.clock() + dt.timedelta(seconds=max(exc.retry_after, 0.5))
        if isinstance(exc, ChannelDown):
            log.error("%s cannot send: %s; notices wait", notice.channel, exc.reason)
        else:
            log.warning(
                "%s asked to wait %ss (outbox row %s)", notice.channel, exc.retry_after, notice.id
            )
        self.report.throttled += 1
        metrics.throttled(notice.channel)
        current = self._paused_until.get(notice.channel)
        self._paused_until[notice.channel] = until if current is None else max(current, until)
        async with self.sessionmaker() as session, session.begin():
            await outbox.postpone(session, notice, until=until)
            await outbox.throttle(session, notice.channel, until=until)
        self._postponed[notice.id] = until

    async def _unreachable(self, notice: Notice, exc: Unreachable) -> None:
        log.info("outbox row %s: account %s unreachable", notice.id, notice.account_id)
        async with self.sessionmaker() as session, session.begin():
            route = self.zns.route(self.clock()) if self.zns is not None else None
            requeued = await outbox.account_unreachable(
                session,
                notice,
                exc.reason,
                now=self.clock(),
                zns_kinds=route.kinds if route is not None else frozenset(),
            )
        if requeued:
            self.wake()
        else:
            self.report.unreachable += 1
            metrics.failed(notice.channel, "notice")

    async def _retry(self, notice: Notice, exc: DeliveryError) -> None:
        delay = backoff(notice.attempts, self.settings.retry_base)
        log.warning("outbox row %s not sent (%s): retry", notice.id, exc.reason)
        async with self.sessionmaker() as session, session.begin():
            failed = await outbox.retry_later(
                session,
                notice,
                exc.reason,
                until=self.clock() + delay,
                max_attempts=self.settings.max_attempts,
            )
        metrics.failed(notice.channel, "notice")
        if failed:
            self.report.failed += 1
        else:
            self.report.retried += 1

    async def _quota_exhausted(self, notice: Notice, exc: QuotaExhausted) -> None:
        # Every later notice on the channel would be refused too: this process puts them
        # back for `quota_pause` instead of sending (another process finds out with its
        # own first refusal), and the admins are told once; this notice fails.
        log.error("%s quota used up (outbox row %s): %s", notice.channel, notice.id, exc.reason)
        now = self.clock()
        until = now + self.settings.quota_pause
        current = self._paused_until.get(notice.channel)
        self._paused_until[notice.channel] = until if current is None else max(current, until)
        async with self.sessionmaker() as session, session.begin():
            await outbox.mark_failed(session, notice, exc.reason)
            await report_quota_exhausted(
                Repos(session), notice.channel, exc.reason, now=now, settings=self.notify.chat
            )
        self.report.failed += 1
        self.wake()

    async def _settle_failed(self, notice: Notice, reason: str) -> None:
        log.warning("outbox row %s failed: %s", notice.id, reason)
        async with self.sessionmaker() as session, session.begin():
            await outbox.mark_failed(session, notice, reason)
        self.report.failed += 1
        metrics.failed(notice.channel, "notice")
