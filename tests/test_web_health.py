"""/healthz tells a load balancer whether the database and the chat platform answer;
/metrics counts what the channel and the delivery engine did, where they did it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.telegram import TelegramProbe
from bot.config import TelegramSettings
from db import outbox
from db.models import InboxStatus, OutboxMessage, OutboxStatus, Person
from db.repos import Repos
from db.session import create_engine, create_sessionmaker
from handlers.notices import notify
from handlers.types import Msg, Reply
from tests.factories import add_person, add_unit, link
from tests.fake_bot_api import FakeBotApi, text_update
from tests.telegram_support import fake_bot_api, running, settings_for, wait_status
from tests.web_support import admin_site


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of a Prometheus text page by (name, labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def telegram_probe(api: FakeBotApi) -> TelegramProbe:
    settings = TelegramSettings(token=SecretStr(api.token), base_url=api.base_url)
    # Always ask: another test's recent call must not answer for this one.
    return TelegramProbe(settings, healthy_within=0)


async def test_healthz_is_ok_when_the_database_and_telegram_answer(
    sessionmaker: async_sessionmaker[AsyncSession], api: FakeBotApi
) -> None:
    probe = telegram_probe(api)
    try:
        async with admin_site(sessionmaker, probes=[probe]) as site:
            response = await site.client.get("/healthz")
            assert response.status == 200
            assert json.loads(await response.text()) == {
                "status": "ok",
                "database": "ok",
                "telegram": "ok",
            }
            api.fail("getMe", 502, "Bad Gateway", times=5)
            response = await site.client.get("/healthz")
            assert response.status == 503
            assert json.loads(await response.text())["telegram"] == "unreachable"
    finally:
        await probe.close()


async def test_healthz_is_503_when_the_database_does_not_answer() -> None:
    # Nothing listens on port 1: the connection is refused at once.
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        async with admin_site(create_sessionmaker(engine)) as site:
            response = await site.client.get("/healthz")
            assert response.status == 503
            assert json.loads(await response.text()) == {
                "status": "failing",
                "database": "unreachable",
            }
    finally:
        await engine.dispose()


async def test_metrics_count_updates_latency_replies_429s_and_the_outbox(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str, api: FakeBotApi
) -> None:
    settings = settings_for(api, database_url)
    settings = settings.model_copy(
        update={"web": settings.web.model_copy(update={"enabled": False})}
    )
    async with admin_site(sessionmaker) as site:

        async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            response = await site.client.get("/metrics")
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return samples(await response.text())

        handled = (
            "trainingbot_updates_handled_total",
            (("channel", "telegram"), ("outcome", "handled")),
        )
        latency = ("trainingbot_handler_seconds_count", (("channel", "telegram"),))
        replies = ("trainingbot_messages_sent_total", (("channel", "telegram"), ("kind", "reply")))
        throttled = ("trainingbot_rate_limited_total", (("channel", "telegram"),))
        before = await scrape()
        async with running(sessionmaker, settings, api):
            await api.inject(text_update(api.next_update_id(), "/help"))
            await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)
            api.fail_flood("sendMessage", retry_after=1)
            await api.inject(text_update(api.next_update_id(), "/help"))
            await wait_status(sessionmaker, InboxStatus.ANSWERED, 2, within=10)
        after = await scrape()
        assert after[handled] - before.get(handled, 0) == 2
        assert after[latency] - before.get(latency, 0) == 2
        assert after[replies] - before.get(replies, 0) == 2
        assert after[throttled] - before.get(throttled, 0) == 1
        async with sessionmaker() as session, session.begin():
            unit = await add_unit(session, "U1", "Unit")
            person: Person = await add_person(session, "0912000111", "A", unit)
            for number in range(3):
                session.add(
                    OutboxMessage(
                        idempotency_key=f"m{number}",
                        person_id=person.id,
                        kind="x",
                        payload={},
                        status=OutboxStatus.QUEUED if number else OutboxStatus.FAILED,
                    )
                )
        depth = await scrape()
        assert depth["trainingbot_outbox_messages", (("status", "queued"),)] == 2
        assert depth["trainingbot_outbox_messages", (("status", "failed"),)] == 1
        assert depth["trainingbot_outbox_messages", (("status", "sent"),)] == 0


async def test_metrics_count_notices_sent_and_failed_by_the_delivery_engine(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str, api: FakeBotApi
) -> None:
    settings = settings_for(api, database_url)
    now = dt.datetime.now(dt.UTC)
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "U1", "Unit")
        for number, chat in enumerate(("501", "502")):
            person = await add_person(session, f"091200020{number}", f"P{number}", unit)
            await link(session, person, "telegram", chat)
            reply = Reply((Msg("unit.not_your_unit"),))
            await notify(Repos(session), person.id, "test", f"n{number}", reply, due_at=now)
    sent = ("trainingbot_messages_sent_total", (("channel", "telegram"), ("kind", "notice")))
    failed = ("trainingbot_messages_failed_total", (("channel", "telegram"), ("kind", "notice")))
    async with admin_site(sessionmaker) as site:
        before = samples(await (await site.client.get("/metrics")).text())
        api.fail_blocked(times=1)
        async with running(sessionmaker, settings, api):
            for _ in range(200):
                async with sessionmaker() as session:
                    counts = await outbox.counts(session)
                if counts.get(OutboxStatus.QUEUED, 0) == 0:
                    break
                await asyncio.sleep(0.05)
        after = samples(await (await site.client.get("/metrics")).text())
    assert after[sent] - before.get(sent, 0) == 1
    assert after[failed] - before.get(failed, 0) == 1
