"""Faults around the channel: the database or the Bot API failing, a loop ending early."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import bot.channels.inbox_worker as inbox_worker
import bot.channels.telegram as telegram_channel
from bot.channels.telegram import now_utc
from bot.delivery import DeliveryEngine
from bot.service import run_service
from db import inbox
from db import session as db_session
from db.models import ChannelAccount, InboxStatus, OutboxMessage, OutboxStatus
from db.repos import Repos
from handlers.notices import notify
from handlers.types import Msg, Reply
from tests.factories import add_person, add_unit
from tests.fake_bot_api import FakeBotApi, callback_update, text_update
from tests.telegram_support import fake_bot_api, inbox_rows, running, settings_for, wait_status


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


async def test_polling_goes_on_after_the_database_fails_to_store_a_batch(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_store = inbox.store
    failures = [OperationalError("INSERT", {}, ConnectionRefusedError("Phạm Thu Trang"))]

    async def flaky(*args: Any, **kwargs: Any) -> bool:
        if failures:
            raise failures.pop()
        return await real_store(*args, **kwargs)

    monkeypatch.setattr(inbox, "store", flaky)
    caplog.set_level(logging.INFO)
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(text_update(api.next_update_id(), "/help"))
        # The batch was not stored, so not acknowledged: it comes again and is answered.
        [sent] = await api.wait_for("sendMessage", timeout=10)
        await wait_status(sessionmaker, InboxStatus.ANSWERED, 1)
        await api.inject(text_update(api.next_update_id(), "/help", user_id=222))
        await api.wait_for("sendMessage", count=2, timeout=5)
    assert "Tôi có thể giúp" in sent.params["text"]
    assert len(await inbox_rows(sessionmaker)) == 2
    assert "telegram polling failed (OperationalError); retrying" in caplog.text
    assert "Phạm Thu Trang" not in caplog.text


async def test_polling_starts_after_delete_webhook_failed(
    api: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    api.fail("deleteWebhook", 502, "Bad Gateway")
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(text_update(api.next_update_id(), "/help"))
        await api.wait_for("sendMessage", timeout=10)
    assert len(api.calls_of("deleteWebhook")) == 2


async def test_a_loop_that_ends_early_stops_the_service_cleanly_with_status_1(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(_self: DeliveryEngine, _stopping: asyncio.Event) -> None:
        await asyncio.sleep(0.5)
        raise RuntimeError("a bug")

    monkeypatch.setattr(DeliveryEngine, "run", broken)
    caplog.set_level(logging.INFO)
    stopping = asyncio.Event()
    status = await asyncio.wait_for(
        run_service(
            sessionmaker,
            settings_for(api, database_url),
            stopping=stopping,
            handle_signals=False,
        ),
        timeout=10,
    )
    assert status == 1
    assert "notice delivery ended unexpectedly (RuntimeError)" in caplog.text
    assert "trainingbot stopped" in caplog.text
    assert not stopping.is_set()


@contextlib.asynccontextmanager
async def silent_database() -> AsyncIterator[str]:
    """Yield the URL of a "PostgreSQL server" that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/none"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_a_connection_to_a_silent_database_times_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(db_session, "CONNECT_TIMEOUT_SECONDS", 0.5)
    async with silent_database() as url:
        engine = db_session.create_engine(url)
        try:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                async with engine.connect():
                    pass
            assert time.monotonic() - started < 5
        finally:
            await engine.dispose()


async def test_the_service_stops_promptly_while_the_database_hangs(api: FakeBotApi) -> None:
    async with silent_database() as url:
        engine = db_session.create_engine(url)
        stopping = asyncio.Event()
        service = asyncio.create_task(
            run_service(
                db_session.create_sessionmaker(engine),
                settings_for(api, url),
                stopping=stopping,
                handle_signals=False,
                stop_grace=1,
            )
        )
        try:
            await api.wait_for("getUpdates", timeout=10)
            await asyncio.sleep(0.5)  # the workers are waiting for the database
            started = time.monotonic()
            stopping.set()
            assert await asyncio.wait_for(service, timeout=10) == 0
            assert time.monotonic() - started < 5
        finally:
            service.cancel()
            await engine.dispose()


async def test_a_reply_refused_with_429_many_times_is_still_sent_and_no_attempt_counted(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telegram_channel, "_retry_seconds", lambda _exc: 0.05)
    api.fail("sendMessage", 429, "Too Many Requests: retry after 1", times=5, retry_after=1)
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(text_update(api.next_update_id(), "/help"))
        [row] = await wait_status(sessionmaker, InboxStatus.ANSWERED, 1, within=10)
    assert len(api.calls_of("sendMessage")) == 6
    assert row.attempts == 0


async def test_a_notice_refused_with_429_many_times_is_still_sent(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telegram_channel, "_retry_seconds", lambda _exc: 0.05)
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        person = await add_person(session, "0912000178", "Phạm Thu Trang", unit)
        session.add(ChannelAccount(person_id=person.id, channel="telegram", external_id="111"))
        reply = Reply(lines=(Msg("start.intro"),))
        await notify(Repos(session), person.id, "test", "k1", reply, due_at=now_utc())
    api.fail("sendMessage", 429, "Too Many Requests: retry after 1", times=5, retry_after=1)
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.wait_for("sendMessage", count=6, timeout=10)
        for _ in range(100):
            async with sessionmaker() as session:
                row = (await session.scalars(select(OutboxMessage))).one()
            if row.status == OutboxStatus.SENT:
                break
            await asyncio.sleep(0.05)
    assert (row.status, row.attempts) == (OutboxStatus.SENT, 0)


async def test_send_failures_have_their_own_attempts_apart_from_handling_failures(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_dispatch = telegram_channel.dispatch
    failures = [RuntimeError("flow"), RuntimeError("flow")]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_dispatch(*args, **kwargs)

    monkeypatch.setattr(telegram_channel, "dispatch", flaky)
    monkeypatch.setattr(inbox_worker, "backoff", lambda _attempts: dt.timedelta(0))
    # Handled on the 3rd try (2 handling failures), then sent on the 5th (4 send failures).
    api.fail("sendMessage", 500, "Internal Server Error", times=4)
    async with running(sessionmaker, settings_for(api, database_url), api):
        await api.inject(text_update(api.next_update_id(), "/help"))
        [row] = await wait_status(sessionmaker, InboxStatus.ANSWERED, 1, within=10)
    assert len(api.calls_of("sendMessage")) == 5
    assert "Tôi có thể giúp" in api.calls_of("sendMessage")[-1].params["text"]
    assert row.attempts == 4


async def test_a_button_is_answered_at_once_even_when_handling_it_fails(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("flow bug")

    monkeypatch.setattr(telegram_channel, "dispatch", broken)
    async with running(sessionmaker, settings_for(api, database_url), api):
        started = time.monotonic()
        await api.inject(callback_update(api.next_update_id(), "hp"))
        await api.wait_for("answerCallbackQuery", timeout=5)
        answered_after = time.monotonic() - started
        [row] = await inbox_rows(sessionmaker)
        # Answered before the first retry of the handling (backoff 1 s, then 2 s).
        assert row.status == InboxStatus.RECEIVED
        await wait_status(sessionmaker, InboxStatus.FAILED, 1, within=10)
    assert answered_after < 1
