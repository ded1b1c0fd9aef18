"""ZNS: notices by template message to the roster phone of people without a chat, and the
Official Account's events (receipts, messages written to the OA, follows).

The delivery engine (bot/delivery.py) routes a notice here when its person has no
reachable chat account and its kind has a template that is on (db/outbox.py); this
module turns the notice into the template's data (handlers/zns_fields.py), sends it with
the tracking id of its outbox row (the same for every attempt and process, so a retry
is not charged twice), and maps Zalo's answers onto the engine's neutral errors:

- the day's quota used up → the notice waits for the next day (Held), every process
  stops sending by ZNS (db/zns.py: the budget's hold), the admins are told once a day;
- the ZNS account's balance used up → the same, tried again an hour later;
- tokens Zalo refuses → the notice waits while an admin authorizes the app again;
- a phone without Zalo, or a person refusing ZNS → this notice fails (not charged);
- a template or data Zalo refuses → fails, and the admins are told once a day;
- network errors, 5xx, Zalo's "unknown error" → retried with backoff (same tracking id).

A text written to the OA is answered, at most once a day per person and only within
the free 48 hours of a consultation message, with a pointer to the bot.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.zns_api import Accepted, ZnsApi, ZnsApiError, ZnsError, ZnsNetworkError
from bot.channels.zns_tokens import TokenManager, TokenUnavailable
from bot.config import Settings, ZnsSettings
from bot.senders import Held, PermanentFailure, TemporaryFailure, Throttled
from db import zns
from db.outbox import Notice, ZnsRoute
from db.repos import Repos
from handlers.i18n import t
from handlers.types import Msg, Reply
from handlers.zns_alerts import report_held, report_refused
from handlers.zns_fields import kind_of, notice_values, template_data

log = logging.getLogger(__name__)

CHANNEL = zns.CHANNEL
# The ZNS account's balance used up: try again after this.
BALANCE_PAUSE = dt.timedelta(hours=1)
# A consultation message is free within this long of the user's message.
FREE_REPLY_WINDOW = dt.timedelta(hours=48)
# One pointer to the bot per OA user within this long.
REPLY_EVERY = dt.timedelta(hours=24)
REPLY_LEASE = dt.timedelta(seconds=60)
MAX_REPLY_ATTEMPTS = 5
IDLE_SECONDS = 5.0


def now_utc() -> dt.datetime:
    """Return the current time in UTC."""
    return dt.datetime.now(dt.UTC)


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Retrieve a shielded task's outcome, so that one nobody awaits any more is not logged."""
    if not task.cancelled():
        task.exception()


def api_of(settings: ZnsSettings) -> ZnsApi:
    """Return the client of the configured OA app."""
    assert settings.app_id is not None
    assert settings.secret_key is not None
    return ZnsApi(
        settings.app_id,
        settings.secret_key.get_secret_value(),
        oauth_base=settings.oauth_base_url,
        zns_base=settings.zns_base_url,
        oa_base=settings.oa_base_url,
    )


def _moment(value: Any) -> dt.datetime | None:
    """Return a Zalo timestamp (milliseconds, as a number or a string) as a moment."""
    try:
        millis = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    if millis <= 0:
        return None
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC)


def event_identity(event: dict[str, Any], raw: bytes) -> tuple[str, str, str | None, str | None]:
    """Return an event's key (Zalo posts an event again for an hour), name, user and msg_id."""
    name = str(event.get("event_name") or "unknown")[:64]
    message = event.get("message")
    found_id = message.get("msg_id") if isinstance(message, dict) else None
    msg_id = str(found_id or "").strip()[:64] or None
    user: str | None = None
    for holder in ("follower", "sender"):
        found = event.get(holder)
        if isinstance(found, dict) and found.get("id") is not None:
            user = str(found["id"])[:64]
            break
    if name == "user_received_message":
        user = None  # the sender is the OA; the receipt is about one of its messages
    if msg_id is not None:
        key = f"{name}:{msg_id}"
    elif user is not None:
        key = f"{name}:{user}:{event.get('timestamp')}"
    else:
        key = f"{name}:{hashlib.sha256(raw).hexdigest()[:32]}"
    return key, name, user, msg_id


class ZnsChannel:
    """One process's ZNS: the delivery engine's sender, and the OA's events and answers."""

    def __init__(
        self,
        api: ZnsApi,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        clock: Any = now_utc,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.api = api
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.clock = clock
        self.idle_seconds = idle_seconds
        section = settings.zns
        self.tokens = TokenManager(
            api,
            sessionmaker,
            configured=section.refresh_token.get_secret_value() if section.refresh_token else None,
            margin=dt.timedelta(minutes=section.refresh_margin_minutes),
            on_refused=self._refused,
            clock=clock,
        )
        self._wake = asyncio.Event()

    @property
    def channel(self) -> str:
        """Return the channel's name on outbox rows."""
        return CHANNEL

    async def initialize(self) -> None:
        """Open the HTTP connection pool (tokens are checked at the first send)."""
        await self.api.start()

    async def shutdown(self) -> None:
        """Close the HTTP connection pool."""
        await self.api.close()

    # The day ---------------------------------------------------------------------------

    def day(self, now: dt.datetime) -> tuple[dt.date, dt.datetime]:
        """Return the school's local day at `now` and when it ends (Zalo's quota renews)."""
        zone = self.settings.bot.zone
        today = now.astimezone(zone).date()
        ends = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), zone)
        return today, ends.astimezone(dt.UTC)

    def route(self, now: dt.datetime) -> ZnsRoute | None:
        """Return how claims may use ZNS now, or None when no kind has a template on."""
        section = self.settings.zns
        kinds = section.kinds
        if not kinds or section.app_id is None:
            return None
        today, ends = self.day(now)
        guard = zns.Guard(daily_limit=section.daily_limit, reserve=section.quota_reserve)
        return ZnsRoute(section.app_id, kinds, guard, today, ends)

    # Sending ---------------------------------------------------------------------------

    async def send(self, notice: Notice, reply: Reply) -> Accepted:
        """Send a notice as its kind's template message; raise the engine's errors."""
        section = self.settings.zns
        kind = kind_of(notice.kind)
        template = section.templates.by_kind().get(kind.name) if kind is not None else None
        if template is None:
            # The configuration changed since the notice was claimed.
            raise PermanentFailure(f"zns: no ZNS template for {notice.kind} any more")
        values = notice_values(
            reply, language=section.language, person_name=notice.person_name, phone=notice.phone
        )
        data = template_data(template.fields, values, template.max_lengths)
        tracking = zns.tracking_id(notice.key)
        for attempt in range(2):
            token = await self._token()
            try:
                return await self.api.send_template(
                    token,
                    phone=notice.external_id,
                    template_id=template.template_id,
                    data=data,
                    tracking_id=tracking,
                )
            except ZnsNetworkError as exc:
                # Zalo may have accepted it: a retry carries the same tracking id.
                raise TemporaryFailure(f"zns: {exc}") from None
            except ZnsApiError as exc:
                if exc.kind == "token" and attempt == 0:
                    await self.tokens.refused_token(token)
                    continue
                raise await self._refusal(notice, exc) from None
        raise TemporaryFailure("zns: the access token was refused twice")

    async def _token(self) -> str:
        """Return an access token, or hold ZNS while there is none."""
        # Shielded: a send abandoned for its timeout must not cut a refresh short between
        # Zalo's answer and storing the new pair (the old refresh token is dead by then).
        refresh = asyncio.ensure_future(self.tokens.access_token())
        refresh.add_done_callback(_retrieved)
        try:
            return await asyncio.shield(refresh)
        except TokenUnavailable as exc:
            await self._unclaim(self.clock())
            if exc.needs_authorization:
                reason = f"{zns.AUTH_HOLD} {exc.reason}"
                await self._hold(reason, exc.retry_at, topic="auth")
            else:
                reason = f"zns: {exc.reason}"
            raise Held(reason, exc.retry_at) from None

    async def _refusal(self, notice: Notice, exc: ZnsApiError) -> Exception:
        """Return the engine's error for Zalo's refusal, holding ZNS or telling admins first."""
        now = self.clock()
        reason = f"zns: {exc}"[:300]
        # Refused, so not charged: the day's budget gets the send back (a retry claims again).
        await self._unclaim(now)
        if exc.kind == "daily_quota":
            _today, ends = self.day(now)
            await self._hold(f"zns quota: Zalo's daily quota is used up ({exc})", ends, "quota")
            return Held(f"zns quota: {exc}", ends)
        if exc.kind == "balance":
            until = now + BALANCE_PAUSE
            await self._hold(f"zns balance: {exc}", until, "balance")
            return Held(f"zns balance: {exc}", until)
        if exc.kind == "throttled":
            return Throttled(reason, 1.0)
        if exc.kind in ("temporary", "token"):
            return TemporaryFailure(reason)
        if exc.kind == "request":
            async with self.sessionmaker() as session, session.begin():
                await report_refused(
                    Repos(session), notice.kind, str(exc), now=now, settings=self.settings.chat
                )
        return PermanentFailure(reason)

    async def _hold(self, reason: str, until: dt.datetime, topic: str) -> None:
        """Stop every process's ZNS sends until `until`, and tell the admins (once a day)."""
        now = self.clock()
        today, _ends = self.day(now)
        async with self.sessionmaker() as session, session.begin():
            await zns.hold(
                session,
                self.api.app_id,
                until=until,
                reason=reason,
                day=today,
                used_up=topic == "quota",
            )
            await report_held(
                Repos(session), reason, until, topic=topic, now=now, settings=self.settings.chat
            )
        log.warning("zns held until %s: %s", until.isoformat(), reason)

    async def _unclaim(self, now: dt.datetime) -> None:
        async with self.sessionmaker() as session, session.begin():
            await self.give_back(session, now)

    async def give_back(self, session: AsyncSession, now: dt.datetime) -> None:
        """Give back the day's budget reserved for a send that did not happen."""
        today, _ends = self.day(now)
        await zns.unclaim(session, self.api.app_id, day=today)

    async def _refused(self, session: AsyncSession, reason: str, now: dt.datetime) -> None:
        """Tell the admins, in the unit of work recording it, that Zalo refused the tokens."""
        retry_at = now + dt.timedelta(minutes=30)
        await report_held(
            Repos(session),
            f"{zns.AUTH_HOLD} {reason}",
            retry_at,
            topic="auth",
            now=now,
            settings=self.settings.chat,
        )

    async def accepted(self, session: AsyncSession, accepted: Accepted, now: dt.datetime) -> None:
        """Record the quota Zalo reported with an accepted message (in its unit of work)."""
        today, _ends = self.day(now)
        await zns.record_quota(
            session,
            self.api.app_id,
            daily=accepted.quota.daily,
            remaining=accepted.quota.remaining,
            day=today,
            now=now,
        )

    # The OA's events --------------------------------------------------------------------

    async def receive_event(self, event: dict[str, Any], raw: bytes) -> bool:
        """Store an event once and apply it in the same unit of work; return False if known.

        A receipt marks its outbox row delivered; a text written to the OA waits for its
        answer (a pointer to the bot); a follow is recorded.
        """
        now = self.clock()
        key, name, user, msg_id = event_identity(event, raw)
        answer = name == "user_send_text" and user is not None
        pending = "pending" if answer and self.settings.zns.reply_to_messages else None
        async with self.sessionmaker() as session, session.begin():
            stored = await zns.store_event(
                session,
                key=key,
                name=name,
                user_id=user,
                msg_id=msg_id,
                payload=event,
                reply_status=pending,
                now=now,
            )
            if stored is None:
                return False
            if name == "user_received_message":
                message = event.get("message") or {}
                row = await zns.mark_delivered(
                    session,
                    tracking=str(message.get("tracking_id") or "") or None,
                    msg_id=msg_id,
                    at=_moment(message.get("delivery_time")) or now,
                )
                if row is None:
                    log.info("zns receipt %s matches no notice", msg_id)
        if pending:
            self._wake.set()
        return True

    async def answer_messages(self, stopping: asyncio.Event) -> None:
        """Answer texts written to the OA until `stopping` is set."""
        while not stopping.is_set():
            try:
                busy = await self.answer_one()
            except Exception as exc:  # the database or the network: wait, then go on
                log.error("zns answer worker error: %s", type(exc).__name__)
                busy = False
            if not busy:
                # Woken by a new text, by the stop, or after the idle pause.
                waits = [asyncio.ensure_future(e.wait()) for e in (self._wake, stopping)]
                await asyncio.wait(
                    waits, timeout=self.idle_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                for wait in waits:
                    wait.cancel()
                self._wake.clear()

    async def answer_one(self) -> bool:
        """Answer the oldest text waiting for it; return False if none waits."""
        now = self.clock()
        async with self.sessionmaker() as session, session.begin():
            event = await zns.claim_reply(session, now=now, lease=REPLY_LEASE)
            if event is None:
                return False
            event_id, user, received = event.id, event.user_id, event.received_at
            attempts = event.reply_attempts
            skip = user is None or received + FREE_REPLY_WINDOW < now
            if not skip and user is not None:
                skip = await zns.replied_lately(
                    session, user, since=now - REPLY_EVERY, not_id=event_id
                )
            if skip:
                await zns.settle_reply(session, event_id, status="skipped", now=now)
                return True
        assert user is not None
        status: str | None = "sent"
        retry_at: dt.datetime | None = None
        try:
            token = await self.tokens.access_token()
            await self.api.send_text(token, user, self.pointer_text())
        except TokenUnavailable as exc:
            status, retry_at = None, exc.retry_at
        except ZnsError as exc:
            passing = isinstance(exc, ZnsNetworkError) or (
                isinstance(exc, ZnsApiError) and exc.kind in ("temporary", "throttled", "token")
            )
            log.warning("zns answer to event %s not sent: %s", event_id, exc)
            if passing and attempts + 1 < MAX_REPLY_ATTEMPTS:
                status, retry_at = None, now + dt.timedelta(seconds=30 * 2**attempts)
            else:
                status = "failed"
        async with self.sessionmaker() as session, session.begin():
            await zns.settle_reply(session, event_id, status=status, now=now, retry_at=retry_at)
        return True

    def pointer_text(self) -> str:
        """Return the answer to a text written to the OA: where the bot is."""
        section = self.settings.zns
        language = self.settings.bot.default_language
        if not section.bot_links:
            return t(Msg("zns.pointer_no_links"), language)
        return "\n".join([t(Msg("zns.pointer"), language), *section.bot_links])
