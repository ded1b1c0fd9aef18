"""The Telegram channel in polling mode: the real PTB Application against a fake Bot API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import DatabaseSettings, Settings, TelegramSettings, WebSettings
from db.models import ChannelAccount, InboxStatus
from tests.factories import add_person, add_unit
from tests.fake_bot_api import (
    FakeBotApi,
    callback_update,
    member_update,
    text_update,
)
from tests.telegram_support import fake_bot_api, inbox_rows, running, settings_for, wait_status


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def test_start_is_answered_in_vietnamese(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(text_update(api.next_update_id(), "/start"))
        sent, ask = await api.wait_for("sendMessage", count=2)
    assert sent.params["chat_id"] == 111
    assert "Kính chào đồng chí!" in sent.params["text"]
    assert sent.params["reply_markup"]["inline_keyboard"]
    # A chat not yet linked is asked for its phone with Telegram's contact button.
    [[button]] = ask.params["reply_markup"]["keyboard"]
    assert button["request_contact"] is True
    assert "số điện thoại" in ask.params["text"]
    [row] = await inbox_rows(sessionmaker)
    assert row.status == InboxStatus.ANSWERED
    assert api.calls_of("deleteWebhook")


async def test_a_new_chat_starts_in_the_users_telegram_language(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(text_update(api.next_update_id(), "/start", language_code="en-US"))
        [sent] = await api.wait_for("sendMessage")
        await api.inject(text_update(api.next_update_id(), "/help", user_id=222))
        await api.wait_for("sendMessage", lambda p: p["chat_id"] == 222)
    assert "Here is what I can do for you" in sent.params["text"]
    [vi] = [c for c in api.calls_of("sendMessage") if c.params["chat_id"] == 222]
    assert "Here is what I can do" not in vi.params["text"]


async def test_the_command_menu_is_published_in_vietnamese_and_english(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with running(sessionmaker, settings_for(api, database_url), api):
        pass
    vi, en = api.calls_of("setMyCommands")
    assert "language_code" not in vi.params
    assert en.params["language_code"] == "en"
    names = [command["command"] for command in vi.params["commands"]]
    assert names == [
        "start",
        "classes",
        "search",
        "my",
        "help",
        "lang",
        "logout",
        "unit",
        "settings",
    ]
    descriptions = {c["command"]: c["description"] for c in en.params["commands"]}
    assert "unit heads" in descriptions["unit"]
    assert vi.params["commands"][0]["description"] != en.params["commands"][0]["description"]


async def test_a_button_press_is_answered_and_edits_the_pressed_message(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(callback_update(api.next_update_id(), "hp", message_id=4242))
        [edit] = await api.wait_for("editMessageText")
        [answered] = await api.wait_for("answerCallbackQuery")
    assert edit.params["message_id"] == 4242
    assert edit.params["chat_id"] == 111
    assert edit.params["reply_markup"]["inline_keyboard"]
    assert answered.params["callback_query_id"].startswith("cq")
    assert api.calls_of("sendMessage") == []


async def test_an_edit_that_fails_is_sent_as_a_new_message(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    api.fail("editMessageText", 400, "Bad Request: message can't be edited")
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(callback_update(api.next_update_id(), "hp"))
        [sent] = await api.wait_for("sendMessage")
    assert sent.params["reply_markup"]["inline_keyboard"]
    await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)


async def test_an_edit_to_the_same_text_sends_no_duplicate(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    api.fail_not_modified()
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(callback_update(api.next_update_id(), "hp"))
        await api.wait_for("editMessageText")
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)
    assert api.calls_of("sendMessage") == []


async def test_a_stale_or_forged_button_is_answered_politely(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(callback_update(api.next_update_id(), "zz:\u00ff' OR 1=1"))
        await api.wait_for("answerCallbackQuery")
        [edit] = await api.wait_for("editMessageText")
    assert "Nút này không còn dùng được nữa" in edit.params["text"]


async def test_an_update_delivered_twice_is_handled_once(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    update = text_update(api.next_update_id(), "/help")
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(update)
        await api.wait_for("sendMessage")
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)
        await api.inject(update, redelivery=True)
        await api.inject(text_update(api.next_update_id(), "/classes"))
        await api.wait_for("sendMessage", count=2)
    texts = [call.params["text"] for call in api.calls_of("sendMessage")]
    assert len(texts) == 2
    assert "Hiện chưa có lớp nào sắp mở" in texts[1]
    assert len(await inbox_rows(sessionmaker)) == 2


async def test_blocking_and_unblocking_the_bot_marks_the_account(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        person = await add_person(session, "0912000178", "Phạm Thu Trang", unit)
        session.add(ChannelAccount(person_id=person.id, channel="telegram", external_id="111"))

    async def reachable() -> bool:
        async with sessionmaker() as session:
            return bool(await session.scalar(select(ChannelAccount.reachable)))

    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(member_update(api.next_update_id(), "kicked"))
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)
        assert not await reachable()
        await api.inject(member_update(api.next_update_id(), "member"))
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 2)
        assert await reachable()
    assert api.calls_of("sendMessage") == []


async def test_group_chats_get_a_pointer_to_the_private_chat(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    group = {"id": -100123, "type": "supergroup", "title": "Lớp K45"}
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(text_update(api.next_update_id(), "xin chào", chat=group))
        await api.inject(text_update(api.next_update_id(), "/classes@bot", chat=group))
        [sent] = await api.wait_for("sendMessage")
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 2)
    assert sent.params["chat_id"] == -100123
    assert "trò chuyện riêng" in sent.params["text"]


async def test_short_polling_pauses_between_empty_answers(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    settings = Settings(
        database=DatabaseSettings(url=SecretStr(database_url)),
        telegram=TelegramSettings(
            token=SecretStr(api.token), base_url=api.base_url, poll_timeout=0
        ),
        # Any free port for the web admin: the default 8090 may be another run's.
        web=WebSettings(listen_port=0),
    )
    async with running(sessionmaker, settings, api):
        await api.inject(text_update(api.next_update_id(), "/help"))
        await api.wait_for("sendMessage")
        await asyncio.sleep(1.5)
    # One empty getUpdates a second, not hundreds.
    assert len(api.calls_of("getUpdates")) <= 5
