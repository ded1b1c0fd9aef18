"""What admins see of ZNS: spend, Zalo's quota, the guard, held notices, the tokens' state.

Read from the database, so every process (and `trainingbot jobs status`, `trainingbot zns
status`, the web admin's ZNS page, /healthz) shows the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.web.core import ProbeFailed
from db import zns
from db.models import OutboxMessage, OutboxStatus, ZnsToken

WITHOUT_TEMPLATE = "unreachable: no reachable chat account, and no ZNS template for "


@dataclass(frozen=True)
class ZnsStatus:
    """ZNS at a moment, for the school's admins."""

    enabled: bool
    # Kind name → template id of the templates that are on; the kinds configured but off.
    templates: dict[str, str]
    off: list[str]
    today: zns.Spend
    month: zns.Spend
    # Zalo's quota as last reported today, with what was taken since (None: not yet known).
    daily_quota: int | None
    remaining: int | None
    reported_at: dt.datetime | None
    claimed_today: int
    daily_limit: int
    reserve: int
    held: int
    held_until: dt.datetime | None
    held_reason: str | None
    refreshed_at: dt.datetime | None
    access_expires_at: dt.datetime | None
    auth_error: str | None
    auth_error_at: dt.datetime | None
    # Notices for people without a chat that failed today for want of a template, by kind.
    without_template: dict[str, int]
    events_today: dict[str, int]


def _midnight(now: dt.datetime, zone: ZoneInfo, *, month: bool = False) -> dt.datetime:
    local = now.astimezone(zone).date()
    if month:
        local = local.replace(day=1)
    return dt.datetime.combine(local, dt.time(), zone)


async def zns_status(session: AsyncSession, settings: Settings, now: dt.datetime) -> ZnsStatus:
    """Return ZNS's state now."""
    section = settings.zns
    zone = settings.bot.zone
    app_id = section.app_id or ""
    today = _midnight(now, zone)
    token = await zns.token_state(session, app_id) if app_id else None
    budget = await zns.budget_state(session, app_id) if app_id else None
    current = budget is not None and budget.day == now.astimezone(zone).date()
    remaining = None
    if budget is not None and current and budget.remaining is not None:
        remaining = max(0, budget.remaining - (budget.claimed - budget.remaining_claimed))
    failures = await session.execute(
        select(OutboxMessage.kind, func.count())
        .where(
            OutboxMessage.status == OutboxStatus.FAILED,
            OutboxMessage.due_at >= today,
            OutboxMessage.last_error.like(WITHOUT_TEMPLATE + "%"),
        )
        .group_by(OutboxMessage.kind)
    )
    configured = {
        name: getattr(section.templates, name)
        for name in type(section.templates).model_fields
        if getattr(section.templates, name) is not None
    }
    held = budget is not None and budget.held_until is not None and budget.held_until > now
    return ZnsStatus(
        enabled=section.enabled,
        templates={name: t.template_id for name, t in configured.items() if t.enabled},
        off=sorted(name for name, t in configured.items() if not t.enabled),
        today=await zns.spend(session, today),
        month=await zns.spend(session, _midnight(now, zone, month=True)),
        daily_quota=budget.daily_quota if budget is not None and current else None,
        remaining=remaining,
        reported_at=budget.reported_at if budget is not None and current else None,
        claimed_today=budget.claimed if budget is not None and current else 0,
        daily_limit=section.daily_limit,
        reserve=section.quota_reserve,
        held=await zns.held_notices(session, now),
        held_until=budget.held_until if held and budget is not None else None,
        held_reason=budget.held_reason if held and budget is not None else None,
        refreshed_at=token.refreshed_at if token else None,
        access_expires_at=token.access_expires_at if token else None,
        auth_error=token.auth_error if token else None,
        auth_error_at=token.auth_error_at if token else None,
        without_template={str(kind): int(count) for kind, count in failures.all()},
        events_today=await zns.event_counts(session, today),
    )


def _local(moment: dt.datetime | None, zone: ZoneInfo) -> str:
    return "-" if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def status_lines(status: ZnsStatus, zone: ZoneInfo) -> list[str]:
    """Return ZNS's state as lines for a terminal."""
    if not status.enabled:
        return ["zns: off ([zns] enabled = false)"]
    templates = ", ".join(f"{name} {tid}" for name, tid in sorted(status.templates.items()))
    off = f" (off: {', '.join(status.off)})" if status.off else ""
    lines = [f"zns: on; templates: {templates or 'none'}{off}"]
    quota = (
        f"Zalo's quota today: {status.remaining} of {status.daily_quota or '?'} left "
        f"(at {_local(status.reported_at, zone)[11:]})"
        if status.remaining is not None
        else "Zalo's quota today: not known yet (it comes with the first message)"
    )
    guard = f"daily limit {status.daily_limit}" if status.daily_limit else "no daily limit"
    lines.append(
        f"zns: today {status.today.sent} sent ({status.today.delivered} delivered), this month "
        f"{status.month.sent} sent ({status.month.delivered} delivered); {quota}; guard: "
        f"{guard}, {status.reserve} kept for urgent notices"
    )
    if status.held or status.held_until is not None:
        until = f" until {_local(status.held_until, zone)}" if status.held_until else ""
        reason = f": {status.held_reason}" if status.held_reason else ""
        lines.append(f"zns: {status.held} notices wait for the ZNS quota or tokens{until}{reason}")
    if status.auth_error is not None:
        lines.append(
            f"zns: AUTHORIZATION NEEDED since {_local(status.auth_error_at, zone)}: Zalo refused "
            f"the refresh token ({status.auth_error}); authorize the app for the OA again, then "
            "`trainingbot zns set-token` (see README, ZNS)"
        )
    elif status.refreshed_at is not None:
        lines.append(
            f"zns: tokens refreshed {_local(status.refreshed_at, zone)}, access token valid "
            f"until {_local(status.access_expires_at, zone)}"
        )
    else:
        lines.append("zns: no tokens yet (the first ZNS message refreshes them)")
    for kind, count in sorted(status.without_template.items()):
        lines.append(
            f"zns: today {count} {kind} notices reached no one: no chat and no ZNS template"
        )
    return lines


def now_utc() -> dt.datetime:
    """Return the current time in UTC."""
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat(timespec="seconds")


class ZnsProbe:
    """/healthz's look at ZNS: its tokens and today's quota, read from the database.

    Zalo is not asked (every probe would cost a call, and the quota comes back with every
    message anyway). Failing: tokens Zalo refused, or none at all, since ZNS can send
    nothing until an admin authorizes the app again. A quota used up or a held balance
    is reported, not failing: notices wait for the next day as they should.
    """

    channel = zns.CHANNEL

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        clock: Callable[[], dt.datetime] = now_utc,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.clock = clock

    async def probe(self) -> dict[str, object]:
        """Return ZNS's tokens and quota; raise ProbeFailed when the tokens cannot be used."""
        section = self.settings.zns
        app_id = section.app_id or ""
        now = self.clock()
        async with self.sessionmaker() as session:
            token = await zns.token_state(session, app_id)
            budget = await zns.budget_state(session, app_id)
        facts: dict[str, object] = {"token": self._token(token, now)}
        if token is not None and token.access_expires_at is not None:
            facts["access_token_valid_until"] = _iso(token.access_expires_at)
        today = now.astimezone(self.settings.bot.zone).date()
        current = budget is not None and budget.day == today
        left = None
        if budget is not None and current and budget.remaining is not None:
            left = max(0, budget.remaining - (budget.claimed - budget.remaining_claimed))
        facts |= {
            "quota_left_today": left,
            "daily_quota": budget.daily_quota if budget is not None and current else None,
            "daily_limit": section.daily_limit or None,
            "taken_today": budget.claimed if budget is not None and current else 0,
        }
        if budget is not None and budget.held_until is not None and budget.held_until > now:
            facts |= {"held_until": _iso(budget.held_until), "held_reason": budget.held_reason}
        if facts["token"] in ("refused", "missing"):
            raise ProbeFailed("authorization_needed", facts)
        return facts

    def _token(self, token: ZnsToken | None, now: dt.datetime) -> str:
        """Return the tokens' state in a word."""
        if token is None:
            # The configured refresh token seeds the row at the first send.
            return "not_used_yet" if self.settings.zns.refresh_token is not None else "missing"
        if token.auth_error is not None:
            return "refused"
        if token.access_token and token.access_expires_at and token.access_expires_at > now:
            return "valid"
        return "to_refresh"
