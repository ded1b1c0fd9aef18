"""The OA's webhook in the running service: signed events only, each stored once; receipts
mark ZNS notices delivered; a text written to the OA is answered once with a pointer to
the bot; follows are recorded."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.jobs_cli import show_status
from bot.service import run_service
from db import outbox, zns
from db.models import OutboxMessage, OutboxStatus, ZnsEvent
from db.outbox import Pace, ZnsRoute
from db.repos import Repos
from handlers.notices import notify
from handlers.types import Msg, Reply
from tests.factories import add_person, add_unit
from tests.fake_bot_api import FakeBotApi
from tests.fake_zns_api import FakeZnsApi, fake_zns_api, follow, receipt, user_text
from tests.telegram_support import fake_bot_api, free_port
from tests.zns_support import zns_settings

PATH = "/zalo-oa"
LINKS = ["https://zalo.me/s/truongchinhtri", "https://t.me/truongchinhtri_bot"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeZnsApi]:
    async with fake_zns_api() as api:
        yield api


@pytest.fixture
async def telegram() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


def service_settings(
    fake: FakeZnsApi, telegram: FakeBotApi, database_url: str, **zns_changes: Any
) -> Settings:
    """Telegram polling, ZNS on with its webhook on a port of its own, no web admin."""
    settings = zns_settings(
        fake,
        telegram,
        database_url,
        listen_port=free_port(),
        bot_links=LINKS,
        **zns_changes,
    )
    web = settings.web.model_copy(update={"enabled": False})
    return settings.model_copy(update={"web": web})


async def _listening(url: str) -> None:
    """Wait until the webhook server answers at all."""
    for _ in range(200):
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                await response.read()
                return
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.02)
    raise AssertionError(f"nothing listens at {url}")


@contextlib.asynccontextmanager
async def running(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[str]:
    """Run `trainingbot run`'s service; yield the OA webhook's URL once it listens."""
    stopping = asyncio.Event()
    task = asyncio.create_task(
        run_service(sessionmaker, settings, stopping=stopping, handle_signals=False, jobs=[])
    )
    host, port = settings.zns_listen
    try:
        await _listening(f"http://{host}:{port}/healthz")
        yield f"http://{host}:{port}{PATH}"
    finally:
        stopping.set()
        assert await asyncio.wait_for(task, timeout=10) == 0


async def events(sessionmaker: async_sessionmaker[AsyncSession]) -> list[ZnsEvent]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(ZnsEvent).order_by(ZnsEvent.id))).all())


async def lan(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as s, s.begin():
        unit = await add_unit(s, "SNV", "Sở Nội vụ")
        return (await add_person(s, "0912000402", "Nguyễn Thị Lan", unit)).id


async def queue_reminder(sessionmaker: async_sessionmaker[AsyncSession], person_id: int) -> None:
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
        await notify(Repos(s), person_id, "class.reminder", "reminder:lan", reply, due_at=due)


async def wait_until(condition: Any, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_receipt_marks_the_zns_notice_delivered_once(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    person_id = await lan(sessionmaker)
    settings = service_settings(fake, telegram, database_url)
    await queue_reminder(sessionmaker, person_id)
    async with running(sessionmaker, settings) as url:

        async def sent() -> bool:
            async with sessionmaker() as session:
                row = await session.scalar(select(OutboxMessage))
            return row is not None and row.status == OutboxStatus.SENT

        await wait_until(sent)
        (message,) = fake.sent
        async with sessionmaker() as session:
            row = (await session.scalars(select(OutboxMessage))).one()
        # Sent (Zalo took it) but not delivered yet.
        assert (row.channel, row.delivered_at) == ("zns", None)
        event = receipt(message.msg_id, message.tracking_id, timestamp="1764550000000")
        assert await fake.post_event(url, event) == (200, "ok")
        # Zalo posts it again (it retries for an hour): nothing changes.
        assert await fake.post_event(url, event) == (200, "ok")
    async with sessionmaker() as session:
        row = (await session.scalars(select(OutboxMessage))).one()
    assert row.status == OutboxStatus.SENT
    assert row.delivered_at == dt.datetime.fromtimestamp(1764550000, dt.UTC)
    (stored,) = await events(sessionmaker)
    assert stored.event_key == f"user_received_message:{message.msg_id}"
    status = io.StringIO()
    await show_status(sessionmaker, settings, status)
    assert "zns: today 1 sent (1 delivered)" in status.getvalue()


async def test_posts_without_a_valid_signature_get_401_and_change_nothing(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    settings = service_settings(fake, telegram, database_url)
    event = user_text("7001", "xin chào", "m-1")
    async with running(sessionmaker, settings) as url:
        # No signature, a wrong one, one made with the app secret instead of the OA's, one
        # of another body.
        assert (await fake.post_event(url, event, signature=""))[0] == 401
        assert (await fake.post_event(url, event, signature="mac=" + "0" * 64))[0] == 401
        genuine = fake.oa_secret_key
        fake.oa_secret_key = fake.secret_key
        assert (await fake.post_event(url, event))[0] == 401
        fake.oa_secret_key = genuine
        other = user_text("7001", "xin chào!", "m-1")
        raw = __import__("json").dumps(event, ensure_ascii=False).encode()
        forged = fake.sign(raw, str(event["timestamp"]))
        assert (await fake.post_event(url, other, signature=forged))[0] == 401
        await asyncio.sleep(0.1)
    assert await events(sessionmaker) == []
    assert fake.texts == []


@pytest.mark.parametrize("variant", ["sha256", "sha256_header_timestamp", "hmac_sha256"])
async def test_each_signature_variant_is_checked_as_configured(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    variant: str,
) -> None:
    settings = service_settings(fake, telegram, database_url, signature=variant)
    others = {"sha256", "sha256_header_timestamp", "hmac_sha256"} - {variant}
    async with running(sessionmaker, settings) as url:
        for number, other in enumerate(sorted(others)):
            event = follow(f"80{number}", timestamp="1764550000000")
            # The header's timestamp differs from the body's, so the two sha256 variants
            # sign differently.
            status, _ = await fake.post_event(
                url, event, variant=other, timestamp_header="1764550000999"
            )
            assert status == 401, other
        status, _ = await fake.post_event(
            url, follow("900"), variant=variant, timestamp_header="1764550000999"
        )
        assert status == 200
    (stored,) = await events(sessionmaker)
    assert (stored.event_name, stored.user_id) == ("follow", "900")


async def test_a_text_to_the_oa_is_answered_once_with_a_pointer_to_the_bot(
    fake: FakeZnsApi,
    telegram: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    settings = service_settings(fake, telegram, database_url)
    async with running(sessionmaker, settings) as url:
        first = user_text("7001", "Cho hỏi lịch học lớp K45?", "m-1")
        assert await fake.post_event(url, first) == (200, "ok")
        assert await fake.post_event(url, first) == (200, "ok")

        async def answered() -> bool:
            return bool(fake.texts)

        await wait_until(answered)
        # A second text the same day is recorded but not answered again.
        assert await fake.post_event(url, user_text("7001", "Alo?", "m-2")) == (200, "ok")

        async def settled() -> bool:
            return all(event.reply_status != "pending" for event in await events(sessionmaker))

        await wait_until(settled)
        assert await fake.post_event(url, follow("7002")) == (200, "ok")
    ((user, text),) = fake.texts
    assert user == "7001"
    assert "không trả lời tin nhắn" in text
    assert all(link in text for link in LINKS)
    stored = await events(sessionmaker)
    assert [(e.event_name, e.user_id, e.reply_status) for e in stored] == [
        ("user_send_text", "7001", "sent"),
        ("user_send_text", "7001", "skipped"),
        ("follow", "7002", None),
    ]
    # What was written is kept with the event (the school may read it).
    assert stored[0].payload["message"]["text"] == "Cho hỏi lịch học lớp K45?"


async def test_a_receipt_that_overtakes_the_sends_bookkeeping_is_kept(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    person_id = await lan(sessionmaker)
    await queue_reminder(sessionmaker, person_id)
    now = dt.datetime.now(dt.UTC)
    route = ZnsRoute(
        "app",
        frozenset({"class.reminder"}),
        zns.Guard(),
        now.date(),
        now + dt.timedelta(hours=1),
    )
    pace = Pace({"zns": 0.01}, per_chat=1.0, lease=dt.timedelta(seconds=60))
    async with sessionmaker() as session, session.begin():
        claim = await outbox.claim_batch(
            session, ["telegram"], now=now, limit=10, pace=pace, zns_route=route
        )
    (notice,) = claim.notices
    assert (notice.channel, notice.external_id) == ("zns", "84912000402")
    # Zalo delivers and posts the receipt before the sender recorded the send.
    async with sessionmaker() as session, session.begin():
        matched = await zns.mark_delivered(
            session, tracking=zns.tracking_id(notice.key), msg_id=None, at=now
        )
    assert matched == notice.id
    async with sessionmaker() as session, session.begin():
        await outbox.mark_sent(session, notice, now=now, per_chat=1.0, provider_message_id="z1")
    async with sessionmaker() as session:
        row = (await session.scalars(select(OutboxMessage))).one()
        count = await session.scalar(select(func.count()).select_from(OutboxMessage))
    assert (row.status, row.delivered_at, row.provider_message_id) == (
        OutboxStatus.SENT,
        now,
        "z1",
    )
    assert count == 1
