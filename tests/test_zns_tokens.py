"""The OA's tokens: refreshed by one process at a time, stored before use, and what a lost
refresh answer or a crash between refresh and store costs (bot/channels/zns_tokens.py).

The real client talks to the fake Zalo OAuth server over HTTP; a refresh token works once
there, as at Zalo.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.zns_api import ZnsApi
from bot.channels.zns_tokens import AUTH_RETRY, TokenManager, TokenUnavailable
from db import zns
from db.models import ZnsToken
from db.session import create_engine, create_sessionmaker
from tests.fake_zns_api import APP_ID, SECRET_KEY, FakeZnsApi, fake_zns_api

START = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
MARGIN = dt.timedelta(hours=3)
# The fake's access tokens last 90,000 s (25 hours), as Zalo's are said to.
LIFETIME = dt.timedelta(seconds=90_000)


@pytest.fixture
async def fake() -> AsyncIterator[FakeZnsApi]:
    async with fake_zns_api() as api:
        yield api


class Clock:
    """A settable clock for the managers."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


def client(fake: FakeZnsApi, *, seconds: float = 5.0) -> ZnsApi:
    return ZnsApi(
        APP_ID,
        SECRET_KEY,
        oauth_base=fake.base_url,
        zns_base=fake.base_url,
        oa_base=fake.base_url,
        request_seconds=seconds,
    )


@pytest.fixture
async def api(fake: FakeZnsApi) -> AsyncIterator[ZnsApi]:
    the_client = client(fake)
    yield the_client
    await the_client.close()


def manager(
    api: ZnsApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    configured: str | None,
    clock: Callable[[], dt.datetime],
    refusals: list[str] | None = None,
) -> TokenManager:
    async def refused(_session: AsyncSession, reason: str, _now: dt.datetime) -> None:
        if refusals is not None:
            refusals.append(reason)

    return TokenManager(
        api, sessionmaker, configured=configured, margin=MARGIN, on_refused=refused, clock=clock
    )


async def stored(sessionmaker: async_sessionmaker[AsyncSession]) -> ZnsToken:
    async with sessionmaker() as session:
        row = await zns.token_state(session, APP_ID)
    assert row is not None
    return row


async def test_the_first_use_refreshes_stores_the_new_pair_and_keeps_using_it(
    fake: FakeZnsApi, api: ZnsApi, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = fake.refresh_token
    clock = Clock()
    tokens = manager(api, sessionmaker, first, clock)
    access = await tokens.access_token()
    assert fake.refresh_calls == [first]
    row = await stored(sessionmaker)
    # The answer's pair is in the database: the used refresh token is gone from it.
    assert (row.access_token, row.refresh_token) == (access, fake.refresh_token)
    assert row.refresh_token != first
    assert row.access_expires_at == START + LIFETIME
    assert row.seed_hash == zns.seed_hash(first)
    # Valid for hours yet: no second refresh, and a restart (same configuration) keeps it.
    clock.now = START + LIFETIME - MARGIN - dt.timedelta(minutes=1)
    assert await tokens.access_token() == access
    again = manager(api, sessionmaker, first, clock)
    assert await again.access_token() == access
    assert len(fake.refresh_calls) == 1


async def test_an_access_token_is_refreshed_before_it_expires(
    fake: FakeZnsApi, api: ZnsApi, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    tokens = manager(api, sessionmaker, fake.refresh_token, clock)
    first = await tokens.access_token()
    clock.now = START + LIFETIME - MARGIN + dt.timedelta(minutes=1)
    second = await tokens.access_token()
    assert second != first
    assert len(fake.refresh_calls) == 2
    assert (await stored(sessionmaker)).refresh_token == fake.refresh_token
    # A token Zalo refuses (revoked, expired early) is forgotten: the next call refreshes.
    await tokens.refused_token(second)
    third = await tokens.access_token()
    assert third not in (first, second)
    assert len(fake.refresh_calls) == 3


async def test_several_processes_needing_a_token_at_once_refresh_only_once(
    fake: FakeZnsApi, database_url: str
) -> None:
    # Each "process" has its own engine (its own connections) and client.
    engines = [create_engine(database_url) for _ in range(5)]
    clients = [client(fake) for _ in engines]
    clock = Clock()
    configured = fake.refresh_token
    managers = [
        manager(each, create_sessionmaker(engine), configured, clock)
        for each, engine in zip(clients, engines, strict=True)
    ]

    async def token_of(tokens: TokenManager) -> str:
        while True:
            try:
                return await tokens.access_token()
            except TokenUnavailable as exc:
                if exc.needs_authorization:
                    raise
                await asyncio.sleep(0.02)

    try:
        found = await asyncio.wait_for(asyncio.gather(*map(token_of, managers)), 20)
    finally:
        for each in clients:
            await each.close()
        for engine in engines:
            await engine.dispose()
    # One refresh reached Zalo (a second one with the same token would have been refused).
    assert fake.refresh_calls == [configured]
    assert len(set(found)) == 1
    assert found[0] in fake.access_tokens


async def test_a_lost_refresh_answer_keeps_the_current_token_until_an_admin_authorizes_again(
    fake: FakeZnsApi, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    refusals: list[str] = []
    # A client that gives up quickly: the fake drops the answer's connection.
    impatient = client(fake, seconds=2.0)
    tokens = manager(impatient, sessionmaker, fake.refresh_token, clock, refusals)
    try:
        current = await tokens.access_token()
        used = (await stored(sessionmaker)).refresh_token
        # Time to refresh; Zalo rotates the tokens, but its answer never arrives.
        clock.now = START + LIFETIME - MARGIN + dt.timedelta(minutes=5)
        fake.lose_refresh_answers = 1
        assert await tokens.access_token() == current
        row = await stored(sessionmaker)
        assert (row.refresh_token, row.auth_error, row.refresh_lease_until) == (used, None, None)
        assert refusals == []
        # The next try learns that the stored refresh token is dead: recorded, admins told,
        # and the access token still serves while it is valid.
        clock.now += dt.timedelta(minutes=1)
        assert await tokens.access_token() == current
        row = await stored(sessionmaker)
        assert row.auth_error is not None
        assert "Invalid refresh token" in row.auth_error or "-14014" in row.auth_error
        assert len(refusals) == 1
        # Within the next half hour the refused token is not tried again.
        calls = len(fake.refresh_calls)
        clock.now += AUTH_RETRY - dt.timedelta(seconds=1)
        assert await tokens.access_token() == current
        assert len(fake.refresh_calls) == calls
        # Once the access token expired there is none: ZNS waits for a new authorization.
        # The refused token is tried again every half hour (Zalo might have erred), not at
        # every call.
        clock.now = START + LIFETIME + dt.timedelta(minutes=1)
        with pytest.raises(TokenUnavailable) as caught:
            await tokens.access_token()
        assert caught.value.needs_authorization
        assert caught.value.retry_at == clock.now + AUTH_RETRY
        assert len(fake.refresh_calls) == calls + 1
        with pytest.raises(TokenUnavailable):
            await tokens.access_token()
        assert len(fake.refresh_calls) == calls + 1
        assert len(refusals) == 2
        # An admin authorizes the app again and stores the new refresh token: ZNS is back.
        async with sessionmaker() as session, session.begin():
            await zns.set_refresh_token(
                session, APP_ID, fake.authorize(), configured=tokens.configured, now=clock.now
            )
        fresh = await tokens.access_token()
        assert fresh in fake.access_tokens
        row = await stored(sessionmaker)
        assert (row.auth_error, row.access_token) == (None, fresh)
        # A restart with the same configuration does not put the first token back.
        restarted = manager(impatient, sessionmaker, tokens.configured, clock)
        assert await restarted.access_token() == fresh
        assert len(refusals) == 2
    finally:
        await impatient.close()


async def test_a_crash_between_refresh_and_store_costs_a_new_authorization_not_the_notices(
    fake: FakeZnsApi, api: ZnsApi, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    refusals: list[str] = []
    tokens = manager(api, sessionmaker, fake.refresh_token, clock, refusals)
    current = await tokens.access_token()
    used = (await stored(sessionmaker)).refresh_token
    clock.now = START + LIFETIME - MARGIN + dt.timedelta(minutes=5)

    # The process dies after Zalo rotated and before the store: its database is gone.
    dying_engine = create_engine(database_url)
    dying = manager(api, create_sessionmaker(dying_engine), tokens.configured, clock)

    async def crash() -> None:
        await dying_engine.dispose()
        raise_on_connect(dying_engine)

    fake.on_refresh = crash
    with pytest.raises(TokenUnavailable):
        await dying.access_token()
    fake.on_refresh = None
    assert len(fake.refresh_calls) == 2
    # Its lease runs out; the restarted process still has the current access token…
    clock.now += dt.timedelta(minutes=3)
    restarted = manager(api, sessionmaker, tokens.configured, clock, refusals)
    assert await restarted.access_token() == current
    # …and learns at once that the stored refresh token was used: the admins are told.
    row = await stored(sessionmaker)
    assert row.refresh_token == used
    assert row.auth_error is not None
    assert len(refusals) == 1


def raise_on_connect(engine: object) -> None:
    """Make every later connection of a (disposed) engine fail, as a dead process's would."""
    from sqlalchemy import event

    sync_engine = engine.sync_engine  # type: ignore[attr-defined]

    @event.listens_for(sync_engine, "connect")
    def _dead(*_args: object) -> None:
        raise ConnectionError("the process is gone")


async def test_new_tokens_the_database_cannot_take_are_kept_and_stored_before_they_are_used(
    fake: FakeZnsApi,
    api: ZnsApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_store = zns.store_pair
    failures = [ConnectionError("database down")]

    async def store_once_refused(*args: object, **kwargs: object) -> bool:
        if failures:
            raise failures.pop()
        return await real_store(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zns, "store_pair", store_once_refused)
    tokens = manager(api, sessionmaker, fake.refresh_token, Clock())
    with pytest.raises(TokenUnavailable) as caught:
        await tokens.access_token()
    assert not caught.value.needs_authorization
    # Not stored, so not used; and not refreshed again (that would kill the kept pair).
    assert (await stored(sessionmaker)).access_token is None
    access = await tokens.access_token()
    row = await stored(sessionmaker)
    assert (row.access_token, row.refresh_token) == (access, fake.refresh_token)
    assert len(fake.refresh_calls) == 1


async def test_a_new_refresh_token_in_the_configuration_is_a_new_authorization(
    fake: FakeZnsApi, api: ZnsApi, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    await manager(api, sessionmaker, fake.refresh_token, clock).access_token()
    # Lost somehow; the admin authorizes again and puts the new token in the environment.
    async with sessionmaker() as session, session.begin():
        row = await zns.locked_token(session, APP_ID)
        assert row is not None
        row.refresh_token = "R-dead"
        row.access_expires_at = None
    new = fake.authorize()
    access = await manager(api, sessionmaker, new, clock).access_token()
    assert access in fake.access_tokens
    assert fake.refresh_calls[-1] == new
    assert (await stored(sessionmaker)).seed_hash == zns.seed_hash(new)


async def test_without_any_refresh_token_zns_asks_for_one(
    api: ZnsApi, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    with pytest.raises(TokenUnavailable) as caught:
        await manager(api, sessionmaker, None, Clock()).access_token()
    assert caught.value.needs_authorization
    assert "[zns] refresh_token" in caught.value.reason


async def test_a_wrong_app_secret_is_a_refusal_that_never_shows_the_secret(
    fake: FakeZnsApi, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    wrong = ZnsApi(APP_ID, "not-the-secret", oauth_base=fake.base_url)
    refusals: list[str] = []
    try:
        with pytest.raises(TokenUnavailable) as caught:
            await manager(wrong, sessionmaker, fake.refresh_token, Clock(), refusals).access_token()
    finally:
        await wrong.close()
    assert caught.value.needs_authorization
    assert "not-the-secret" not in caught.value.reason
    assert fake.refresh_token not in caught.value.reason
    assert refusals
    assert "-14002" in refusals[0]


async def test_a_refusal_while_an_admin_stores_a_new_authorization_is_no_alarm(
    fake: FakeZnsApi,
    api: ZnsApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    refusals: list[str] = []
    tokens = manager(api, sessionmaker, "R-used-elsewhere", clock, refusals)
    real_refresh = api.refresh
    new = fake.authorize()

    async def refused_while_the_admin_acts(token: str) -> object:
        if token == "R-used-elsewhere":
            async with sessionmaker() as session, session.begin():
                await zns.set_refresh_token(
                    session, APP_ID, new, configured=tokens.configured, now=clock.now
                )
        return await real_refresh(token)

    monkeypatch.setattr(api, "refresh", refused_while_the_admin_acts)
    with pytest.raises(TokenUnavailable) as caught:
        await tokens.access_token()
    assert not caught.value.needs_authorization
    assert refusals == []
    assert (await stored(sessionmaker)).auth_error is None
    assert await tokens.access_token() in fake.access_tokens
