"""Whole journeys over the real PTB Application and the fake Bot API, as a user lives them.

Each step injects one update (a message, a contact, a button press on the message the
bot sent), waits until the inbox says it is answered, and looks at the Bot API calls the
bot made for that chat: sent, edited in place, answered, a file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import (
    ChannelAccount,
    Conversation,
    InboundUpdate,
    InboxStatus,
    OutboxMessage,
    Person,
    Registration,
    RegistrationStatus,
    TrainingClass,
)
from tests.factories import add_class, add_person, add_registration, add_unit, link
from tests.fake_bot_api import Call, FakeBotApi, callback_update, contact_update, text_update
from tests.telegram_support import fake_bot_api, in_days, running, settings_for

S = RegistrationStatus
LEARNER = 111
WAITER = 222
HEAD = 333


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


def keyboard(call: Call) -> list[str]:
    """Return the data of a message's inline buttons, in order."""
    markup = call.params.get("reply_markup") or {}
    return [button["callback_data"] for row in markup.get("inline_keyboard", []) for button in row]


def data_with(calls: list[Call], prefix: str) -> str:
    """Return the first button data starting with `prefix` among the calls' keyboards."""
    for call in calls:
        for data in keyboard(call):
            if data.startswith(prefix):
                return data
    raise AssertionError(f"no {prefix!r} button in {[keyboard(c) for c in calls]}")


@dataclass
class User:
    """One Telegram user talking to the running bot."""

    api: FakeBotApi
    sessionmaker: async_sessionmaker[AsyncSession]
    user_id: int
    language_code: str = "en"

    async def _answered(self, update: dict[str, Any]) -> list[Call]:
        """Inject `update`, wait until it is answered; return the calls made for it."""
        before = len(self.api.calls)
        await self.api.inject(update)
        key = str(update["update_id"])
        for _ in range(500):
            async with self.sessionmaker() as session:
                status = await session.scalar(
                    select(InboundUpdate.status).where(InboundUpdate.update_key == key)
                )
            if status == InboxStatus.ANSWERED:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"update {key} not answered; calls: {self.api.calls[before:]}")
        query_id = f"cq{update['update_id']}"
        return [
            call
            for call in self.api.calls[before:]
            if call.params.get("chat_id") == self.user_id
            or call.params.get("callback_query_id") == query_id
        ]

    async def say(self, text: str) -> list[Call]:
        """Send a text message; return the calls answering it."""
        update_id = self.api.next_update_id()
        update = text_update(
            update_id, text, user_id=self.user_id, language_code=self.language_code
        )
        return await self._answered(update)

    async def press(self, data: str, message_id: int = 4000) -> list[Call]:
        """Press a button with `data` on message `message_id`; return the calls answering it."""
        update = callback_update(
            self.api.next_update_id(),
            data,
            user_id=self.user_id,
            message_id=message_id,
            language_code=self.language_code,
        )
        return await self._answered(update)

    async def share(self, phone: str, contact_user_id: int | None) -> list[Call]:
        """Share a contact (own when `contact_user_id` is the user's id); return the calls."""
        update = contact_update(
            self.api.next_update_id(), phone, user_id=self.user_id, contact_user_id=contact_user_id
        )
        return await self._answered(update)


def only(calls: list[Call], method: str) -> Call:
    """Return the one call of `method`."""
    found = [call for call in calls if call.method == method]
    assert len(found) == 1, [(c.method, c.params.get("text")) for c in calls]
    return found[0]


async def statuses(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, S]:
    """Return each person's registration status (latest per person), by name."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Person.full_name, Registration.status)
            .join(Registration, Registration.person_id == Person.id)
            .order_by(Registration.id)
        )
        return {name: status for name, status in rows.all()}


async def test_a_learner_links_registers_gets_the_calendar_cancels_and_the_next_one_gets_the_seat(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        await add_person(session, "0912000178", "Phạm Thu Trang", unit)
        waiter = await add_person(session, "0912000179", "Đỗ Văn Chờ", unit)
        await link(session, waiter, "telegram", str(WAITER))
        session.add(Conversation(channel="telegram", chat_id=str(WAITER), language="en"))
        klass = await add_class(
            session, "KN-01", "Kỹ năng soạn thảo văn bản", start=in_days(30), capacity=1
        )
        class_id = klass.id
    learner = User(api, sessionmaker, LEARNER)
    other = User(api, sessionmaker, WAITER)
    async with running(sessionmaker, settings_for(api, database_url), api):
        # /start: a chat not yet linked is asked for its phone with the contact button.
        ask = (await learner.say("/start"))[-1]
        [[button]] = ask.params["reply_markup"]["keyboard"]
        assert button["request_contact"] is True
        # Telegram drops the "+": 84912000178 is the roster's 0912000178.
        greeted = only(await learner.share("84912000178", LEARNER), "sendMessage")
        assert "Hello, Phạm Thu Trang (Huyện Yên Thành)!" in greeted.params["text"]

        listed = await learner.say("/classes")
        assert data_with(listed, "cd:") == f"cd:{class_id}"
        shown = await learner.press(f"cd:{class_id}", message_id=4001)
        only(shown, "answerCallbackQuery")
        detail = only(shown, "editMessageText")
        assert detail.params["message_id"] == 4001
        assert "Kỹ năng soạn thảo văn bản" in detail.params["text"]
        assert not [c for c in shown if c.method == "sendMessage"]

        asked = only(await learner.press(data_with([detail], "rg:"), 4001), "editMessageText")
        assert "Confirm your registration for class KN-01" in asked.params["text"]
        done = only(await learner.press(data_with([asked], "rc:"), 4001), "editMessageText")
        assert "Registered! You have a seat in class KN-01" in done.params["text"]

        async with sessionmaker() as session, session.begin():
            waiting = await session.get(Person, waiter.id)
            assert waiting is not None
            klass_now = await session.get(TrainingClass, class_id)
            assert klass_now is not None
            await add_registration(session, waiting, klass_now, S.WAITLISTED)

        mine = only(await learner.say("/my"), "sendMessage")
        calendar = await learner.press(data_with([mine], "ic:"), 4002)
        only(calendar, "answerCallbackQuery")
        document = only(calendar, "sendDocument").params["document"]
        assert document["filename"] == "KN-01.ics"
        assert b"BEGIN:VCALENDAR" in document["content"]

        sure = only(await learner.press(data_with([mine], "mc:"), 4002), "editMessageText")
        assert "Do you really want to cancel" in sure.params["text"]
        cancelled = only(await learner.press(data_with([sure], "mx:"), 4002), "editMessageText")
        assert "is cancelled" in cancelled.params["text"]

        # The first on the waitlist is offered the seat by the notice sender.
        [offer] = await api.wait_for("sendMessage", lambda p: p["chat_id"] == WAITER)
        assert "A seat has freed up in class KN-01" in offer.params["text"]
        accept = data_with([offer], "oa:")
        assert data_with([offer], "od:") == accept.replace("oa:", "od:")
        accepted = only(await other.press(accept, 5001), "editMessageText")
        assert "You accepted the seat in class KN-01" in accepted.params["text"]
    assert await statuses(sessionmaker) == {
        "Phạm Thu Trang": S.CANCELLED,
        "Đỗ Văn Chờ": S.CONFIRMED,
    }


async def test_a_contact_that_is_not_the_users_own_is_refused_and_nothing_is_linked(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        await add_person(session, "0912000178", "Phạm Thu Trang", unit)
    learner = User(api, sessionmaker, LEARNER)
    async with running(sessionmaker, settings_for(api, database_url), api):
        await learner.say("/start")
        for contact_user_id in (999, None):  # someone else's contact; a contact of no user
            refused = only(await learner.share("84912000178", contact_user_id), "sendMessage")
            assert "only accept your own phone number" in refused.params["text"]
            [[button]] = refused.params["reply_markup"]["keyboard"]
            assert button["request_contact"] is True
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ChannelAccount)) == 0


async def test_a_unit_head_approves_on_telegram_the_learner_is_told_and_a_forged_button_fails(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with sessionmaker() as session, session.begin():
        province = await add_unit(session, "SNV", "Sở Nội vụ")
        sub = await add_unit(session, "CCVT", "Chi cục Văn thư", parent=province)
        elsewhere = await add_unit(session, "STC", "Sở Tài chính")
        head = await add_person(session, "0912000001", "Trần Văn Trưởng", province)
        head.is_unit_head = True
        learner_person = await add_person(session, "0912000002", "Lê Thị Học", sub)
        stranger = await add_person(session, "0912000003", "Phạm Văn Khác", elsewhere)
        await link(session, head, "telegram", str(HEAD))
        await link(session, learner_person, "telegram", str(LEARNER))
        session.add(Conversation(channel="telegram", chat_id=str(LEARNER), language="en"))
        klass = await add_class(session, "CV-02", "Nghiệp vụ văn thư", start=in_days(30))
        klass.requires_approval = True
        await add_registration(session, learner_person, klass, S.PENDING_APPROVAL)
        await add_registration(session, stranger, klass, S.PENDING_APPROVAL)
        await session.flush()
        rows = await session.execute(select(Registration.person_id, Registration.id))
        ids = {person_id: registration_id for person_id, registration_id in rows}
        mine, theirs = ids[learner_person.id], ids[stranger.id]
    head_chat = User(api, sessionmaker, HEAD)
    async with running(sessionmaker, settings_for(api, database_url), api):
        units = only(await head_chat.say("/unit"), "sendMessage")
        opened = only(await head_chat.press(data_with([units], "uc:"), 4100), "editMessageText")
        assert "Lê Thị Học" in opened.params["text"]
        assert "Phạm Văn Khác" not in opened.params["text"]
        assert data_with([opened], "ap:") == f"ap:{mine}"
        approved = only(await head_chat.press(f"ap:{mine}", 4100), "editMessageText")
        assert "Lê Thị Học's registration is approved" in approved.params["text"]
        [told] = await api.wait_for("sendMessage", lambda p: p["chat_id"] == LEARNER)
        assert "Your unit head approved your registration for class CV-02" in told.params["text"]

        forged = await head_chat.press(f"ap:{theirs}", 4100)
        only(forged, "answerCallbackQuery")
        answer = only(forged, "editMessageText")
        assert "not in a unit you are responsible for" in answer.params["text"]
    assert await statuses(sessionmaker) == {
        "Lê Thị Học": S.CONFIRMED,
        "Phạm Văn Khác": S.PENDING_APPROVAL,
    }
    async with sessionmaker() as session:
        people = (await session.scalars(select(OutboxMessage.person_id))).all()
    assert people == [learner_person.id]


async def test_a_button_of_a_deleted_class_or_garbage_is_answered_politely(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        person = await add_person(session, "0912000178", "Phạm Thu Trang", unit)
        await link(session, person, "telegram", str(LEARNER))
        klass = await add_class(session, "KN-09", "Lớp sẽ bị xoá", start=in_days(30))
        class_id = klass.id
    learner = User(api, sessionmaker, LEARNER)
    async with running(sessionmaker, settings_for(api, database_url), api):
        listed = await learner.say("/classes")
        assert data_with(listed, "cd:") == f"cd:{class_id}"
        async with sessionmaker() as session, session.begin():
            await session.execute(delete(TrainingClass).where(TrainingClass.id == class_id))
        for data in (f"cd:{class_id}", f"rg:{class_id}", f"rc:{class_id}", "\u00ff'; DROP --"):
            calls = await learner.press(data, 4200)
            only(calls, "answerCallbackQuery")
            polite = only(calls, "editMessageText")
            assert "This button no longer applies" in polite.params["text"], data
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Registration)) == 0


async def test_a_double_tap_on_confirm_registers_once(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        person = await add_person(session, "0912000178", "Phạm Thu Trang", unit)
        await link(session, person, "telegram", str(LEARNER))
        session.add(Conversation(channel="telegram", chat_id=str(LEARNER), language="en"))
        klass = await add_class(session, "KN-03", "Kỹ năng giao tiếp", start=in_days(30))
        class_id = klass.id
    async with running(sessionmaker, settings_for(api, database_url), api):
        for _ in range(2):  # two presses, two update_ids, before either is handled
            update = callback_update(api.next_update_id(), f"rc:{class_id}", language_code="en")
            await api.inject(update)
        await api.wait_for("answerCallbackQuery", count=2)
        edits = await api.wait_for("editMessageText", count=2)
    first, second = (call.params["text"] for call in edits)
    assert "Registered! You have a seat in class KN-03" in first
    assert "You are already registered for class KN-03" in second
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Registration)) == 1
