"""Alerts about a channel itself, for the school's admins: a used-up message quota."""

from __future__ import annotations

import datetime as dt

from db.repos import Repos
from handlers.link_codes import CHANNEL_NAMES
from handlers.notices import notify
from handlers.types import ChatSettings, Msg, Reply


async def report_quota_exhausted(
    repos: Repos, channel: str, reason: str, *, now: dt.datetime, settings: ChatSettings
) -> int:
    """Tell every admin, once per channel and month, that its message quota is used up.

    Return how many admins were newly told (0 when they already were this month).
    """
    admins = await repos.people.admins(settings.admins)
    month = now.astimezone(settings.zone).strftime("%Y-%m")
    name = CHANNEL_NAMES.get(channel) or channel
    notice = Reply(lines=(Msg("quota.notice", {"channel": name, "reason": reason[:200]}),))
    told = 0
    for admin in admins:
        key = f"quota:{channel}:{month}:{admin.id}"
        if await notify(repos, admin.id, "channel.quota", key, notice, due_at=now, urgent=True):
            told += 1
    return told
