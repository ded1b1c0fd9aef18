"""A person's page in the web admin, and the one-time Zalo link code staff issue there.

The code is shown once, stored only hashed, audited without the code, works once for a
day, and links the person's Zalo account when typed in a Zalo chat (through dispatch).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import link_codes
from db.models import AuditEntry, ChannelAccount, LinkCode
from tests.factories import NOW, Chat, link
from tests.web_support import Clock, Site, Visitor, admin_site, visible_text
from tests.web_world import World, build_world

CODE = re.compile(r'<p class="link-code">(\d{6})</p>')


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    return await build_world(sessionmaker, NOW.date())


@pytest.fixture
async def site(sessionmaker: async_sessionmaker[AsyncSession], world: World) -> AsyncIterator[Site]:
    # The chat below runs at NOW: the admin's clock too, so the code is live for both.
    async with admin_site(sessionmaker, clock=Clock(NOW)) as site:
        yield site


@pytest.fixture
async def admin(site: Site) -> Visitor:
    return await site.visitor().logged_in("admin")


def zalo_chat(sessionmaker: async_sessionmaker[AsyncSession], user_id: str) -> Chat:
    return Chat(sessionmaker, user_id=user_id, channel="zalo", links_by_code=True)


async def issue(visitor: Visitor, person_id: int) -> str:
    """Press the button on the person's page; return the code shown."""
    await visitor.page(f"/people/{person_id}")
    response = await visitor.post(f"/people/{person_id}/link-code")
    assert response.status == 200, visible_text(visitor.last_text)[:300]
    found = CODE.search(visitor.last_text)
    assert found is not None
    return found[1]


async def test_the_people_list_leads_to_a_persons_page(admin: Visitor, world: World) -> None:
    assert f'href="/people/{world.learner.id}"' in await admin.page("/people")
    page = visible_text(await admin.page(f"/people/{world.learner.id}"))
    assert "Phạm Thu Trang" in page
    assert "0912000178 Đơn vị Huyện Yên Thành" in page
    assert "Chưa liên kết tài khoản chat nào." in page
    assert "mã dùng được 24 giờ" in page
    assert "Cấp mã liên kết Zalo" in page
    assert (await admin.get("/people/99999")).status == 404


async def test_an_issued_code_is_shown_once_audited_without_it_and_links_zalo(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    code = await issue(admin, world.learner.id)
    shown = visible_text(admin.last_text)
    expires = NOW + link_codes.STAFF_LIFETIME
    local = expires.astimezone(dt.timezone(dt.timedelta(hours=7)))
    assert f"hiệu lực 24 giờ (đến {local:%d/%m/%Y %H:%M})" in shown
    assert "nhắn số điện thoại 0912000178 cho bot của Trường trên Zalo" in shown
    async with sessionmaker() as session:
        [row] = (await session.scalars(select(LinkCode))).all()
        entry = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "person.link_code"))
        ).one()
    # Only a hash is stored; the admin account has no roster person to record as issuer.
    assert code not in row.code_hash
    assert link_codes.code_matches(code, row.code_hash)
    assert (row.person_id, row.channel, row.external_id, row.issued_by_id) == (
        world.learner.id,
        "zalo",
        None,
        None,
    )
    assert (row.expires_at, entry.target_id, entry.username) == (
        expires,
        str(world.learner.id),
        "admin",
    )
    assert code not in str(entry.details)
    assert code not in entry.target_label
    # Shown once: the page read again does not show it, only that one is live.
    again = await admin.page(f"/people/{world.learner.id}")
    assert code not in again
    assert "Đã có một mã chưa dùng" in visible_text(again)
    # The learner types their phone, then the code, in Zalo: linked.
    chat = zalo_chat(sessionmaker, "zl-trang")
    await chat.say("0912000178")
    assert "Kính chào đồng chí Phạm Thu Trang" in await chat.say(code)
    page = visible_text(await admin.page(f"/people/{world.learner.id}"))
    assert "Zalo · liên kết" in page
    assert "đã liên kết Zalo" in page
    assert "Cấp mã liên kết Zalo" not in page


async def test_a_new_code_ends_the_earlier_one(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = await issue(admin, world.learner.id)
    second = await issue(admin, world.learner.id)
    async with sessionmaker() as session:
        earlier, later = (await session.scalars(select(LinkCode).order_by(LinkCode.id))).all()
    assert link_codes.code_matches(first, earlier.code_hash)
    assert earlier.expires_at == NOW  # ended by the new one
    assert link_codes.code_matches(second, later.code_hash)
    chat = zalo_chat(sessionmaker, "zl-trang")
    await chat.say("0912000178")
    assert "Kính chào đồng chí Phạm Thu Trang" in await chat.say(second)


async def test_a_unit_head_issues_a_code_for_their_unit_as_themselves(
    site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    head = await site.visitor().logged_in("head")
    await issue(head, world.learner.id)
    async with sessionmaker() as session:
        [row] = (await session.scalars(select(LinkCode))).all()
    assert row.issued_by_id == world.head.id


async def test_no_code_for_someone_already_linked_on_zalo(
    admin: Visitor, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        await link(session, world.learner, "zalo", "zl-old")
    page = visible_text(await admin.page(f"/people/{world.learner.id}"))
    assert "đã liên kết Zalo" in page
    assert "Cấp mã liên kết Zalo" not in page
    # A form posted anyway (an old page) is answered, and issues nothing.
    response = await admin.post(f"/people/{world.learner.id}/link-code")
    assert response.status == 409
    assert "đã liên kết Zalo" in visible_text(admin.last_text)
    async with sessionmaker() as session:
        assert (await session.scalars(select(LinkCode))).all() == []
        accounts = (await session.scalars(select(ChannelAccount.external_id))).all()
    assert accounts == ["zl-old"]
