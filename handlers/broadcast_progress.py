"""What a broadcast's author is shown while it goes out: one progress message, then a report.

The rules of when to show what live here, not in a channel: a channel that edits
messages (Telegram) keeps one progress message up to date and ends it with the final
counts; one that cannot (the console, Zalo) gets a new message only at the start, at each
quarter of the recipients done, and at the end. Either way the report comes last, as a
new message, so the author is notified that it finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.broadcasts import Progress, is_over
from db.models import BroadcastStatus
from handlers.broadcast_buttons import Do, data
from handlers.types import Button, Msg, Reply

# How much of the announcement names it in progress messages and lists.
SNIPPET_LENGTH = 40
# A channel without edits is told at each of these fractions of the recipients done.
MILESTONES = 4


def snippet(text: str) -> str:
    """Return the start of an announcement on one line, to name it (📎 for a file alone)."""
    flat = " ".join(text.split())
    if not flat:
        return "📎"
    if len(flat) <= SNIPPET_LENGTH:
        return flat
    return flat[: SNIPPET_LENGTH - 1].rstrip() + "…"


def _title(broadcast_id: int, text: str, status: BroadcastStatus, done: bool) -> Msg:
    params: dict[str, Any] = {"number": broadcast_id, "snippet": snippet(text)}
    if status == BroadcastStatus.STOPPED:
        return Msg("broadcast.progress_stopped", params)
    if done:
        return Msg("broadcast.progress_done", params)
    return Msg("broadcast.progress_sending", params)


def progress_reply(
    broadcast_id: int, text: str, status: BroadcastStatus, progress: Progress
) -> Reply:
    """Return the progress message: sent / left / failed, with Stop while it goes out."""
    over = is_over(status, progress)
    counts = Msg(
        "broadcast.progress_counts",
        {
            "sent": progress.sent,
            "recipients": progress.recipients,
            "left": progress.left,
            "failed": progress.failed + progress.blocked,
        },
    )
    lines = [_title(broadcast_id, text, status, over), counts]
    if progress.skipped:
        lines.append(Msg("broadcast.progress_skipped", {"count": progress.skipped}))
    buttons: tuple[tuple[Button, ...], ...] = ()
    if not over:
        buttons = ((Button(Msg("broadcast.stop_button"), data(Do.STOP, broadcast_id)),),)
    return Reply(tuple(lines), buttons)


def report_reply(broadcast_id: int, text: str, progress: Progress) -> Reply:
    """Return the final report: delivered, blocked the bot, failed, never linked, stopped."""
    lines = [
        Msg("broadcast.report_title", {"number": broadcast_id, "snippet": snippet(text)}),
        Msg("broadcast.report_delivered", {"count": progress.sent}),
        Msg("broadcast.report_blocked", {"count": progress.blocked + progress.unreachable}),
        Msg("broadcast.report_failed", {"count": progress.failed}),
        Msg("broadcast.report_never_linked", {"count": progress.never_linked}),
    ]
    if progress.skipped:
        lines.append(Msg("broadcast.report_stopped", {"count": progress.skipped}))
    return Reply(tuple(lines))


def milestone(progress: Progress) -> int:
    """Return how many quarters of the recipients are done (0 to MILESTONES)."""
    if progress.recipients <= 0:
        return MILESTONES
    done = progress.recipients - progress.left
    return min(MILESTONES, done * MILESTONES // progress.recipients)


@dataclass(frozen=True)
class ProgressUpdate:
    """What to show the author now: the progress message (sent or edited), then a report."""

    progress: Reply | None
    report: Reply | None
    # What the progress message shows afterwards, kept with the broadcast.
    shown: dict[str, Any]


def progress_update(
    broadcast_id: int,
    text: str,
    status: BroadcastStatus,
    progress: Progress,
    shown: dict[str, Any] | None,
    *,
    edits: bool,
) -> ProgressUpdate | None:
    """Return what to show the author now, or None when nothing changed worth telling.

    `shown` is what the progress message showed last (None: nothing yet); `edits` whether
    the channel can edit that message in place.
    """
    over = is_over(status, progress)
    counts = {
        "sent": progress.sent,
        "left": progress.left,
        "failed": progress.failed + progress.blocked,
        "skipped": progress.skipped,
    }
    now_shown = {**counts, "milestone": milestone(progress), "over": over}
    view = progress_reply(broadcast_id, text, status, progress)
    report = report_reply(broadcast_id, text, progress) if over else None
    if shown is None:
        # The first message: its start (or, for a broadcast already over, its end).
        if over:
            return ProgressUpdate(view if edits else None, report, now_shown)
        return ProgressUpdate(view, None, now_shown)
    if over:
        return ProgressUpdate(view if edits else None, report, now_shown)
    if edits:
        changed = any(shown.get(key) != value for key, value in counts.items())
        return ProgressUpdate(view, None, now_shown) if changed else None
    if now_shown["milestone"] > int(shown.get("milestone", 0)):
        return ProgressUpdate(view, None, now_shown)
    return None
