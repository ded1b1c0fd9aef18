"""What unit heads and broadcast authors are told of people the bot reaches by ZNS.

Who goes by ZNS is one rule, db.zns.goes_by_zns (no chat account the bot can reach, a
phone ZNS takes); which notices is the configuration (`[zns]` templates that are on,
ChatSettings.zns_kinds). A head who learns that someone cannot be reached on chat is
told, in the same message, what still reaches them by ZNS and what does not.
"""

from __future__ import annotations

from collections.abc import Collection

from handlers.types import ChatSettings, Msg
from handlers.zns_fields import ZNS_KINDS


def kinds_by_zns(settings: ChatSettings, *, leave_out: Collection[str] = ()) -> list[str]:
    """Return the names of the kinds of notices that go by ZNS (ZNS_KINDS' order)."""
    return [
        kind.name
        for kind in ZNS_KINDS.values()
        if kind.name not in leave_out and settings.zns_kinds.intersection(kind.outbox_kinds)
    ]


def still_by_zns(names: Collection[str], headline: Msg | None = None) -> list[Msg]:
    """Return the lines that name what still reaches a person by ZNS (none: no lines)."""
    if not names:
        return []
    return [
        headline or Msg("zns.reach_still"),
        *(Msg("zns.reach_kind", {"kind": Msg(f"zns.kind_{name}")}) for name in names),
    ]
