"""Notices by ZNS to people without a chat, through the same outbox and delivery engine.

The real ZNS client and the real Telegram channel talk to fake servers over HTTP: a person
linked on Telegram gets a reminder there, one linked nowhere gets it by ZNS on the
roster phone, never both; the tracking id keeps a retry from being charged twice; the
day's quota and the school's guard hold notices back (told once a day, never dropped);
Zalo's error codes end in the engine's rules.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.telegram import TelegramChannel, build_application
from bot.channels.zns import ZnsChannel, api_of
from bot.config import Settings, ZnsTemplate, ZnsTemplates
from bot.delivery import DeliveryEngine, DeliverySettings
from bot.jobs_cli import run_once, show_status
from db import zns
from db.models import OutboxMessage, OutboxStatus, Person, ZnsBudget
from db.repos import Repos
from db.session import create_engine, create_sessionmaker
from handlers.notices import notify
from handlers.types import Msg, Reply
from tests.factories import add_class, add_person, add_registration, add_session, add_unit, link
from tests.fake_bot_api import FakeBotApi
from tests.fake_zns_api import REMINDER_TEMPLATE, FakeZnsApi, fake_zns_api
from tests.telegram_support import fake_bot_api, in_days
from tests.zns_support import REMINDER_FIELDS, reminder_template, rows, soon, zns_settings

TRANG_CHAT = 4242
ADMIN_CHAT = 4100


@pytest.fixture
async def fake() -> AsyncIterator[FakeZnsApi]:
    async with fake_zns_api() as api:
        yield api


@pytest.fixture
async def telegram() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


def telegram_texts(api: FakeBotApi, chat: int) -> list[str]:
    return [c.params["text"] for c in api.calls_of("sendMessage") if c.params["chat_id"] == chat]


async def school(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Trang (linked on Telegram), Lan (linked nowhere) and an admin (on Telegram)."""
    async with sessionmaker() as s, s.begin():
        unit = await add_unit(s, "SNV", "Sở Nội vụ")
        trang = await add_person(s, "0912000401", "Phạm Thu Trang", unit)
        lan = await add_person(s, "0912000402", "Nguyễn Thị Lan", unit)
        admin = await add_person(s, "0912000100", "Lê Thị Quản", unit)
        admin.is_admin = True
        await link(s, trang, "telegram", str(TRANG_CHAT))
        await link(s, admin, "telegram", str(ADMIN_CHAT))
        return {"trang": trang.id, "lan": lan.id, "admin": admin.id}


async def class_starting_soon(
    sessionmaker: async_sessionmaker[AsyncSession], people: list[int]
) -> None:
    """A class whose first session starts in 90 minutes, with these people confirmed."""
    async with sessionmaker() as s, s.begin():
        starts = soon(90)
        klass = await add_class(
            s, "K45", "Kỹ năng lãnh đạo", start=in_days(0), location="Hội trường A"
        )
        klass.start_date = starts.astimezone(dt.timezone(dt.timedelta(hours=7))).date()
        klass.end_date = klass.start_date + dt.timedelta(days=2)
        await add_session(s, klass, starts)
        for person_id in people:
            person = await s.get(Person, person_id)
            assert person is not None
            await add_registration(s, person, klass)


async def queue(
    sessionmaker: async_sessionmaker[AsyncSession],
    person_id: int,
    key: str,
    *,
    kind: str = "class.reminder",
    urgent: bool = False,
) -> None:
    """Queue a notice of `kind` for the person, due now, with a reminder's parameters."""
    reply = Reply(
        lines=(
            Msg(
                "reminder.headline",
                {
                    "code": "K45",
                    "title": "Kỹ năng lãnh đạo",
                    "start": dt.date(2026, 12, 7),
                    "end": dt.date(2026, 12, 9),
                    "when": Msg("reminder.first_day", {"date": dt.date(2026, 12, 7)}),
                },
            ),
            Msg("reminder.place", {"place": "Hội trường A"}),
        )
    )
    due = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    async with sessionmaker() as s, s.begin():
        await notify(Repos(s), person_id, kind, key, reply, due_at=due, urgent=urgent)


async def drain(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Send everything due now through Telegram and ZNS, as `jobs run-once` does."""
    telegram = TelegramChannel(build_application(settings.telegram), sessionmaker, settings)
    await telegram.application.initialize()
    channel = ZnsChannel(api_of(settings.zns), sessionmaker, settings)
    await channel.initialize()
    try:
        engine = DeliveryEngine(
            sessionmaker,
            [telegram],
            DeliverySettings.of(settings),
            settings.notify,
            zns=channel,
        )
        await engine.drain()
    finally:
        await channel.shutdown()
        await telegram.shutdown()


async def drain_with_retries(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """Drain, then again once a retry's short backoff ran out, as the next run-once would.

    `drain` does not wait for a retry's backoff (bot/delivery.py); the retries here wait
    retry_seconds = 0.01 s, jittered.
    """
    for _run in range(3):
        await drain(sessionmaker, settings)
        async with sessionmaker() as s:
            retry_at = await s.scalar(
                select(func.min(OutboxMessage.lease_until)).where(
                    OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.attempts > 0
                )
            )
        wait = (retry_at - dt.datetime.now(dt.UTC)).total_seconds() if retry_at else None
        if wait is None or wait > 1:
            return
        await asyncio.sleep(max(0.0, wait))


async def test_a_reminder_reaches_the_person_without_a_chat_by_zns_and_the_other_by_chat(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    await class_starting_soon(sessionmaker, [people["trang"], people["lan"]])
    settings = zns_settings(fake, telegram, database_url)

    async def stored_before_use(token: str) -> None:
        # Zalo sees an access token only once it is in the database (store-then-use).
        async with sessionmaker() as session:
            row = await zns.token_state(session, fake.app_id)
        assert row is not None
        assert row.access_token == token

    fake.on_template = stored_before_use
    out = io.StringIO()
    assert await run_once(sessionmaker, settings, out) == 0
    assert "delivery: 2 sent" in out.getvalue()
    # Trang, on Telegram: by chat only.
    (text,) = telegram_texts(telegram, TRANG_CHAT)
    assert text.startswith("⏰ Nhắc lịch học: lớp K45 «Kỹ năng lãnh đạo»")
    # Lan, linked nowhere: one ZNS to her roster phone, in Zalo's 84… form.
    (sent,) = fake.sent
    assert sent.phone == "84912000402"
    assert sent.template_id == "251234"
    assert sent.data["ho_ten"] == "Nguyễn Thị Lan"
    assert sent.data["ma_lop"] == "K45"
    assert sent.data["ten_lop"] == "Kỹ năng lãnh đạo"
    assert sent.data["thoi_gian"].startswith("lúc ")
    assert sent.data["dia_diem"] == "Hội trường A"
    by_person = {row.person_id: row for row in await rows(sessionmaker)}
    trang, lan = by_person[people["trang"]], by_person[people["lan"]]
    assert (trang.status, trang.channel, trang.tracking_id) == (OutboxStatus.SENT, "telegram", None)
    assert (lan.status, lan.channel) == (OutboxStatus.SENT, "zns")
    assert lan.tracking_id == zns.tracking_id(lan.idempotency_key) == sent.tracking_id
    assert lan.provider_message_id == sent.msg_id
    # Accepted, not yet confirmed delivered (a receipt will say).
    assert lan.delivered_at is None
    # The quota Zalo reported is kept for the day's guard.
    async with sessionmaker() as session:
        budget = await session.get(ZnsBudget, fake.app_id)
    assert budget is not None
    assert (budget.claimed, budget.remaining, budget.daily_quota) == (1, 499, 500)
    # Nothing goes twice.
    assert await run_once(sessionmaker, settings, io.StringIO()) == 0
    assert (len(fake.sent), len(telegram_texts(telegram, TRANG_CHAT))) == (1, 1)
    status = io.StringIO()
    await show_status(sessionmaker, settings, status)
    assert "zns: today 1 sent (0 delivered)" in status.getvalue()
    assert "Zalo's quota today: 499 of 500 left" in status.getvalue()


async def test_a_retry_after_a_lost_answer_carries_the_same_tracking_id_and_is_charged_once(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    settings = zns_settings(fake, telegram, database_url)
    await queue(sessionmaker, people["lan"], "reminder:lan:1")
    # Zalo takes the message but the answer is lost: the engine cannot know it went.
    fake.lose_template_answers = 1
    await drain_with_retries(sessionmaker, settings)
    first, second = fake.template_calls
    assert first[0] == second[0]
    assert len(fake.sent) == 1
    assert fake.remaining == fake.daily_quota - 1
    (row,) = await rows(sessionmaker)
    assert (row.status, row.attempts) == (OutboxStatus.SENT, 1)
    assert row.provider_message_id == fake.sent[0].msg_id


async def test_a_blocked_chat_hands_the_notice_to_zns_never_to_both(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    settings = zns_settings(fake, telegram, database_url)
    telegram.fail("sendMessage", 403, "Forbidden: bot was blocked by the user")
    await queue(sessionmaker, people["trang"], "reminder:trang:1")
    await drain(sessionmaker, settings)
    (row,) = await rows(sessionmaker)
    assert (row.status, row.channel) == (OutboxStatus.SENT, "zns")
    assert [sent.phone for sent in fake.sent] == ["84912000401"]
    # Telegram refused the one try (403): the notice reached her once, by ZNS.
    assert len(telegram_texts(telegram, TRANG_CHAT)) == 1


async def test_a_kind_without_a_template_fails_for_people_without_a_chat_and_admins_hear_once(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    # A second admin linked nowhere: the alerts to her fail too, and are not reported.
    async with sessionmaker() as s, s.begin():
        lan = await s.get(Person, people["lan"])
        assert lan is not None
        s.add(
            Person(phone="0912000101", full_name="Hồ Thị Hai", unit_id=lan.unit_id, is_admin=True)
        )
    settings = zns_settings(fake, telegram, database_url)
    await queue(sessionmaker, people["lan"], "link:1", kind="class.online_link")
    await queue(sessionmaker, people["lan"], "digest:1", kind="unit.digest")
    await drain(sessionmaker, settings)
    await queue(sessionmaker, people["lan"], "link:2", kind="class.online_link")
    await drain(sessionmaker, settings)
    assert fake.sent == []
    alerts = [row for row in await rows(sessionmaker) if row.kind == "zns.alert"]
    # Two alerts to each admin (one a kind), none about the alerts that failed.
    assert len(alerts) == 4
    failed = {
        row.idempotency_key: row.last_error
        for row in await rows(sessionmaker)
        if row.status == OutboxStatus.FAILED
    }
    reason = "unreachable: no reachable chat account, and no ZNS template for class.online_link"
    assert failed["link:1"] == failed["link:2"] == reason
    assert "no ZNS template for unit.digest" in (failed["digest:1"] or "")
    # The admin heard once a day per kind, by chat: how to add the template, or that the
    # kind goes by chat only.
    texts = telegram_texts(telegram, ADMIN_CHAT)
    assert len(texts) == 2
    assert any("«online_link (class.online_link)»" in text for text in texts)
    assert any("[zns.templates.online_link]" in text for text in texts)
    assert any("«unit.digest»" in text and "chỉ gửi qua kênh chat" in text for text in texts)
    status = io.StringIO()
    await show_status(sessionmaker, settings, status)
    assert f"failed in the last 24 h: 2 × {reason}" in status.getvalue()


async def test_the_days_quota_used_up_holds_zns_notices_for_tomorrow_and_tells_admins_once(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    async with sessionmaker() as s, s.begin():
        unit_id = (await s.get(Person, people["lan"])).unit_id  # type: ignore[union-attr]
        others = []
        for number in range(3):
            person = Person(
                phone=f"091200050{number}", full_name=f"Người {number}", unit_id=unit_id
            )
            s.add(person)
            await s.flush()
            others.append(person.id)
    settings = zns_settings(fake, telegram, database_url)
    fake.remaining = 2
    for number, person_id in enumerate([people["lan"], *others]):
        await queue(sessionmaker, person_id, f"reminder:{number}")
    await drain(sessionmaker, settings)
    # Two went; Zalo refused the third (not charged); the rest wait for the next day.
    assert len(fake.sent) == 2
    statuses = [row.status for row in await rows(sessionmaker) if row.kind == "class.reminder"]
    assert statuses.count(OutboxStatus.SENT) == 2
    assert statuses.count(OutboxStatus.QUEUED) == 2
    held = [
        row
        for row in await rows(sessionmaker)
        if row.kind == "class.reminder" and row.status == OutboxStatus.QUEUED
    ]
    assert all((row.last_error or "").startswith("zns quota:") for row in held)
    tomorrow = held[0].lease_until
    assert tomorrow is not None
    local = tomorrow.astimezone(settings.bot.zone)
    assert (local.hour, local.minute) == (0, 0)
    assert local.date() == dt.datetime.now(settings.bot.zone).date() + dt.timedelta(days=1)
    assert all(row.attempts == 0 for row in held)
    # Another run the same day sends nothing by ZNS and tells no one again.
    await queue(sessionmaker, people["lan"], "reminder:later")
    await drain(sessionmaker, settings)
    assert len(fake.sent) == 2
    (alert,) = telegram_texts(telegram, ADMIN_CHAT)
    assert "Đã dùng hết hạn mức tin ZNS trong ngày" in alert
    status = io.StringIO()
    await show_status(sessionmaker, settings, status)
    assert "zns: 3 notices wait for the ZNS quota or tokens" in status.getvalue()
    # The next day (the hold over, the counters of a new day): they go.
    fake.remaining = 500
    async with sessionmaker() as s, s.begin():
        await s.execute(
            update(ZnsBudget).values(
                day=dt.date(2000, 1, 1), held_until=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
            )
        )
        await s.execute(update(OutboxMessage).values(lease_until=None))
    await drain(sessionmaker, settings)
    assert len(fake.sent) == 5
    assert all(row.status == OutboxStatus.SENT for row in await rows(sessionmaker))


async def test_the_daily_limit_and_the_urgent_reserve_stop_zns_before_zalo_does(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    settings = zns_settings(fake, telegram, database_url, daily_limit=2, quota_reserve=0)
    await queue(sessionmaker, people["lan"], "reminder:1")
    await drain(sessionmaker, settings)
    await queue(sessionmaker, people["lan"], "reminder:2")
    await queue(sessionmaker, people["lan"], "reminder:3")
    await drain(sessionmaker, settings)
    assert len(fake.sent) == 2
    (waiting,) = [row for row in await rows(sessionmaker) if row.status == OutboxStatus.QUEUED]
    assert (waiting.last_error or "").startswith("zns quota: the daily limit of 2 ZNS messages")
    # Zalo never refused anything: the guard stopped first.
    assert all(code == 0 for _tracking, _token, code in fake.template_calls)
    assert len(telegram_texts(telegram, ADMIN_CHAT)) == 1

    # The reserve: with 3 left and 2 kept for urgent notices, one ordinary notice goes,
    # then only urgent ones.
    change = ZnsTemplate(
        template_id=REMINDER_TEMPLATE,
        fields={**REMINDER_FIELDS, "thoi_gian": "start", "dia_diem": "details"},
    )
    templates = ZnsTemplates(reminder=reminder_template(), change=change)
    settings = zns_settings(
        fake, telegram, database_url, daily_limit=0, quota_reserve=2, templates=templates
    )
    async with sessionmaker() as s, s.begin():
        await s.execute(
            update(ZnsBudget).values(held_until=None, remaining=3, claimed=0, remaining_claimed=0)
        )
        await s.execute(update(OutboxMessage).values(lease_until=None))
        lan = await s.get(Person, people["lan"])
        assert lan is not None
        other = Person(phone="0912000403", full_name="Trần Văn Bình", unit_id=lan.unit_id)
        s.add(other)
        await s.flush()
    fake.remaining = 3
    await queue(sessionmaker, other.id, "reminder:4")
    await queue(sessionmaker, people["lan"], "changed:1", kind="class.changed", urgent=True)
    await drain(sessionmaker, settings)
    assert len(fake.sent) == 4
    by_key = {row.idempotency_key: row for row in await rows(sessionmaker)}
    assert by_key["changed:1"].status == OutboxStatus.SENT
    assert [by_key[f"reminder:{n}"].status for n in (3, 4)].count(OutboxStatus.SENT) == 1
    (kept,) = [
        row
        for row in by_key.values()
        if row.status == OutboxStatus.QUEUED and row.kind != "zns.alert"
    ]
    assert "2 kept for urgent notices" in (kept.last_error or "")


@pytest.mark.parametrize(
    ("code", "message", "status", "reason"),
    [
        (-118, "Zalo account not existed", OutboxStatus.FAILED, "zns: -118 Zalo account"),
        (-139, "User refused to receive ZNS", OutboxStatus.FAILED, "zns: -139 User refused"),
        (-109, "Template ID invalid", OutboxStatus.FAILED, "zns: -109 Template ID invalid"),
        (-100, "Unknown error", OutboxStatus.SENT, None),
        (-124, "Access token is invalid", OutboxStatus.SENT, None),
        (-115, "Out of quota", OutboxStatus.QUEUED, "zns balance: -115 Out of quota"),
    ],
)
async def test_zalos_error_codes_end_in_the_engines_rules(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    code: int,
    message: str,
    status: OutboxStatus,
    reason: str | None,
) -> None:
    people = await school(sessionmaker)
    settings = zns_settings(fake, telegram, database_url)
    fake.fail("template", code, message)
    await queue(sessionmaker, people["lan"], "reminder:1")
    await drain_with_retries(sessionmaker, settings)
    (row,) = [row for row in await rows(sessionmaker) if row.kind == "class.reminder"]
    assert row.status == status
    if reason is not None:
        assert (row.last_error or "").startswith(reason)
    async with sessionmaker() as session:
        budget = await session.get(ZnsBudget, fake.app_id)
    assert budget is not None
    # A refusal is not charged: the day's count holds only what Zalo took.
    assert budget.claimed == len(fake.sent)
    admin_texts = telegram_texts(telegram, ADMIN_CHAT)
    if code == -109:
        (alert,) = admin_texts
        assert "Zalo từ chối mẫu ZNS" in alert
    if code == -124:
        # A refused access token is refreshed and the message sent in the same attempt.
        assert len(fake.refresh_calls) == 2
        assert row.attempts == 0
    if code == -115:
        (alert,) = admin_texts
        assert "hết số dư" in alert


async def test_a_refused_refresh_token_holds_zns_and_tells_the_admins(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    settings = zns_settings(fake, telegram, database_url)
    fake.authorize()  # the configured refresh token is no longer valid
    await queue(sessionmaker, people["lan"], "reminder:1")
    await drain(sessionmaker, settings)
    (row,) = [row for row in await rows(sessionmaker) if row.kind == "class.reminder"]
    assert row.status == OutboxStatus.QUEUED
    assert row.attempts == 0
    assert "refused the refresh token" in (row.last_error or "")
    (alert,) = telegram_texts(telegram, ADMIN_CHAT)
    assert "Zalo không chấp nhận mã làm mới" in alert
    status = io.StringIO()
    await show_status(sessionmaker, settings, status)
    assert "zns: AUTHORIZATION NEEDED" in status.getvalue()
    async with sessionmaker() as session:
        row_id = await session.scalar(select(OutboxMessage.id).where(OutboxMessage.id == row.id))
    assert row_id is not None


async def test_two_processes_draining_at_once_keep_the_daily_limit_together(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    async with sessionmaker() as s, s.begin():
        lan = await s.get(Person, people["lan"])
        assert lan is not None
        for number in range(12):
            s.add(
                Person(
                    phone=f"09130001{number:02d}", full_name=f"Người {number}", unit_id=lan.unit_id
                )
            )
    async with sessionmaker() as s:
        ids = list(await s.scalars(select(Person.id).where(Person.phone.like("09130001%"))))
    for person_id in ids:
        await queue(sessionmaker, person_id, f"reminder:{person_id}")
    settings = zns_settings(fake, telegram, database_url, daily_limit=5, rate_per_second=20)
    # Each "process" has its own engine: its own connections, its own clients.
    engines = [create_engine(database_url) for _ in range(2)]
    try:
        await asyncio.gather(*(drain(create_sessionmaker(engine), settings) for engine in engines))
    finally:
        for engine in engines:
            await engine.dispose()
    assert len(fake.sent) == 5
    assert len({sent.phone for sent in fake.sent}) == 5
    reminders = [row for row in await rows(sessionmaker) if row.kind == "class.reminder"]
    assert [row.status for row in reminders].count(OutboxStatus.SENT) == 5
    assert [row.status for row in reminders].count(OutboxStatus.QUEUED) == 7
    # Told once, however many processes ran into the guard.
    assert len(telegram_texts(telegram, ADMIN_CHAT)) == 1
