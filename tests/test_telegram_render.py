"""Rendering replies for Telegram: long texts split at lines, buttons, contact, files."""

from __future__ import annotations

import base64

import pytest

from bot.channels.telegram_render import (
    MAX_TEXT,
    can_edit,
    document_file,
    markup,
    render_replies,
    split_text,
    text_length,
)
from handlers.types import Button, Document, Msg, Reply


def test_short_text_is_one_message() -> None:
    assert split_text("a\nb") == ["a\nb"]


def test_long_text_splits_at_line_boundaries_under_the_limit() -> None:
    lines = [f"{n:04d} Lớp bồi dưỡng kỹ năng lãnh đạo, quản lý" for n in range(300)]
    chunks = split_text("\n".join(lines))
    assert len(chunks) > 1
    assert all(text_length(chunk) <= MAX_TEXT for chunk in chunks)
    assert "\n".join(chunks).split("\n") == lines


def test_a_line_longer_than_the_limit_is_cut_at_spaces() -> None:
    words = " ".join(["trung cấp"] * 1000)
    chunks = split_text(words, limit=100)
    assert all(text_length(chunk) <= 100 for chunk in chunks)
    assert " ".join(chunks) == words


def test_characters_outside_the_bmp_count_twice() -> None:
    chunks = split_text("📚" * 3000)
    assert all(text_length(chunk) <= MAX_TEXT for chunk in chunks)
    assert "".join(chunks) == "📚" * 3000


@pytest.mark.parametrize("limit", [10, 4096])
def test_empty_lines_between_paragraphs_survive_within_a_chunk(limit: int) -> None:
    assert split_text("abc\n\ndef", limit=limit) == ["abc\n\ndef"]


def test_buttons_ride_on_the_last_part_of_a_long_reply() -> None:
    long = Msg("start.visitor")
    reply = Reply(lines=(long,) * 40, buttons=((Button(Msg("menu.search"), "sq"),),))
    messages = render_replies([reply], "vi")
    assert len(messages) > 1
    assert "buttons" not in messages[0]
    assert [[button["data"] for button in row] for row in messages[-1]["buttons"]] == [["sq"]]
    assert not can_edit(messages)


def test_contact_request_is_a_one_time_keyboard_button() -> None:
    [message] = render_replies([Reply(lines=(Msg("start.intro"),), ask_contact=True)], "en")
    keyboard = markup(message)
    data = keyboard.to_dict() if keyboard else {}
    assert data["one_time_keyboard"] is True
    [[button]] = data["keyboard"]
    assert button == {"text": "📱 Share my phone number", "request_contact": True}
    assert not can_edit([message])


def test_document_survives_the_json_round_trip() -> None:
    document = Document("lop.ics", b"BEGIN:VCALENDAR\r\n", "text/calendar")
    [message] = render_replies([Reply(lines=(Msg("start.intro"),), document=document)], "vi")
    assert base64.b64decode(message["document"]["content"]) == document.content
    file = document_file(message)
    assert file is not None
    assert file.filename == "lop.ics"
