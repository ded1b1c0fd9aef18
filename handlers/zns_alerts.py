"""What the school's admins are told about ZNS, each problem once a day.

Notices that could not reach people without a chat (no template for their kind, Zalo
refused the template), the day's ZNS quota used up (or the school's own limit), the ZNS
account's balance, and tokens Zalo refused (the app must be authorized again).
"""

from __future__ import annotations

import datetime as dt

from db.repos import Repos
from handlers.labels import local_time
from handlers.notices import notify
from handlers.types import ChatSettings, Msg, Param, Reply
from handlers.zns_fields import kind_of

ALERT_KIND = "zns.alert"


async def _tell_admins(
    repos: Repos,
    topic: str,
    line: Msg,
    *,
    now: dt.datetime,
    settings: ChatSettings,
    urgent: bool = False,
) -> int:
    """Queue `line` for every admin once per local day and `topic`; return how many were new."""
    day = now.astimezone(settings.zone).date().isoformat()
    told = 0
    for admin in await repos.people.admins(settings.admins):
        key = f"zns:{topic}:{day}:{admin.id}"
        reply = Reply(lines=(line, Msg("zns.alert_where")))
        if await notify(repos, admin.id, ALERT_KIND, key, reply, due_at=now, urgent=urgent):
            told += 1
    return told


def _kind_label(outbox_kind: str) -> str:
    found = kind_of(outbox_kind)
    return f"{found.name} ({outbox_kind})" if found is not None else outbox_kind


async def report_without_template(
    repos: Repos, outbox_kind: str, count: int, *, now: dt.datetime, settings: ChatSettings
) -> int:
    """Tell admins that notices of a kind failed for people without a chat: no template."""
    found = kind_of(outbox_kind)
    if found is None:
        line = Msg("zns.alert_chat_only", {"kind": outbox_kind, "count": count})
    else:
        line = Msg(
            "zns.alert_no_template",
            {"kind": _kind_label(outbox_kind), "count": count, "table": found.name},
        )
    return await _tell_admins(repos, f"no-template:{outbox_kind}", line, now=now, settings=settings)


async def report_held(
    repos: Repos,
    reason: str,
    until: dt.datetime,
    *,
    topic: str,
    now: dt.datetime,
    settings: ChatSettings,
) -> int:
    """Tell admins that ZNS sends wait ("quota", "balance", "auth") and until when."""
    params: dict[str, Param] = {"reason": reason[:300], "until": local_time(until, settings.zone)}
    if topic == "quota":
        line = Msg("zns.alert_quota", params)
    elif topic == "balance":
        line = Msg("zns.alert_balance", params)
    else:
        line = Msg("zns.alert_auth", params)
    return await _tell_admins(repos, topic, line, now=now, settings=settings, urgent=True)


async def report_refused(
    repos: Repos, outbox_kind: str, reason: str, *, now: dt.datetime, settings: ChatSettings
) -> int:
    """Tell admins that Zalo refused a kind's template message (its id or its fields)."""
    line = Msg("zns.alert_refused", {"kind": _kind_label(outbox_kind), "reason": reason[:300]})
    return await _tell_admins(repos, f"refused:{outbox_kind}", line, now=now, settings=settings)
