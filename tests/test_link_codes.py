"""Linking a Zalo account by a one-time code, end to end through dispatch, on both databases.

The code reaches the person on their linked Telegram account (an outbox notice), or a
unit head or admin issues it with /code. Codes expire, are used once, are stored only
hashed, and five wrong codes in a row lock them for a while.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import link_codes
from db.models import ChannelAccount, LinkCode, OutboxMessage, Person
from handlers.types import ChatSettings
from tests.factories import NOW, Chat, add_person, add_unit, link, render

LEARNER = "0912000178"  # linked on Telegram
LONER = "0912000179"  # linked nowhere
HEAD = "0912000175"  # head of Yên Thành
OTHER_HEAD = "0912000300"  # head of another district
ADMIN = "0912000100"
SETTINGS = ChatSettings(admins=(ADMIN,))


@pytest.fixture
async def people(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessionmaker() as s, s.begin():
        school = await add_unit(s, "TCT", "Trường Chính trị tỉnh")
        district = await add_unit(s, "YTH", "Huyện Yên Thành")
        commune = await add_unit(s, "YTH-XA", "Xã Hợp Thành", parent=district)
        other = await add_unit(s, "QL", "Huyện Quỳnh Lưu")
        learner = await add_person(s, LEARNER, "Phạm Thu Trang", district)
        await link(s, learner, "telegram", "tg-trang")
        loner = await add_person(s, LONER, "Đỗ Văn Lẻ", commune)
        head = await add_person(s, HEAD, "Trần Thị Trưởng", district)
        head.is_unit_head = True
        await link(s, head, "telegram", "tg-head")
        other_head = await add_person(s, OTHER_HEAD, "Lê Văn Khác", other)
        other_head.is_unit_head = True
        await link(s, other_head, "telegram", "tg-other")
        admin = await add_person(s, ADMIN, "Lê Thị Quản", school)
        await link(s, admin, "telegram", "tg-admin")
        return {"learner": learner.id, "loner": loner.id, "head": head.id}


def zalo(sessionmaker: async_sessionmaker[AsyncSession], user_id: str = "zl-1") -> Chat:
    """Return a Zalo chat: no contact button, accounts link by code."""
    return Chat(
        sessionmaker, user_id=user_id, channel="zalo", settings=SETTINGS, links_by_code=True
    )


def telegram(sessionmaker: async_sessionmaker[AsyncSession], user_id: str) -> Chat:
    return Chat(sessionmaker, user_id=user_id, channel="telegram", settings=SETTINGS)


async def code_notices(sessionmaker: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sessionmaker() as s:
        stmt = select(OutboxMessage).where(OutboxMessage.kind == "linking.code")
        return list((await s.scalars(stmt.order_by(OutboxMessage.id))).all())


def code_in(notice: OutboxMessage) -> str:
    return str(notice.payload["reply"]["lines"][0]["params"]["code"])


async def zalo_accounts(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessionmaker() as s:
        rows = (
            await s.scalars(select(ChannelAccount).where(ChannelAccount.channel == "zalo"))
        ).all()
        return {row.external_id: row.person_id for row in rows}


def other(code: str) -> str:
    """Return a code that is not `code`."""
    return f"{(int(code) + 1) % 10**6:06d}"


async def test_the_code_goes_to_the_linked_telegram_account_and_links_zalo(
    sessionmaker: async_sessionmaker[AsyncSession], people: dict[str, int]
) -> None:
    chat = zalo(sessionmaker)
    asked = await chat.say("/start")
    assert "gõ số điện thoại di động của mình" in asked
    sent = await chat.say("0912 000 178")
    assert "gửi mã xác nhận gồm 6 chữ số tới tài khoản Telegram" in sent
    [notice] = await code_notices(sessionmaker)
    assert notice.person_id == people["learner"]
    assert notice.urgent is True
    assert notice.expires_at == NOW + link_codes.SELF_LIFETIME
    code = code_in(notice)
    assert re.fullmatch(r"\d{6}", code)
    # Only a salted hash is stored.
    async with sessionmaker() as s:
        [row] = (await s.scalars(select(LinkCode))).all()
        assert code not in row.code_hash
        assert row.external_id == "zl-1"
    wrong = await chat.say(other(code))
    assert "Mã không đúng. Đồng chí còn 4 lần thử" in wrong
    assert await zalo_accounts(sessionmaker) == {}
    linked = await chat.say(code[:3] + " " + code[3:])
    assert "Kính chào đồng chí Phạm Thu Trang (Huyện Yên Thành)!" in linked
    assert "Đã xác nhận số điện thoại" in linked
    assert await zalo_accounts(sessionmaker) == {"zl-1": people["learner"]}
    # Telegram's link is untouched: the person is linked on both channels now.
    async with sessionmaker() as s:
        channels = set((await s.scalars(
            select(ChannelAccount.channel).where(ChannelAccount.person_id == people["learner"])
        )).all())  # fmt: skip
    assert channels == {"telegram", "zalo"}


async def test_a_used_code_does_not_work_again(
    sessionmaker: async_sessionmaker[AsyncSession], people: dict[str, int]
) -> None:
    chat = zalo(sessionmaker)
    await chat.say(LEARNER)
    code = code_in((await code_notices(sessionmaker))[0])
    await chat.say(code)
    logged_out = await chat.say("/logout")
    assert "gõ lại số điện thoại rồi nhập mã xác nhận" in logged_out
    assert "chia sẻ" not in logged_out
    assert await zalo_accounts(sessionmaker) == {}
    # The same code typed again after the phone: refused; a new one is sent instead.
    chat.now = NOW + dt.timedelta(minutes=2)
    await chat.say(LEARNER)
    reused = await chat.say(code)
    assert "Mã không đúng" in reused
    assert await zalo_accounts(sessionmaker) == {}
    assert len(await code_notices(sessionmaker)) == 2


async def test_a_code_expires(
    sessionmaker: async_sessionmaker[AsyncSession], people: dict[str, int]
) -> None:
    chat = zalo(sessionmaker)
    await chat.say(LEARNER)
    code = code_in((await code_notices(sessionmaker))[0])
    chat.now = NOW + link_codes.SELF_LIFETIME + dt.timedelta(seconds=1)
    late = await chat.say(f"/code {code}")  # while the chat waits, /code CODE enters it
    assert "Không có mã xác nhận nào còn hiệu lực" in late
    assert await zalo_accounts(sessionmaker) == {}


async def test_asking_again_within_a_minute_sends_no_second_code(
    sessionmaker: async_sessionmaker[AsyncSession], people: dict[str, int]
) -> None:
    chat = zalo(sessionmaker)
    await chat.say(LEARNER)
    again = await chat.say(LEARNER)
    assert "cách đây chưa đầy một phút" in again
    assert len(await code_notices(sessionmaker)) == 1
    # A minute later a new code replaces the first, which stops working.
    first = code_in((await code_notices(sessionmaker))[0])
    chat.now = NOW + link_codes.RESEND_AFTER + dt.timedelta(seconds=1)
    await chat.say(LEARNER)
    notices = await code_notices(sessionmaker)
    assert len(notices) == 2
    second = code_in(notices[1])
    if first != second:
        assert "Mã không đúng" in await chat.say(first)
    assert "Đã xác nhận số điện thoại" in await chat.say(second)


async def test_wrong_codes_lock_linking_for_a_while_even_for_the_right_code(
    sessionmaker: async_sessionmaker[AsyncSession], people: dict[str, int]
) -> None:
    head = telegram(sessionmaker, "tg-head")
    issued = await head.say(f"/code {LONER}")
    code = re.search(r": (\d{6})", issued)
    assert code is not None
    chat = zalo(sessionmaker)
    assert "lãnh đạo đơn vị" in await chat.say(LONER)
    for left in (4, 3, 2, 1):
        assert f"còn {left} lần thử" in await chat.say(other(code[1]))
    locked = await chat.say(other(code[1]))
    assert "tạm khoá đến 01:15 01/12/2026" in locked
    assert "tạm khoá" in await chat.say(code[1])
    assert await zalo_accounts(sessionmaker) == {}
    # Another account cannot go round the lock either.
    stranger = zalo(sessionmaker, "zl-2")
    await stranger.say(LONER)
    assert "tạm khoá" in await stranger.say(code[1])
    chat.now = NOW + link_codes.LOCK + dt.timedelta(seconds=1)
    assert "Đã xác nhận số điện thoại" in await chat.say(code[1])
    assert await zalo_accounts(sessionmaker) == {"zl-1": people["loner"]}


async def test_a_unit_head_issues_a_code_for_a_person_of_the_units_under_them(
    sessionmaker: async_sessionmaker[AsyncSession], people: dict[str, int]
) -> None:
    head = telegram(sessionmaker, "tg-head")
    issued = await head.say("/code +84 912 000 179")
    assert "Mã liên kết Zalo cho đồng chí Đỗ Văn Lẻ (0912000179)" in issued
    assert "Hiệu lực đến 01:00 02/12/2026" in issued
    code = re.search(r": (\d{6})", issued)
    assert code is not None
    async with sessionmaker() as s:
        [row] = (await s.scalars(select(LinkCode))).all()
        assert (row.issued_by_id, row.external_id, row.person_id) == (
            people["head"],
            None,
            people["loner"],
        )
    chat = zalo(sessionmaker)
    await chat.say(LONER)
    assert "Kính chào đồng chí Đỗ Văn Lẻ" in await chat.say(code[1])
    # Used once: another account typing the same phone and code gets nothing.
    stranger = zalo(sessionmaker, "zl-2")
    assert "đã được liên kết với một tài khoản khác" in await stranger.say(LONER)
    assert "Không có mã xác nhận nào còn hiệu lực" in await stranger.say(code[1])
    assert await zalo_accounts(sessionmaker) == {"zl-1": people["loner"]}


@pytest.mark.parametrize(
    ("who", "argument", "expected"),
    [
        ("tg-other", LONER, "không thuộc đơn vị do đồng chí phụ trách"),
        ("tg-trang", LONER, "Chỉ lãnh đạo đơn vị và cán bộ quản trị"),
        ("tg-head", "", "Cách dùng: /code SỐ_ĐIỆN_THOẠI"),
        ("tg-head", "abc", "Cách dùng: /code SỐ_ĐIỆN_THOẠI"),
        ("tg-head", "0987654321", "chưa có trong danh sách cán bộ"),
    ],
)
async def test_code_command_refusals(
    sessionmaker: async_sessionmaker[AsyncSession],
    people: dict[str, int],
    who: str,
    argument: str,
    expected: str,
) -> None:
    text = await telegram(sessionmaker, who).say(f"/code {argument}".strip())
    assert expected in text
    async with sessionmaker() as s:
        assert (await s.scalars(select(LinkCode))).all() == []


async def test_an_admin_issues_codes_for_anyone_and_the_function_serves_the_web_admin(
    sessionmaker: async_sessionmaker[AsyncSession], people: dict[str, int]
) -> None:
    issued = await telegram(sessionmaker, "tg-admin").say(f"/code {LONER}")
    assert "Mã liên kết Zalo cho đồng chí Đỗ Văn Lẻ" in issued
    async with sessionmaker() as s, s.begin():
        made = await link_codes.issue_for_person(s, people["learner"], issued_by_id=None, now=NOW)
    assert made.expires_at == NOW + link_codes.STAFF_LIFETIME
    chat = zalo(sessionmaker)
    await chat.say(LEARNER)  # also sends a code to Telegram; the issued one works too
    assert "Kính chào đồng chí Phạm Thu Trang" in await chat.say(made.code)


async def test_a_person_linked_to_another_zalo_account_is_not_moved(
    sessionmaker: async_sessionmaker[AsyncSession], people: dict[str, int]
) -> None:
    async with sessionmaker() as s, s.begin():
        person = await s.get(Person, people["learner"])
        assert person is not None
        await link(s, person, "zalo", "zl-old")
    text = await zalo(sessionmaker).say(LEARNER)
    assert "đã được liên kết với một tài khoản khác" in text
    assert await code_notices(sessionmaker) == []


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("0987654321", "chưa có trong danh sách cán bộ"), ("01234567890", "không phải số di động")],
)
async def test_a_number_not_on_the_roster_or_not_a_mobile(
    sessionmaker: async_sessionmaker[AsyncSession],
    people: dict[str, int],
    typed: str,
    expected: str,
) -> None:
    assert expected in await zalo(sessionmaker).say(typed)
    assert await code_notices(sessionmaker) == []


async def test_telegram_still_refuses_a_typed_phone_and_links_by_contact(
    sessionmaker: async_sessionmaker[AsyncSession], people: dict[str, int]
) -> None:
    chat = telegram(sessionmaker, "tg-new")
    assert "không chứng minh được" in await chat.say(LONER)
    assert await code_notices(sessionmaker) == []
    replies = await chat.share_contact("84912000179")
    assert "Đã xác nhận số điện thoại" in render(replies)


async def test_the_zalo_chat_keeps_waiting_for_the_code_across_other_questions(
    sessionmaker: async_sessionmaker[AsyncSession], people: dict[str, int]
) -> None:
    chat = zalo(sessionmaker)
    await chat.say(LEARNER)
    code = code_in((await code_notices(sessionmaker))[0])
    # Words are searched, not taken for a code; the code still works after.
    await chat.say("trung cap")
    assert "Đã xác nhận số điện thoại" in await chat.say(code)


async def test_two_accounts_typing_one_code_at_once_link_only_one(
    sessionmaker: async_sessionmaker[AsyncSession], people: dict[str, int]
) -> None:
    issued = await telegram(sessionmaker, "tg-head").say(f"/code {LONER}")
    code = re.search(r": (\d{6})", issued)
    assert code is not None
    chats = [zalo(sessionmaker, f"zl-{number}") for number in range(4)]
    for chat in chats:
        assert "lãnh đạo đơn vị" in await chat.say(LONER)
    answers = await asyncio.gather(*(chat.say(code[1]) for chat in chats))
    assert sum("Đã xác nhận số điện thoại" in answer for answer in answers) == 1
    assert len(await zalo_accounts(sessionmaker)) == 1
