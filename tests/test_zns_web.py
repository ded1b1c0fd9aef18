"""The web admin's ZNS page: spend, quota and tokens for admins only, and a new authorization's
refresh token stored, checked with (the fake) Zalo and logged without the token."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import zns
from db.models import AuditEntry, OutboxMessage, OutboxStatus, ZnsBudget, ZnsEvent, ZnsToken
from tests.fake_zns_api import APP_ID, FakeZnsApi, fake_zns_api, user_text
from tests.web_support import Site, Visitor, admin_site, visible_text, web_settings
from tests.web_world import World, build_world
from tests.zns_support import zns_section


@pytest.fixture
async def fake() -> AsyncIterator[FakeZnsApi]:
    async with fake_zns_api() as api:
        yield api


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    return await build_world(sessionmaker)


@pytest.fixture
async def site(
    sessionmaker: async_sessionmaker[AsyncSession], world: World, fake: FakeZnsApi
) -> AsyncIterator[Site]:
    settings = web_settings().model_copy(update={"zns": zns_section(fake, daily_limit=300)})
    async with admin_site(sessionmaker, settings) as site:
        yield site


@pytest.fixture
async def admin(site: Site) -> Visitor:
    return await site.visitor().logged_in("admin")


async def test_admins_see_spend_quota_templates_and_the_latest_notices_and_events(
    admin: Visitor, site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    now = dt.datetime.now(dt.UTC)
    async with sessionmaker() as s, s.begin():
        for number, delivered in enumerate([now, None, None]):
            s.add(
                OutboxMessage(
                    idempotency_key=f"reminder:{number}",
                    person_id=world.learner.id,
                    channel="zns",
                    kind="class.reminder",
                    status=OutboxStatus.SENT,
                    sent_at=now,
                    delivered_at=delivered,
                    tracking_id=zns.tracking_id(f"reminder:{number}"),
                )
            )
        today = now.astimezone(dt.timezone(dt.timedelta(hours=7))).date()
        s.add(
            ZnsBudget(
                app_id=APP_ID,
                day=today,
                claimed=3,
                daily_quota=500,
                remaining=497,
                remaining_claimed=3,
                reported_at=now,
            )
        )
        s.add(
            ZnsEvent(
                event_key="user_send_text:m1",
                event_name="user_send_text",
                user_id="7001",
                payload=user_text("7001", "<b>alo</b>", "m1"),
                reply_status="sent",
            )
        )
    page = visible_text(await admin.page("/zns"))
    assert "Thông báo ZNS" in page
    assert "Hôm nay 3 1" in page
    assert "còn 497 / 500 tin" in page
    assert "300 tin mỗi ngày (hôm nay đã dùng 3)" in page
    assert "reminder 251234" in page
    assert "Phạm Thu Trang class.reminder sent" in page
    assert "user_send_text 7001 sent" in page
    # A unit head's account does not see it.
    head = await site.visitor().logged_in("head")
    assert (await head.get("/zns")).status == 403


async def test_a_new_authorization_is_stored_checked_and_logged_without_the_token(
    admin: Visitor,
    fake: FakeZnsApi,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s, s.begin():
        s.add(
            ZnsToken(
                app_id=APP_ID,
                refresh_token="R-dead",
                seed_hash=zns.seed_hash(fake.refresh_token),
                auth_error="-14014 Refresh token is invalid or expired",
                auth_error_at=dt.datetime.now(dt.UTC),
            )
        )
    page = visible_text(await admin.page("/zns"))
    assert "Zalo không chấp nhận mã làm mới" in page
    # A refused token: said so, and ZNS still waits for a good one.
    response = await admin.post("/zns/token", {"refresh_token": "R-wrong"})
    assert response.headers["Location"] == "/zns?error=refused"
    assert "Zalo không chấp nhận mã này" in visible_text(await admin.page("/zns?error=refused"))
    # The new authorization's token: stored, accepted, its successor kept.
    new = fake.authorize()
    response = await admin.post("/zns/token", {"refresh_token": new})
    assert response.headers["Location"] == "/zns?done=token"
    page = await admin.page("/zns?done=token")
    assert "Zalo đã chấp nhận mã mới" in visible_text(page)
    assert "Zalo không chấp nhận mã làm mới" not in visible_text(page)
    assert new not in page
    async with sessionmaker() as session:
        row = await session.get(ZnsToken, APP_ID)
        entries = (await session.scalars(select(AuditEntry))).all()
    assert row is not None
    assert row.auth_error is None
    assert row.refresh_token == fake.refresh_token
    assert row.access_token in fake.access_tokens
    logged = [entry for entry in entries if entry.action == "zns.token"]
    assert len(logged) == 2
    assert all(new not in f"{e.target_label} {e.details}" for e in logged)
    assert all(e.username == "admin" for e in logged)
    # Without the form's CSRF token nothing is stored.
    response = await admin.post("/zns/token", {"refresh_token": "R-x"}, token="forged")
    assert response.status == 403
    async with sessionmaker() as session:
        row = await session.get(ZnsToken, APP_ID, populate_existing=True)
    assert row is not None
    assert row.refresh_token != "R-x"


async def test_a_blank_or_spaced_token_is_refused_with_a_sentence(
    admin: Visitor, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await admin.post("/zns/token", {"refresh_token": "two words"})
    assert response.headers["Location"] == "/zns?error=bad_token"
    assert "không có khoảng trắng" in visible_text(await admin.page("/zns?error=bad_token"))
    async with sessionmaker() as session:
        assert await session.get(ZnsToken, APP_ID) is None
