"""Photos and documents in replies: sent with their text on Telegram, a note elsewhere."""

from __future__ import annotations

import pytest

from bot.channels.telegram_render import MAX_CAPTION, can_edit, render_replies
from handlers.attachments import carried
from handlers.choices import reply_text
from handlers.notices import decode_reply, encode_reply
from handlers.types import Attachment, AttachmentKind, Document, Msg, Reply

PHOTO = Attachment(AttachmentKind.PHOTO, "telegram", "AgAC-photo")
PDF = Attachment(AttachmentKind.DOCUMENT, "telegram", "BQAC-doc", "ke-hoach.pdf", "application/pdf")


def announcement(text: str, attachment: Attachment | None) -> Reply:
    return Reply((Msg("broadcast.body", {"text": text}),), attachment=attachment)


def test_a_short_text_is_the_caption_of_its_photo() -> None:
    [message] = render_replies([announcement("Lịch học", PHOTO)], "vi")
    assert message == {
        "text": "Lịch học",
        "attachment": {"kind": "photo", "file_id": "AgAC-photo"},
    }
    assert not can_edit([message])


def test_a_text_longer_than_a_caption_goes_first_then_the_file() -> None:
    text = " ".join(["Nội dung dài."] * 100)
    messages = render_replies([announcement(text, PDF)], "vi")
    assert len(text) > MAX_CAPTION
    assert [m.get("attachment") for m in messages] == [
        None,
        {"kind": "document", "file_id": "BQAC-doc"},
    ]
    assert messages[0]["text"] == text
    assert messages[1]["text"] == ""


def test_a_file_of_another_platform_is_left_out_with_a_note() -> None:
    elsewhere = Attachment(AttachmentKind.DOCUMENT, "zalo", "z-1", "ke-hoach.pdf")
    [message] = render_replies([announcement("Kế hoạch", elsewhere)], "vi")
    assert "attachment" not in message
    assert message["text"] == (
        "Kế hoạch\n📎 (Kèm theo tệp ke-hoach.pdf, nhưng kênh này không gửi được tệp đó.)"
    )
    console = carried(announcement("Lịch học", PHOTO), "console")
    assert console.attachment is None
    assert reply_text(console, "en").endswith(
        "📎 (A photo came with this message, but this channel cannot send it.)"
    )
    assert carried(announcement("Lịch học", PHOTO), "telegram").attachment == PHOTO


def test_a_notice_carries_an_attachment_by_file_id_but_never_a_files_bytes() -> None:
    reply = announcement("Kế hoạch", PDF)
    assert decode_reply(encode_reply(reply)) == reply
    calendar = Reply(
        (Msg("broadcast.body", {"text": "x"}),), document=Document("a.ics", b"x", "text/calendar")
    )
    with pytest.raises(ValueError, match="file id"):
        encode_reply(calendar)
