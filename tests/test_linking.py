"""Account linking end to end: contacts, typed numbers and /logout, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from dataclasses import dataclass

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.console import run_console
from bot.config import Settings
from db.models import ChannelAccount, OutboxMessage, Person, Program
from handlers.choices import reply_text
from handlers.notices import decode_reply
from handlers.types import ChatSettings
from tests.factories import Chat, add_class, add_person, add_unit, link, render

HUNG = "0912000178"  # on the roster, not linked
MAI = "0912000179"  # on the roster, linked to another Telegram account
NAM = "0912000180"  # on the roster, not linked
ADMIN = "0912000900"  # a person marked is_admin
CONFIG_ADMIN = "0912000901"  # an admin by [bot] admins
SETTINGS = ChatSettings(admins=(CONFIG_ADMIN,))
GREETING = "Kính chào đồng chí Nguyễn Văn Hùng (Huyện ủy Yên Thành)!"


@dataclass(frozen=True)
class Roster:
    """Ids of the people the tests use."""

    hung: int
    mai: int
    nam: int
    admin: int
    config_admin: int


@pytest.fixture
async def roster(sessionmaker: async_sessionmaker[AsyncSession]) -> Roster:
    """Insert a few roster people, two admins, one Telegram link and one class."""
    async with sessionmaker() as s, s.begin():
        school = await add_unit(s, "TCT", "Trường Chính trị tỉnh")
        district = await add_unit(s, "YT", "Huyện ủy Yên Thành")
        hung = await add_person(s, HUNG, "Nguyễn Văn Hùng", district)
        mai = await add_person(s, MAI, "Hồ Thị Mai", district)
        nam = await add_person(s, NAM, "Đỗ Văn Nam", district)
        admin = await add_person(s, ADMIN, "Lê Thị Quản", school)
        admin.is_admin = True
        config_admin = await add_person(s, CONFIG_ADMIN, "Phan Văn Trị", school)
        await link(s, mai, "telegram", "mai-old-phone")
        await add_class(
            s, "TC-K45", "Trung cấp lý luận chính trị - hành chính K45",
            program=Program.TRUNG_CAP_LLCT, start=dt.date(2027, 1, 11),
        )  # fmt: skip
        return Roster(hung.id, mai.id, nam.id, admin.id, config_admin.id)


def telegram(sessionmaker: async_sessionmaker[AsyncSession], user_id: str = "tg-1") -> Chat:
    """Return a Telegram chat of `user_id` in a school with two admins."""
    return Chat(sessionmaker, user_id=user_id, channel="telegram", settings=SETTINGS)


async def accounts(sessionmaker: async_sessionmaker[AsyncSession]) -> set[tuple[str, str, int]]:
    """Return every chat account as (channel, external id, person id)."""
    async with sessionmaker() as s:
        rows = (await s.scalars(select(ChannelAccount))).all()
        return {(row.channel, row.external_id, row.person_id) for row in rows}


async def outbox(sessionmaker: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    """Return the queued notices."""
    async with sessionmaker() as s:
        return list((await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def test_start_asks_an_unlinked_chat_for_its_contact(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster
) -> None:
    chat = telegram(sessionmaker)
    replies = await chat.send("/start")
    assert replies[-1].ask_contact
    assert not replies[-1].buttons  # the contact keyboard is the last thing shown
    assert "bấm nút chia sẻ số điện thoại" in render(replies)
    assert "tư cách khách" in render(replies)
    assert "cl:p=1" in chat.data()  # the visitor can still browse
    # A linked person is greeted by name and unit, and asked for nothing.
    mai = telegram(sessionmaker, "mai-old-phone")
    replies = await mai.send("/start")
    assert not any(reply.ask_contact for reply in replies)
    assert "Kính chào đồng chí Hồ Thị Mai (Huyện ủy Yên Thành)!" in render(replies)


@pytest.mark.parametrize("shared", ["84912000178", "+84912000178", "+84 912 000 178"])
async def test_own_contact_links_the_roster_person(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster, shared: str
) -> None:
    chat = telegram(sessionmaker)
    replies = await chat.share_contact(shared)
    text = render(replies)
    assert GREETING in text
    assert "Đã xác nhận số điện thoại của đồng chí" in text
    assert not any(reply.ask_contact for reply in replies)
    assert "cl:p=1;e=1" in chat.data()  # the linked person's menu has "eligible for me"
    assert ("telegram", "tg-1", roster.hung) in await accounts(sessionmaker)
    replies = await chat.send("/start")
    assert GREETING in render(replies)
    assert not any(reply.ask_contact for reply in replies)


async def test_sharing_the_own_contact_again_just_greets(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster
) -> None:
    chat = telegram(sessionmaker)
    await chat.share_contact("84912000178")
    text = render(await chat.share_contact("84912000178"))
    assert text.startswith(GREETING)
    assert "Đã xác nhận" not in text
    assert len(await accounts(sessionmaker)) == 2  # Mai's and Hùng's
    assert await outbox(sessionmaker) == []


@pytest.mark.parametrize("contact_user_id", ["someone-else", None])
async def test_a_contact_that_is_not_the_senders_own_is_refused(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster, contact_user_id: str | None
) -> None:
    chat = telegram(sessionmaker)
    replies = await chat.share_contact("84912000178", user_id=contact_user_id)
    assert "Tôi chỉ nhận số điện thoại của chính đồng chí" in render(replies)
    assert replies[-1].ask_contact
    assert "Nguyễn Văn Hùng" not in render(replies)
    assert await accounts(sessionmaker) == {("telegram", "mai-old-phone", roster.mai)}


@pytest.mark.parametrize(
    ("shared", "shown"),
    [("12025550123", "+12025550123"), ("+1 202 555 0123", "+1 202 555 0123"),
     ("0241234567", "0241234567")],
)  # fmt: skip
async def test_a_foreign_or_landline_number_is_answered_clearly(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster, shared: str, shown: str
) -> None:
    text = render(await telegram(sessionmaker).share_contact(shared))
    assert f"Số {shown} không phải số di động Việt Nam." in text
    assert "xem và tìm các lớp với tư cách khách" in text
    assert len(await accounts(sessionmaker)) == 1


async def test_a_phone_not_on_the_roster_can_browse_but_is_not_linked(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster
) -> None:
    chat = telegram(sessionmaker)
    text = render(await chat.share_contact("84987654321"))
    assert "Số điện thoại 0987654321 chưa có trong danh sách cán bộ của Trường." in text
    assert "văn phòng hoặc bộ phận tổ chức cán bộ của đơn vị" in text
    assert "chưa đăng ký được" in text
    assert not any("e=1" in data for data in chat.data())
    assert "TC-K45" in await chat.say("/classes")
    assert len(await accounts(sessionmaker)) == 1
    assert "bấm nút chia sẻ số điện thoại" in await chat.say("/start")


async def test_a_person_linked_to_another_account_is_not_moved_and_admins_are_told(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster
) -> None:
    chat = telegram(sessionmaker, "tg-2")
    text = render(await chat.share_contact("84912000179"))
    assert "đã được liên kết với một tài khoản khác" in text
    assert "liên hệ Trường Chính trị tỉnh" in text
    assert "Tôi đã báo cho cán bộ quản trị của Trường." in text
    assert "Hồ Thị Mai" not in text
    assert await accounts(sessionmaker) == {("telegram", "mai-old-phone", roster.mai)}
    notices = await outbox(sessionmaker)
    assert {notice.person_id for notice in notices} == {roster.admin, roster.config_admin}
    for notice in notices:
        assert notice.idempotency_key.startswith(f"link-conflict:{roster.mai}:telegram:tg-2")
        assert notice.kind == "linking.conflict"
        reply = decode_reply(notice.payload["reply"])
        notice_text = reply_text(reply, "vi")
        assert "Hồ Thị Mai (0912000179, Huyện ủy Yên Thành)" in notice_text
        assert "tài khoản telegram" in notice_text
    # Trying again refuses again and queues no second notice.
    assert "đã được liên kết" in render(await chat.share_contact("84912000179"))
    assert len(await outbox(sessionmaker)) == 2


async def test_a_conflict_with_no_admin_is_refused_without_notices(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster
) -> None:
    async with sessionmaker() as s, s.begin():
        await s.execute(update(Person).values(is_admin=False))
    chat = Chat(sessionmaker, user_id="tg-2", channel="telegram")
    text = render(await chat.share_contact("84912000179"))
    assert "đã được liên kết với một tài khoản khác" in text
    assert "đã báo" not in text
    assert await outbox(sessionmaker) == []
    assert await accounts(sessionmaker) == {("telegram", "mai-old-phone", roster.mai)}


async def test_the_same_person_on_another_channel_links_too(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster
) -> None:
    chat = Chat(sessionmaker, user_id="zalo-9", channel="zalo", settings=SETTINGS)
    assert "Hồ Thị Mai" in render(await chat.share_contact("84912000179"))
    assert ("zalo", "zalo-9", roster.mai) in await accounts(sessionmaker)


async def test_an_account_sharing_a_new_own_number_moves_to_that_person(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster
) -> None:
    chat = telegram(sessionmaker)
    await chat.share_contact("84912000178")
    assert "Đỗ Văn Nam" in render(await chat.share_contact("84912000180"))
    assert await accounts(sessionmaker) == {
        ("telegram", "mai-old-phone", roster.mai),
        ("telegram", "tg-1", roster.nam),
    }


async def test_two_accounts_sharing_one_contact_at_once_link_one(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster
) -> None:
    chats = [telegram(sessionmaker, f"tg-{n}") for n in range(4)]
    await asyncio.gather(*(chat.share_contact("84912000178") for chat in chats))
    linked = [a for a in await accounts(sessionmaker) if a[2] == roster.hung]
    assert len(linked) == 1
    texts = [render(chat.last) for chat in chats]
    assert sum(GREETING in text for text in texts) == 1
    assert sum("đã được liên kết" in text for text in texts) == 3


async def test_logout_unlinks_and_the_chat_can_still_browse(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster
) -> None:
    chat = telegram(sessionmaker)
    await chat.share_contact("84912000178")
    text = await chat.say("/logout")
    assert "Đã huỷ liên kết tài khoản này" in text
    assert not any("e=1" in data for data in chat.data())
    assert await accounts(sessionmaker) == {("telegram", "mai-old-phone", roster.mai)}
    assert "TC-K45" in await chat.say("/classes")
    assert "bấm nút chia sẻ số điện thoại" in await chat.say("/start")
    assert "Tài khoản này chưa liên kết với hồ sơ cán bộ nào." in await chat.say("/logout")
    # Another person's link is untouched by a stranger's /logout.
    assert await accounts(sessionmaker) == {("telegram", "mai-old-phone", roster.mai)}


@pytest.mark.parametrize("typed", ["0912000178", "+84 912 000 178", "84912000178", "0912.000.178"])
async def test_a_typed_phone_number_asks_for_the_contact_button(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster, typed: str
) -> None:
    chat = telegram(sessionmaker)
    replies = await chat.send(typed)
    assert "Số điện thoại gõ vào không chứng minh được đồng chí là ai." in render(replies)
    assert replies[-1].ask_contact
    assert len(await accounts(sessionmaker)) == 1


async def test_short_numbers_still_search_and_linked_people_are_not_asked(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster
) -> None:
    assert "TC-K45" in await telegram(sessionmaker).say("45")
    mai = telegram(sessionmaker, "mai-old-phone")
    replies = await mai.send("0912000178")
    assert not any(reply.ask_contact for reply in replies)
    assert "không chứng minh được" not in render(replies)


@pytest.mark.parametrize(("hint", "language"), [("en-US", "en"), ("en", "en"), ("fr", "vi")])
async def test_a_new_chat_speaks_the_apps_language(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster, hint: str, language: str
) -> None:
    chat = telegram(sessionmaker)
    chat.language_hint = hint
    replies = await chat.send("/start")
    assert chat.language == language
    if language == "en":
        text = render(replies, "en")
        assert "Hello! You are using the assistant as a visitor" in text
        assert "share-my-phone-number button" in text


async def test_the_hint_does_not_override_a_chosen_language(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster
) -> None:
    chat = telegram(sessionmaker)
    await chat.send("/lang vi")
    chat.language_hint = "en"
    await chat.send("/start")
    assert chat.language == "vi"


async def test_the_console_tells_a_visitor_how_to_start_as_a_roster_person(
    sessionmaker: async_sessionmaker[AsyncSession], roster: Roster
) -> None:
    stdout = io.StringIO()
    status = await run_console(
        sessionmaker,
        Settings(),
        as_phone=None,
        language=None,
        stdin=io.StringIO("0912000178\n"),
        stdout=stdout,
    )
    assert status == 0
    out = stdout.getvalue()
    hint = "(Cửa sổ dòng lệnh không có nút chia sẻ số điện thoại: đồng chí thoát bằng Ctrl-D"
    assert out.count(hint) == 2  # after /start and after the typed number
    assert "--as SỐ_ĐIỆN_THOẠI" in out
    # Started as a roster person, the console asks for nothing.
    stdout = io.StringIO()
    await run_console(
        sessionmaker,
        Settings(),
        as_phone=HUNG,
        language=None,
        stdin=io.StringIO(""),
        stdout=stdout,
    )
    assert hint not in stdout.getvalue()
    assert stdout.getvalue().startswith(GREETING)
