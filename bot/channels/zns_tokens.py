"""The OA's access token, refreshed in turn by one process of many, stored before it is used.

A Zalo refresh token works once: every refresh returns a new pair and the old refresh
token is dead. So:

1. Under the token row's lock (db/zns.py), a process that finds the access token about
   to expire takes the refresh lease and commits it; the others keep using the current
   access token (still valid: refreshes start `margin` before it expires) or wait.
2. It calls Zalo outside any transaction (no database lock is held over the network).
3. It stores the new pair at once, in its own unit of work, where the row still holds
   the refresh token it used, and only then uses the new access token (store-then-use).
   If the database refuses the write, the pair is kept in memory and stored before
   anything else; it is not used until it is stored.

What a crash costs: a crash after Zalo answered and before the store commits (a window
of one database write), or an answer lost on the network, leaves the row with the used
refresh token. Nothing is lost at once: the current access token still works for up to
`margin`. The next refresh is refused; that refusal is recorded (`auth_error`), the
admins are told, `trainingbot jobs status` and the web admin say so, and ZNS notices
wait instead of failing. An admin authorizes the app again for the OA and gives the new
refresh token (`trainingbot zns set-token`, the web admin, or a new `[zns]
refresh_token`); the waiting notices then go. An answer lost to a timeout is not taken
for a refusal: the same refresh token is tried again, and if Zalo had not rotated it,
it simply works.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.zns_api import TokenPair, ZnsApi, ZnsApiError, ZnsNetworkError
from db import zns

log = logging.getLogger(__name__)

# How long a process may take to refresh before another may try (longer than a request).
REFRESH_LEASE = dt.timedelta(minutes=2)
# A refused refresh token is tried again this often (Zalo may have refused by mistake).
AUTH_RETRY = dt.timedelta(minutes=30)
# While another process refreshes and no access token is valid, ask again after this.
BUSY_WAIT = dt.timedelta(seconds=5)

# Called in the unit of work that records a refusal: e.g. tell the admins.
OnRefused = Callable[[AsyncSession, str, dt.datetime], Awaitable[None]]


def now_utc() -> dt.datetime:
    """Return the current time in UTC."""
    return dt.datetime.now(dt.UTC)


class TokenUnavailable(Exception):
    """No usable access token now; `retry_at` says when to ask again.

    `needs_authorization`: Zalo refused the refresh token (or none is configured), so an
    admin must authorize the app again; otherwise the problem is passing.
    """

    def __init__(
        self, reason: str, *, retry_at: dt.datetime, needs_authorization: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_at = retry_at
        self.needs_authorization = needs_authorization


@dataclass
class _Unsaved:
    """A refresh's answer the database would not take yet: stored before anything else."""

    used: str
    pair: TokenPair
    at: dt.datetime


class TokenManager:
    """One process's access to the OA's tokens in the database."""

    def __init__(
        self,
        api: ZnsApi,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        configured: str | None,
        margin: dt.timedelta,
        on_refused: OnRefused | None = None,
        clock: Callable[[], dt.datetime] = now_utc,
    ) -> None:
        self.api = api
        self.sessionmaker = sessionmaker
        self.app_id = api.app_id
        self.configured = configured
        self.margin = margin
        self.on_refused = on_refused
        self.clock = clock
        self._unsaved: _Unsaved | None = None
        # This process's sends ask one at a time (the others wait for its refresh) and
        # reuse a token that is valid beyond the margin without asking the database.
        self._lock = asyncio.Lock()
        self._cached: tuple[str, dt.datetime] | None = None

    async def access_token(self) -> str:
        """Return a valid access token, refreshing it first if it is about to expire.

        Raise TokenUnavailable when there is none to use now.
        """
        async with self._lock:
            cached = self._cached
            if cached is not None and cached[1] - self.margin > self.clock():
                return cached[0]
            self._cached = None
            token = await self._access_token()
        return token

    async def _access_token(self) -> str:
        now = self.clock()
        if self._unsaved is not None:
            await self._save_unsaved(now)
        async with self.sessionmaker() as session, session.begin():
            row = await zns.seed(session, self.app_id, self.configured, now=now)
            if row is None:
                raise TokenUnavailable(
                    "no refresh token: set [zns] refresh_token (TRAININGBOT_ZNS_REFRESH_TOKEN) "
                    "or run `trainingbot zns set-token`",
                    retry_at=now + AUTH_RETRY,
                    needs_authorization=True,
                )
            current = row.access_token
            expires = row.access_expires_at
            valid = current if current and expires is not None and expires > now else None
            if valid is not None and expires is not None and expires - self.margin > now:
                self._cached = (valid, expires)
                return valid
            lease = row.refresh_lease_until
            if lease is not None and lease > now:
                # Another process is refreshing: the current token still serves, if any.
                if valid is not None:
                    return valid
                raise TokenUnavailable("another process is refreshing", retry_at=now + BUSY_WAIT)
            if row.auth_error and row.auth_error_at and row.auth_error_at + AUTH_RETRY > now:
                if valid is not None:
                    return valid
                raise TokenUnavailable(
                    f"Zalo refused the refresh token ({row.auth_error})",
                    retry_at=row.auth_error_at + AUTH_RETRY,
                    needs_authorization=True,
                )
            used = row.refresh_token
            row.refresh_lease_until = now + REFRESH_LEASE
        return await self._refresh(used, valid)

    async def _refresh(self, used: str, valid: str | None) -> str:
        """Refresh with `used` (leased), store the answer, then return the new access token."""
        try:
            pair = await self.api.refresh(used)
        except (ZnsNetworkError, ZnsApiError) as exc:
            return await self._refresh_failed(used, valid, exc)
        now = self.clock()
        self._unsaved = _Unsaved(used, pair, now)
        await self._save_unsaved(now)
        return pair.access_token

    async def _save_unsaved(self, now: dt.datetime) -> None:
        """Store the pair kept in memory; raise TokenUnavailable while the database refuses."""
        unsaved = self._unsaved
        assert unsaved is not None
        try:
            async with self.sessionmaker() as session, session.begin():
                stored = await zns.store_pair(
                    session,
                    self.app_id,
                    used=unsaved.used,
                    access_token=unsaved.pair.access_token,
                    refresh_token=unsaved.pair.refresh_token,
                    expires_at=unsaved.at + dt.timedelta(seconds=unsaved.pair.expires_in),
                    now=now,
                )
        except Exception as exc:
            log.error("zns: the new tokens could not be stored yet (%s)", type(exc).__name__)
            raise TokenUnavailable(
                "the new tokens are not stored yet", retry_at=now + BUSY_WAIT
            ) from None
        self._unsaved = None
        expires = unsaved.at + dt.timedelta(seconds=unsaved.pair.expires_in)
        self._cached = (unsaved.pair.access_token, expires)
        if stored:
            log.info("zns: tokens refreshed and stored")
        else:
            log.warning("zns: tokens refreshed but a newer authorization was stored meanwhile")

    async def _refresh_failed(self, used: str, valid: str | None, exc: Exception) -> str:
        """Release the lease; record a refusal (not a lost answer); use `valid` if there is one."""
        now = self.clock()
        passing = isinstance(exc, ZnsNetworkError) or (
            isinstance(exc, ZnsApiError) and exc.kind in ("temporary", "throttled")
        )
        refusal = None if passing else str(exc)[:300]
        async with self.sessionmaker() as session, session.begin():
            recorded = await zns.end_refresh(
                session, self.app_id, used=used, refused=refusal, now=now
            )
            if recorded and refusal is not None and self.on_refused is not None:
                await self.on_refused(session, refusal, now)
        if refusal is None:
            log.warning("zns: refresh failed (%s); the same token is tried again", exc)
        else:
            log.error("zns: Zalo refused the refresh token (%s): authorize the app again", exc)
        if valid is not None:
            return valid
        if refusal is None:
            raise TokenUnavailable(f"refresh failed: {exc}", retry_at=now + BUSY_WAIT * 6)
        if not recorded:
            # Refused, but a new authorization was stored meanwhile: try that one.
            raise TokenUnavailable("new tokens were stored meanwhile", retry_at=now)
        raise TokenUnavailable(
            f"Zalo refused the refresh token ({refusal})",
            retry_at=now + AUTH_RETRY,
            needs_authorization=True,
        )

    async def refused_token(self, token: str) -> None:
        """Note that Zalo refused an access token: the next call refreshes."""
        if self._cached is not None and self._cached[0] == token:
            self._cached = None
        async with self.sessionmaker() as session, session.begin():
            await zns.expire_access_token(session, self.app_id, token)
