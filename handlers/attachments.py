"""Photos and documents in replies: a channel that cannot send one says so in the text."""

from __future__ import annotations

from dataclasses import replace

from handlers.types import AttachmentKind, Msg, Reply


def carried(reply: Reply, channel: str) -> Reply:
    """Return `reply` as `channel` can send it: an attachment of another platform becomes a note.

    A platform's file id means nothing elsewhere (a Telegram photo cannot be sent on Zalo
    or printed in the console), so the text goes out with a line saying what was left out.
    """
    attachment = reply.attachment
    if attachment is None or attachment.channel == channel:
        return reply
    if attachment.kind == AttachmentKind.PHOTO:
        note = Msg("attachment.photo_not_carried")
    else:
        note = Msg("attachment.document_not_carried", {"name": attachment.filename or ""})
    return replace(reply, lines=(*reply.lines, note), attachment=None)
