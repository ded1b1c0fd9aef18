"""Whole conversations on Zalo over the real client and the fake Zalo Bot API (polling).

Zalo has no buttons: every choice is a numbered list, answered by typing its number or
its words (without diacritics too). The handlers are the same as Telegram's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import bot.channels.inbox_worker as inbox_worker
import bot.channels.zalo as zalo_channel
from bot import metrics
from db.models import (
    ChannelAccount,
    InboundUpdate,
    InboxStatus,
    OutboxMessage,
    Registration,
    RegistrationStatus,
)
from tests.factories import add_class, add_person, add_unit, link
from tests.fake_zalo_api import FakeZaloApi, fake_zalo_api, text_update
from tests.telegram_support import in_days
from tests.zalo_support import ZaloUser, running_zalo, wait_answered, zalo_settings

LEARNER = "zalo-learner-1"


@pytest.fixture
async def api() -> AsyncIterator[FakeZaloApi]:
    async with fake_zalo_api() as api:
        yield api


def number_of(text: str, label: str) -> str:
    """Return the number under which a choice containing `label` is listed."""
    for number, shown in re.findall(r"^\s+(\d+)\. (.+)$", text, flags=re.MULTILINE):
        if label in shown:
            return str(number)
    raise AssertionError(f"no choice {label!r} in:\n{text}")


async def seed(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Insert a learner linked on Zalo and one upcoming class; return the class id."""
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        person = await add_person(session, "0912000178", "Phạm Thu Trang", unit)
        await link(session, person, "zalo", LEARNER)
        klass = await add_class(
            session, "KN-01", "Kỹ năng soạn thảo văn bản", start=in_days(30), capacity=5
        )
        return klass.id


async def registrations(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessionmaker() as session:
        return [r.status.value for r in (await session.scalars(select(Registration))).all()]


async def test_registering_by_typing_numbers(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await seed(sessionmaker)
    user = ZaloUser(api, sessionmaker, LEARNER)
    async with running_zalo(sessionmaker, zalo_settings(api, database_url), api):
        greeting = await user.say("/start")
        assert "Kính chào đồng chí Phạm Thu Trang (Huyện Yên Thành)!" in greeting
        assert "  1. Lớp sắp mở" in greeting
        assert re.search(r"Trả lời một số từ 1 đến \d+|Trả lời 1, 2, 3 hoặc 4", greeting)
        listed = await user.say(number_of(greeting, "Lớp sắp mở"))
        assert "KN-01" in listed
        detail = await user.say(number_of(listed, "KN-01"))
        assert "Kỹ năng soạn thảo văn bản" in detail
        asked = await user.say(number_of(detail, "Đăng ký"))
        assert "KN-01" in asked
        done = await user.say(number_of(asked, "Xác nhận đăng ký"))
        assert "KN-01" in done
        assert await registrations(sessionmaker) == [RegistrationStatus.CONFIRMED.value]
        # A number no choice has is answered, not guessed.
        assert "Không có lựa chọn số 99" in await user.say("99")
    # No edits on Zalo: every answer is a new message.
    assert {call.method for call in api.calls} <= {
        "getMe",
        "deleteWebhook",
        "getUpdates",
        "sendMessage",
        "sendChatAction",
    }
    assert all(len(str(call.params["text"])) <= 2000 for call in api.calls_of("sendMessage"))


async def test_registering_by_typing_the_choices_words_without_diacritics(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await seed(sessionmaker)
    user = ZaloUser(api, sessionmaker, LEARNER)
    async with running_zalo(sessionmaker, zalo_settings(api, database_url), api):
        listed = await user.say("lop sap mo")
        assert "KN-01" in listed
        detail = await user.say("kn-01")
        assert "Kỹ năng soạn thảo văn bản" in detail
        asked = await user.say("dang ky")
        assert "Xác nhận đăng ký" in asked
        done = await user.say("xac nhan dang ky")
        assert "KN-01" in done
        mine = await user.say("/my")
        assert "KN-01" in mine
    assert await registrations(sessionmaker) == [RegistrationStatus.CONFIRMED.value]


async def test_a_message_delivered_twice_is_answered_once(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await seed(sessionmaker)
    async with running_zalo(sessionmaker, zalo_settings(api, database_url), api):
        update = text_update("/help", user_id=LEARNER, message_id="dup-1")
        await api.inject(update)
        await wait_answered(sessionmaker, "dup-1")
        await api.inject(update)
        await api.inject(text_update("/help", user_id=LEARNER, message_id="after-1"))
        await wait_answered(sessionmaker, "after-1")
    assert len(api.texts_to(LEARNER)) == 2
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(InboundUpdate)) == 2


async def test_pictures_stickers_and_groups(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await seed(sessionmaker)
    async with running_zalo(sessionmaker, zalo_settings(api, database_url), api):
        # A sticker is answered with what the bot can do.
        await api.inject(
            text_update("", user_id=LEARNER, message_id="s1", event="message.sticker.received")
        )
        await wait_answered(sessionmaker, "s1")
        [helped] = api.texts_to(LEARNER)
        assert "/classes" in helped
        # In a group, a command gets a pointer to the private chat; other messages nothing.
        group = {"user_id": LEARNER, "chat_id": "group-1", "chat_type": "GROUP"}
        await api.inject(text_update("/classes", message_id="g1", **group))
        await api.inject(text_update("xin chào cả nhà", message_id="g2", **group))
        await wait_answered(sessionmaker, "g2")
    assert api.texts_to("group-1") == [
        "Tôi chỉ trò chuyện riêng với từng người: đồng chí vui lòng nhắn tin trực tiếp cho tôi."
    ]


async def test_a_visitor_is_asked_to_type_the_phone_number(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await seed(sessionmaker)
    user = ZaloUser(api, sessionmaker, "zalo-stranger")
    async with running_zalo(sessionmaker, zalo_settings(api, database_url), api):
        text = await user.say("/start")
    assert "gõ số điện thoại di động của mình" in text
    assert "chia sẻ số điện thoại" not in text  # no contact button on Zalo


async def test_polling_goes_on_after_server_errors_and_a_too_long_text_is_split(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        person = await add_person(session, "0912000178", "Phạm Thu Trang", unit)
        await link(session, person, "zalo", LEARNER)
        for number in range(1, 40):
            await add_class(
                session,
                f"KN-{number:02d}",
                "Bồi dưỡng kỹ năng lãnh đạo, quản lý cấp phòng và tương đương " * 2,
                start=in_days(10 + number),
            )
    api.fail("getUpdates", 502, "Bad Gateway")
    user = ZaloUser(api, sessionmaker, LEARNER)
    async with running_zalo(sessionmaker, zalo_settings(api, database_url), api):
        await user.say("/classes")
    assert len(api.calls_of("getUpdates")) >= 2
    sent = [str(call.params["text"]) for call in api.calls_of("sendMessage")]
    assert sent
    assert all(len(text) <= 2000 for text in sent)


async def test_replies_that_cannot_be_sent_are_retried_and_a_blocked_user_is_unreachable(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await seed(sessionmaker)
    api.fail("sendMessage", 500, "Internal Server Error")
    async with running_zalo(sessionmaker, zalo_settings(api, database_url), api):
        await api.inject(text_update("/help", user_id=LEARNER, message_id="r1"))
        await wait_answered(sessionmaker, "r1", within=10)
        api.fail("sendMessage", 403, "User has blocked the bot")
        await api.inject(text_update("/help", user_id=LEARNER, message_id="r2"))
        await wait_answered(sessionmaker, "r2")
    async with sessionmaker() as session:
        rows = (await session.scalars(select(InboundUpdate).order_by(InboundUpdate.id))).all()
        assert [row.status for row in rows] == [InboxStatus.ANSWERED, InboxStatus.ANSWERED]
        account = await session.scalar(
            select(ChannelAccount).where(ChannelAccount.channel == "zalo")
        )
        assert account is not None
        assert account.reachable is False


async def test_updates_replies_refusals_and_429s_are_counted_in_the_metrics(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    def count(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, {"channel": "zalo", **labels}) or 0.0

    counters = {
        "handled": ("trainingbot_updates_handled_total", {"outcome": "handled"}),
        "latency": ("trainingbot_handler_seconds_count", {}),
        "sent": ("trainingbot_messages_sent_total", {"kind": "reply"}),
        "failed": ("trainingbot_messages_failed_total", {"kind": "reply"}),
        "throttled": ("trainingbot_rate_limited_total", {}),
    }
    before = {key: count(name, **labels) for key, (name, labels) in counters.items()}
    await seed(sessionmaker)
    async with running_zalo(sessionmaker, zalo_settings(api, database_url), api):
        await api.inject(text_update("/help", user_id=LEARNER, message_id="m1"))
        await wait_answered(sessionmaker, "m1")
        api.fail("sendMessage", 429, "Too Many Requests", retry_after=1)
        await api.inject(text_update("/help", user_id=LEARNER, message_id="m2"))
        await wait_answered(sessionmaker, "m2", within=10)
        api.fail("sendMessage", 500, "Internal Server Error")
        await api.inject(text_update("/help", user_id=LEARNER, message_id="m3"))
        await wait_answered(sessionmaker, "m3", within=10)
    async with sessionmaker() as session:
        kept = [len(row.replies or []) for row in (await session.scalars(select(InboundUpdate)))]
    after = {key: count(name, **labels) for key, (name, labels) in counters.items()}
    grown = {key: after[key] - before[key] for key in counters}
    assert grown == {"handled": 3, "latency": 3, "sent": sum(kept), "failed": 1, "throttled": 1}


async def wait_status(
    sessionmaker: async_sessionmaker[AsyncSession], message_id: str, status: InboxStatus
) -> InboundUpdate:
    """Wait until the update with `message_id` has `status`; return its row."""
    for _ in range(500):
        async with sessionmaker() as session:
            row = await session.scalar(
                select(InboundUpdate).where(InboundUpdate.update_key == message_id)
            )
        if row is not None and row.status == status:
            return row
        await asyncio.sleep(0.01)
    raise AssertionError(f"zalo message {message_id} never {status}")


async def test_a_reply_refused_for_good_fails_at_once_and_a_used_up_quota_tells_the_admins(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await seed(sessionmaker)
    async with sessionmaker() as session, session.begin():
        school = await add_unit(session, "TCT", "Trường Chính trị tỉnh")
        admin = await add_person(session, "0912000100", "Lê Thị Quản", school)
        admin.is_admin = True
    async with running_zalo(sessionmaker, zalo_settings(api, database_url), api):
        api.fail("sendMessage", 400, "Bad Request: text is invalid")
        await api.inject(text_update("/help", user_id=LEARNER, message_id="p1"))
        refused = await wait_status(sessionmaker, "p1", InboxStatus.FAILED)
        api.fail("sendMessage", 429, "Monthly message quota exceeded")
        await api.inject(text_update("/help", user_id=LEARNER, message_id="q1"))
        quota = await wait_status(sessionmaker, "q1", InboxStatus.FAILED)
        await api.inject(text_update("/help", user_id=LEARNER, message_id="after-1"))
        await wait_answered(sessionmaker, "after-1")
    # Neither refusal is tried again (one call each); the chat goes on.
    assert len(api.calls_of("sendMessage")) == 3
    assert (refused.attempts, refused.last_error) == (1, "400 Bad Request: text is invalid")
    assert (quota.attempts, (quota.last_error or "")[:10]) == (1, "quota: 429")
    async with sessionmaker() as session:
        [alert] = (await session.scalars(select(OutboxMessage))).all()
    assert (alert.person_id, alert.kind, alert.urgent) == (admin.id, "channel.quota", True)


async def test_a_message_that_keeps_failing_is_answered_with_an_apology_and_the_chat_goes_on(
    api: FakeZaloApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_dispatch = zalo_channel.dispatch

    async def broken(incoming: Any, *args: Any, **kwargs: Any) -> Any:
        if incoming.text == "/classes":
            raise RuntimeError("flow bug")
        return await real_dispatch(incoming, *args, **kwargs)

    monkeypatch.setattr(zalo_channel, "dispatch", broken)
    monkeypatch.setattr(inbox_worker, "backoff", lambda _attempts: dt.timedelta(0))
    await seed(sessionmaker)
    async with running_zalo(sessionmaker, zalo_settings(api, database_url), api):
        await api.inject(text_update("/classes", user_id=LEARNER, message_id="f1"))
        await api.inject(text_update("/help", user_id=LEARNER, message_id="f2"))
        failed = await wait_status(sessionmaker, "f1", InboxStatus.FAILED)
        await wait_answered(sessionmaker, "f2")
    assert (failed.attempts, failed.last_error) == (3, "RuntimeError")
    apology, *helped = api.texts_to(LEARNER)
    assert apology.startswith("Xin lỗi, hệ thống gặp sự cố")
    assert "/classes" in helped[0]


async def test_after_a_crash_stored_updates_are_answered_and_kept_replies_sent_once(
    api: FakeZaloApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    await seed(sessionmaker)
    # What a process killed mid-work leaves: one update stored but not handled, one
    # handled whose replies were not sent; both leases ran out.
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    async with sessionmaker() as session, session.begin():
        session.add_all(
            [
                InboundUpdate(
                    channel="zalo",
                    update_key="c1",
                    chat_id=LEARNER,
                    payload=text_update("/help", user_id=LEARNER, message_id="c1"),
                    status=InboxStatus.HANDLED,
                    attempts=0,
                    replies=[{"text": "kept reply"}],
                    lease_until=past,
                ),
                InboundUpdate(
                    channel="zalo",
                    update_key="c2",
                    chat_id=LEARNER,
                    payload=text_update("/help", user_id=LEARNER, message_id="c2"),
                    status=InboxStatus.RECEIVED,
                    attempts=0,
                    lease_until=past,
                ),
            ]
        )
    async with running_zalo(sessionmaker, zalo_settings(api, database_url), api):
        await wait_answered(sessionmaker, "c2")
    texts = api.texts_to(LEARNER)
    assert texts[0] == "kept reply"
    assert len(texts) == 2
    assert "/classes" in texts[1]
