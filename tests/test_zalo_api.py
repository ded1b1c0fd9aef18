"""The Zalo Bot API client over real HTTP against the fake server, and Zalo's rendering."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.channels.zalo import render_replies
from bot.channels.zalo_api import ZaloApiError, ZaloBot, ZaloNetworkError, unwrap_update
from handlers.types import Button, Document, Msg, Reply
from tests.fake_zalo_api import FakeZaloApi, fake_zalo_api, text_update
from tests.telegram_support import free_port


@pytest.fixture
async def api() -> AsyncIterator[FakeZaloApi]:
    async with fake_zalo_api() as api:
        yield api


@pytest.fixture
async def bot(api: FakeZaloApi) -> AsyncIterator[ZaloBot]:
    client = ZaloBot(api.token, api.base_url)
    await client.start()
    yield client
    await client.close()


async def test_get_me_and_the_webhook_methods(api: FakeZaloApi, bot: ZaloBot) -> None:
    assert (await bot.get_me())["account_name"] == "bot.TruongChinhTri"
    await bot.set_webhook("https://bot.example.org/zalo", "secret-123")
    assert (await bot.get_webhook_info())["url"] == "https://bot.example.org/zalo"
    # While a webhook is set, polling is refused; deleting it lets polling work.
    with pytest.raises(ZaloApiError):
        await bot.get_updates(1)
    await bot.delete_webhook()
    assert (await bot.get_webhook_info())["url"] == ""
    with pytest.raises(ZaloApiError) as short:
        await bot.set_webhook("https://bot.example.org/zalo", "short")
    assert short.value.code == 400


async def test_get_updates_gives_one_update_per_call_and_nothing_on_408(
    api: FakeZaloApi, bot: ZaloBot
) -> None:
    started = time.monotonic()
    assert await bot.get_updates(1) == []
    assert time.monotonic() - started >= 0.9  # it long-polled
    await api.inject(text_update("một", message_id="m1"))
    await api.inject(text_update("hai", message_id="m2"))
    [first] = await bot.get_updates(1)
    [second] = await bot.get_updates(1)
    assert (first["message"]["text"], second["message"]["text"]) == ("một", "hai")
    assert [call.params["timeout"] for call in api.calls_of("getUpdates")] == ["1", "1", "1"]
    # A 408 in the body of an HTTP 200 is "nothing came" too.
    api.fail("getUpdates", 408, "Request timeout", status=200)
    assert await bot.get_updates(1) == []


async def test_errors_carry_zalos_code_and_never_the_token(api: FakeZaloApi, bot: ZaloBot) -> None:
    with pytest.raises(ZaloApiError) as long_text:
        await bot.send_message("u1", "x" * 2001)
    assert long_text.value.code == 400
    api.fail("sendMessage", 429, "Too Many Requests", retry_after=7)
    with pytest.raises(ZaloApiError) as throttled:
        await bot.send_message("u1", "xin chào")
    assert (throttled.value.code, throttled.value.retry_after) == (429, 7.0)
    wrong = ZaloBot("999:wrong-token", api.base_url)
    with pytest.raises(ZaloApiError) as refused:
        await wrong.get_me()
    await wrong.close()
    assert refused.value.code == 401
    gone = ZaloBot(api.token, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ZaloNetworkError) as unreachable:
        await gone.get_me()
    await gone.close()
    assert api.token not in str(unreachable.value)


async def test_photos_and_typing(api: FakeZaloApi, bot: ZaloBot) -> None:
    sent = await bot.send_photo("u1", "https://placehold.co/600x400", "Lịch học")
    assert sent["message_id"]
    await bot.send_chat_action("u1")
    assert api.calls_of("sendPhoto")[0].params["caption"] == "Lịch học"
    assert api.calls_of("sendChatAction")[0].params == {"chat_id": "u1", "action": "typing"}


async def test_the_fake_reads_form_bodies_too(api: FakeZaloApi) -> None:
    url = f"{api.base_url}/bot{api.token}/sendMessage"
    async with (
        aiohttp.ClientSession() as client,
        client.post(url, data={"chat_id": "u9", "text": "gửi bằng form"}) as response,
    ):
        assert (await response.json())["ok"] is True
    assert api.texts_to("u9") == ["gửi bằng form"]


def test_updates_are_read_bare_or_in_the_envelope() -> None:
    update = text_update("chào", message_id="m1")
    assert unwrap_update(update) == update
    assert unwrap_update({"ok": True, "result": update}) == update
    assert unwrap_update({"ok": False, "error_code": 408}) is None
    assert unwrap_update({"event_name": "message.text.received"}) is None
    assert unwrap_update([update]) is None


def test_long_replies_are_split_at_lines_within_2000_characters() -> None:
    lines = tuple(Msg("linking.not_linked") for _ in range(60))
    reply = Reply(lines=lines, buttons=((Button(Msg("menu.upcoming"), "cl:p=1"),),))
    messages = render_replies([reply], "vi")
    assert len(messages) > 1
    assert all(len(message["text"]) <= 2000 for message in messages)
    assert all(not message["text"].startswith("\n") for message in messages)
    # The choices and how to answer come last.
    assert messages[-1]["text"].endswith("  1. Lớp sắp mở\nTrả lời 1 (hoặc gõ tên lựa chọn).")


def test_a_file_cannot_go_over_zalo_and_the_reply_says_so() -> None:
    reply = Reply(
        lines=(Msg("start.intro"),),
        document=Document("KN-01.ics", b"BEGIN:VCALENDAR", "text/calendar"),
    )
    [message] = render_replies([reply], "vi")
    assert "không gửi được tệp lịch KN-01.ics" in message["text"]
