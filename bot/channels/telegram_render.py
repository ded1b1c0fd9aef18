"""Replies rendered for Telegram: texts within its limit, buttons, a contact request, files.

Rendering happens when an update is handled and its result is stored with the update
(JSON), so replies sent after a crash are exactly the ones the handling produced.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    KeyboardButton,
    ReplyKeyboardMarkup,
)

from bot.channels.text_split import split_text as split_lines
from bot.channels.text_split import text_length as text_length
from handlers.attachments import carried
from handlers.choices import reply_text
from handlers.i18n import t
from handlers.types import Msg, Reply

CHANNEL = "telegram"
# Telegram's limit on a message's text, counted in UTF-16 code units.
MAX_TEXT = 4096
# Its limit on a photo's or document's caption.
MAX_CAPTION = 1024

Outgoing = dict[str, Any]


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split `text` into messages within Telegram's limit, at line boundaries where possible."""
    return split_lines(text, limit)


def _chunks(reply: Reply, language: str) -> list[str]:
    """Return the texts of a reply's messages; with a photo or document, the last is its caption.

    A text that fits in a caption goes with the file; a longer one is sent before it.
    """
    text = reply_text(reply, language)
    if reply.attachment is None:
        return split_text(text) or [""]
    if text_length(text) <= MAX_CAPTION:
        return [text]
    return [*split_text(text), ""]


def render_replies(replies: Sequence[Reply], language: str) -> list[Outgoing]:
    """Render replies as JSON-ready messages; a reply's extras ride on its last message.

    A photo or document of another platform is left out with a note (handlers.attachments).
    """
    messages: list[Outgoing] = []
    for reply in (carried(reply, CHANNEL) for reply in replies):
        chunks = _chunks(reply, language)
        for number, chunk in enumerate(chunks, start=1):
            message: Outgoing = {"text": chunk}
            if number == len(chunks):
                if reply.attachment is not None:
                    message["attachment"] = {
                        "kind": reply.attachment.kind.value,
                        "file_id": reply.attachment.file_id,
                    }
                if reply.buttons:
                    message["buttons"] = [
                        [{"text": t(button.label, language), "data": button.data} for button in row]
                        for row in reply.buttons
                    ]
                if reply.ask_contact:
                    message["contact_label"] = t(Msg("telegram.share_phone"), language)
                if reply.document is not None:
                    message["document"] = {
                        "filename": reply.document.filename,
                        "mime_type": reply.document.mime_type,
                        "content": base64.b64encode(reply.document.content).decode("ascii"),
                    }
            messages.append(message)
    return messages


def can_edit(messages: Sequence[Outgoing]) -> bool:
    """Return whether `messages` can replace the pressed message: one plain text message."""
    return (
        len(messages) == 1
        and bool(messages[0]["text"])
        and "document" not in messages[0]
        and "attachment" not in messages[0]
        and "contact_label" not in messages[0]
    )


def inline_markup(message: Outgoing) -> InlineKeyboardMarkup | None:
    """Return the message's buttons as an inline keyboard, or None."""
    rows = message.get("buttons")
    if not rows:
        return None
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(button["text"], callback_data=button["data"]) for button in row]
            for row in rows
        ]
    )


def markup(message: Outgoing) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
    """Return the message's keyboard: a contact request, else its inline buttons."""
    label = message.get("contact_label")
    if label:
        return ReplyKeyboardMarkup(
            [[KeyboardButton(label, request_contact=True)]],
            one_time_keyboard=True,
            resize_keyboard=True,
        )
    return inline_markup(message)


def document_file(message: Outgoing) -> InputFile | None:
    """Return the message's attached file, or None."""
    document = message.get("document")
    if not document:
        return None
    return InputFile(base64.b64decode(document["content"]), filename=document["filename"])
