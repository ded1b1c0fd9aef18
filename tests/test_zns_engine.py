"""ZNS behind the reworked delivery engine (SQLite, PostgreSQL; real clients, fake servers).

The engine's guarantees hold for ZNS too: a person reachable on a chat another worker
serves is left to it, not sent a paid message; Zalo's pause keeps ZNS notices queued
while chats go on; a send without an answer within send_timeout is retried with the same
tracking id and charged once, and a token refresh it was waiting for is not cut short;
a notice claimed but not sent (a stopped broadcast, a stopping worker) gives its place
in the day's budget back. Broadcasts reach people without a chat by ZNS with their text.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.telegram import TelegramChannel, build_application
from bot.channels.zns import ZnsChannel, api_of
from bot.config import Settings, ZnsTemplate, ZnsTemplates
from bot.delivery import DeliveryEngine, DeliverySettings, now_utc
from db import broadcasts, outbox
from db.broadcasts import Audience, AudienceKind
from db.models import DeliveryPace, OutboxStatus, Person, Unit, ZnsBudget, ZnsToken
from handlers.notices import encode_reply
from handlers.types import Msg, Reply
from tests.factories import link
from tests.fake_bot_api import FakeBotApi
from tests.fake_zns_api import APP_ID, FakeZnsApi, fake_zns_api
from tests.telegram_support import fake_bot_api
from tests.test_zns_delivery import ADMIN_CHAT, TRANG_CHAT, drain, queue, school, telegram_texts
from tests.zns_support import reminder_template, rows, zns_settings

BROADCAST_TEMPLATE = "251240"


@pytest.fixture
async def fake() -> AsyncIterator[FakeZnsApi]:
    async with fake_zns_api() as api:
        yield api


@pytest.fixture
async def telegram() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


@contextlib.asynccontextmanager
async def engine_for(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, **delivery: object
) -> AsyncIterator[DeliveryEngine]:
    """Yield an engine with Telegram and ZNS (real clients), its settings changed by `delivery`."""
    telegram = TelegramChannel(build_application(settings.telegram), sessionmaker, settings)
    await telegram.application.initialize()
    channel = ZnsChannel(api_of(settings.zns), sessionmaker, settings)
    await channel.initialize()
    config = dataclasses.replace(DeliverySettings.of(settings), idle_seconds=0.05, **delivery)
    try:
        yield DeliveryEngine(sessionmaker, [telegram], config, settings.notify, zns=channel)
    finally:
        await channel.shutdown()
        await telegram.shutdown()


@contextlib.asynccontextmanager
async def running(engine: DeliveryEngine) -> AsyncIterator[asyncio.Event]:
    """Run the engine until the block ends; yield its stop."""
    stopping = asyncio.Event()
    task = asyncio.create_task(engine.run(stopping))
    try:
        yield stopping
    finally:
        stopping.set()
        await asyncio.wait_for(task, timeout=10)


async def settled(
    sessionmaker: async_sessionmaker[AsyncSession], kind: str = "class.reminder"
) -> list[OutboxStatus]:
    """Wait until no notice of `kind` is queued (10 s at most); return their statuses."""
    for _ in range(200):
        found = [row.status for row in await rows(sessionmaker) if row.kind == kind]
        if found and OutboxStatus.QUEUED not in found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"still queued: {found}")


async def budget(sessionmaker: async_sessionmaker[AsyncSession]) -> ZnsBudget:
    async with sessionmaker() as session:
        found = await session.get(ZnsBudget, APP_ID)
    assert found is not None
    return found


async def test_someone_reachable_on_a_chat_another_worker_serves_is_left_to_it_not_zns(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    async with sessionmaker() as s, s.begin():
        lan = await s.get(Person, people["lan"])
        assert lan is not None
        await link(s, lan, "zalo", "z402")
    await queue(sessionmaker, people["lan"], "reminder:lan")
    # This worker serves Telegram and ZNS; Lan is on Zalo only.
    await drain(sessionmaker, zns_settings(fake, telegram, database_url))
    (row,) = await rows(sessionmaker)
    assert (row.status, row.attempts, row.tracking_id, row.last_error) == (
        OutboxStatus.QUEUED,
        0,
        None,
        None,
    )
    assert fake.template_calls == []


async def test_zalo_asking_to_wait_keeps_zns_notices_queued_while_chats_go_on(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    settings = zns_settings(fake, telegram, database_url)
    await queue(sessionmaker, people["lan"], "reminder:lan")
    await queue(sessionmaker, people["trang"], "reminder:trang")
    # Another process got Zalo's 429: ZNS's pace holds a minute.
    async with sessionmaker() as s, s.begin():
        await outbox.throttle(s, "zns", until=now_utc() + dt.timedelta(minutes=1))
    await drain(sessionmaker, settings)
    by_key = {row.idempotency_key: row for row in await rows(sessionmaker)}
    assert by_key["reminder:trang"].status == OutboxStatus.SENT
    assert len(telegram_texts(telegram, TRANG_CHAT)) == 1
    waiting = by_key["reminder:lan"]
    # Not claimed, not failed, no attempt: it waits for ZNS.
    assert (waiting.status, waiting.attempts, waiting.lease_until) == (
        OutboxStatus.QUEUED,
        0,
        None,
    )
    assert fake.template_calls == []
    # A claim says when to look again (what drain waits for, when it is soon).
    async with sessionmaker() as s, s.begin():
        claim = await outbox.claim_batch(
            s,
            ["telegram"],
            now=now_utc(),
            limit=10,
            pace=outbox.Pace({"telegram": 0.05, "zns": 0.05}, 1.0, dt.timedelta(seconds=60)),
            zns_route=ZnsChannel(api_of(settings.zns), sessionmaker, settings).route(now_utc()),
        )
    assert claim.notices == []
    assert claim.held_until is not None
    assert claim.held_until > now_utc() + dt.timedelta(seconds=40)
    # Zalo's pause over, the notice goes by ZNS.
    async with sessionmaker() as s, s.begin():
        await s.execute(
            update(DeliveryPace).where(DeliveryPace.channel == "zns").values(next_at=now_utc())
        )
    await drain(sessionmaker, settings)
    sent = {row.idempotency_key: row for row in await rows(sessionmaker)}["reminder:lan"]
    assert (sent.status, sent.channel) == (OutboxStatus.SENT, "zns")
    assert len(fake.sent) == 1


async def test_a_zns_send_without_an_answer_in_time_is_retried_with_its_tracking_id_once_charged(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    settings = zns_settings(fake, telegram, database_url)
    await queue(sessionmaker, people["lan"], "reminder:lan")
    retried = asyncio.Event()
    calls = 0

    async def first_answers_after_the_retry(_token: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.wait_for(retried.wait(), timeout=10)
        else:
            retried.set()

    fake.on_template = first_answers_after_the_retry
    async with (
        engine_for(
            sessionmaker, settings, send_timeout=0.3, retry_base=dt.timedelta(seconds=0.05)
        ) as engine,
        running(engine),
    ):
        assert await settled(sessionmaker) == [OutboxStatus.SENT]
        # Zalo's late answer to the first request arrives too: still one message.
        for _ in range(100):
            if len(fake.template_calls) == 2:
                break
            await asyncio.sleep(0.05)
    (row,) = await rows(sessionmaker)
    assert (row.channel, row.attempts) == ("zns", 1)
    assert (row.last_error or "").startswith("no answer within 0.3 s")
    first, second = fake.template_calls
    assert first[0] == second[0] == row.tracking_id
    assert len(fake.sent) == 1
    assert row.provider_message_id == fake.sent[0].msg_id


async def test_a_send_abandoned_for_its_timeout_does_not_cut_its_token_refresh_short(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    settings = zns_settings(fake, telegram, database_url)
    await queue(sessionmaker, people["lan"], "reminder:lan")

    async def slow_answer() -> None:
        # Zalo rotated the tokens and answers after the send's timeout.
        await asyncio.sleep(0.8)

    fake.on_refresh = slow_answer
    async with (
        engine_for(
            sessionmaker, settings, send_timeout=0.3, retry_base=dt.timedelta(seconds=0.05)
        ) as engine,
        running(engine),
    ):
        assert await settled(sessionmaker) == [OutboxStatus.SENT]
    # One refresh, its answer stored although the send waiting for it gave up: the old
    # refresh token is dead at Zalo, and the new one was not lost.
    assert len(fake.refresh_calls) == 1
    async with sessionmaker() as session:
        token = await session.get(ZnsToken, APP_ID)
    assert token is not None
    assert (token.refresh_token, token.auth_error) == (fake.refresh_token, None)
    # Retried meanwhile (each try waits for that refresh), then sent once.
    (row,) = await rows(sessionmaker)
    assert (row.channel, row.status) == ("zns", OutboxStatus.SENT)
    assert row.attempts >= 1
    assert len(fake.sent) == 1


def broadcast_settings(fake: FakeZnsApi, telegram: FakeBotApi, database_url: str) -> Settings:
    """ZNS with a template for reminders and one for broadcasts (its text as `noi_dung`)."""
    fake.templates[BROADCAST_TEMPLATE] = ("noi_dung",)
    templates = ZnsTemplates(
        reminder=reminder_template(),
        broadcast=ZnsTemplate(template_id=BROADCAST_TEMPLATE, fields={"noi_dung": "text"}),
    )
    return zns_settings(fake, telegram, database_url, templates=templates)


async def start_broadcast(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, author_id: int
) -> int:
    """Start an announcement to Sở Nội vụ by its admin, as /broadcast does; return its id."""
    reply = Reply(
        (
            Msg("broadcast.header", {"name": "Lê Thị Quản", "unit": "Sở Nội vụ"}),
            Msg("broadcast.body", {"text": "Chiều nay 14 giờ họp tại Hội trường A."}),
        )
    )
    async with sessionmaker() as s, s.begin():
        unit_id = await s.scalar(select(Unit.id).where(Unit.code == "SNV"))
        assert unit_id is not None
        draft = await broadcasts.create_draft(
            s,
            author_id=author_id,
            scope_unit_id=None,
            text="Chiều nay 14 giờ họp tại Hội trường A.",
            message=encode_reply(reply),
            now=now_utc(),
        )
        await broadcasts.edit_draft(
            s, draft.id, author_id, audience=Audience(AudienceKind.UNITS, unit_ids=(unit_id,))
        )
        started = await broadcasts.start(
            s,
            draft.id,
            author_id=author_id,
            scope_unit_id=None,
            now=now_utc(),
            today=now_utc().date(),
            zns_kinds=settings.chat.zns_kinds,
        )
        return started.id


async def test_a_broadcast_reaches_people_without_a_chat_by_zns_with_its_text(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    settings = broadcast_settings(fake, telegram, database_url)
    broadcast_id = await start_broadcast(sessionmaker, settings, people["admin"])
    await drain(sessionmaker, settings)
    by_person = {row.person_id: row for row in await rows(sessionmaker)}
    assert {row.status for row in by_person.values()} == {OutboxStatus.SENT}
    assert by_person[people["lan"]].channel == "zns"
    assert by_person[people["trang"]].channel == "telegram"
    (sent,) = fake.sent
    assert (sent.phone, sent.template_id) == ("84912000402", BROADCAST_TEMPLATE)
    assert sent.data == {"noi_dung": "Chiều nay 14 giờ họp tại Hội trường A."}
    assert "Chiều nay 14 giờ họp" in telegram_texts(telegram, TRANG_CHAT)[0]
    assert len(telegram_texts(telegram, ADMIN_CHAT)) == 1
    async with sessionmaker() as s:
        progress = await broadcasts.progress(s, broadcast_id)
    assert progress is not None
    assert (progress.recipients, progress.sent) == (3, 3)


async def test_a_zns_notice_of_a_stopped_broadcast_is_not_sent_and_its_budget_given_back(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    settings = broadcast_settings(fake, telegram, database_url)
    broadcast_id = await start_broadcast(sessionmaker, settings, people["admin"])
    async with engine_for(sessionmaker, settings) as engine:
        claimed = await engine.claim()
        (by_zns,) = [notice for notice in claimed if notice.channel == "zns"]
        assert (await budget(sessionmaker)).claimed == 1
        async with sessionmaker() as s, s.begin():
            await broadcasts.stop(s, broadcast_id, by_id=people["admin"], now=now_utc())
        await engine._send(by_zns)
    assert fake.template_calls == []
    assert (await budget(sessionmaker)).claimed == 0
    row = {row.person_id: row for row in await rows(sessionmaker)}[people["lan"]]
    assert (row.status, row.last_error) == (OutboxStatus.SKIPPED, "stopped")


async def test_a_stopping_worker_puts_a_zns_notice_back_with_its_budget(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    people = await school(sessionmaker)
    settings = zns_settings(fake, telegram, database_url)
    await queue(sessionmaker, people["lan"], "reminder:lan")
    # ZNS's next free slot is 5 s away (within what a claim takes): the notice is claimed
    # and waits for its slot when the worker is told to stop.
    async with sessionmaker() as s, s.begin():
        await outbox.throttle(s, "zns", until=now_utc() + dt.timedelta(seconds=5))
    async with engine_for(sessionmaker, settings) as engine, running(engine) as stopping:
        for _ in range(100):
            (row,) = await rows(sessionmaker)
            if row.lease_until is not None:
                break
            await asyncio.sleep(0.05)
        assert row.lease_until is not None
        assert (await budget(sessionmaker)).claimed == 1
        stopping.set()
    (row,) = await rows(sessionmaker)
    assert (row.status, row.lease_until, row.attempts) == (OutboxStatus.QUEUED, None, 0)
    assert (await budget(sessionmaker)).claimed == 0
    assert fake.template_calls == []
