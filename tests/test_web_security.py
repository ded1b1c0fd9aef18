"""The web admin's security: login required, CSRF, unit scopes, escaping, lock-out, cookies."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import broadcasts
from db.broadcasts import Audience, AudienceKind
from db.models import (
    AccountRole,
    AdminSession,
    AuditEntry,
    Broadcast,
    BroadcastStatus,
    LinkCode,
    OutboxMessage,
    Registration,
    RegistrationStatus,
    TrainingClass,
)
from handlers.broadcast import school_announcement
from handlers.notices import encode_reply
from tests.factories import NOW, TODAY, add_person, add_registration, link
from tests.web_support import Clock, Site, add_account, admin_site, visible_text, web_settings
from tests.web_world import World, build_world

# Every page and action of the admin, as (method, path template).
ROUTES = [
    ("GET", "/"),
    ("GET", "/classes"),
    ("GET", "/classes/new"),
    ("POST", "/classes/new"),
    ("GET", "/classes/{class_id}"),
    ("GET", "/classes/{class_id}/edit"),
    ("POST", "/classes/{class_id}/edit"),
    ("POST", "/classes/{class_id}/close"),
    ("POST", "/classes/{class_id}/reopen"),
    ("GET", "/classes/{class_id}/registrations.xlsx"),
    ("POST", "/registrations/{registration_id}/approve"),
    ("POST", "/registrations/{registration_id}/reject"),
    ("POST", "/registrations/{registration_id}/cancel"),
    ("GET", "/units"),
    ("GET", "/units/{unit_id}"),
    ("GET", "/people"),
    ("GET", "/failures"),
    ("GET", "/audit"),
    ("GET", "/uploads"),
    ("POST", "/uploads"),
    ("GET", "/uploads/1"),
    ("POST", "/uploads/1/apply"),
    ("GET", "/people/{person_id}"),
    ("POST", "/people/{person_id}/link-code"),
    ("GET", "/broadcasts"),
    ("GET", "/broadcasts/new"),
    ("POST", "/broadcasts/new"),
    ("GET", "/broadcasts/{draft_id}"),
    ("GET", "/broadcasts/{draft_id}/edit"),
    ("POST", "/broadcasts/{draft_id}/edit"),
    ("POST", "/broadcasts/{draft_id}/urgent"),
    ("POST", "/broadcasts/{draft_id}/send"),
    ("POST", "/broadcasts/{draft_id}/drop"),
    ("POST", "/broadcasts/{sending_id}/stop"),
    ("POST", "/logout"),
]


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    """The web world, its people linked on Telegram, and two broadcasts of the admin account.

    A draft (to everyone, ready to send) and one going out, both without a roster author
    (an admin account without a person wrote them).
    """
    world = await build_world(sessionmaker)
    async with sessionmaker() as session, session.begin():
        for person, chat in ((world.head, "175"), (world.learner, "178"), (world.other, "190")):
            await link(session, person, "telegram", chat)
        for text in ("Bản nháp của Trường", "Thông báo toàn Trường"):
            made = await broadcasts.create_draft(
                session,
                author_id=None,
                scope_unit_id=None,
                text=text,
                message=encode_reply(school_announcement(None, text)),
                now=NOW,
            )
            made.audience = Audience(AudienceKind.EVERYONE).as_json()
        await session.flush()
        await broadcasts.start(
            session, made.id, author_id=None, scope_unit_id=None, now=NOW, today=TODAY
        )
    return world


async def broadcast_ids(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessionmaker() as session:
        rows = (await session.execute(select(Broadcast.status, Broadcast.id))).all()
    return {status.value: broadcast_id for status, broadcast_id in rows}


# A form that every action would take (a broadcast's text and audience, a class's fields).
FORGED = {"text": "forged", "kind": "everyone", "urgent": "1", "tag": "1"}


@pytest.fixture
async def site(sessionmaker: async_sessionmaker[AsyncSession], world: World) -> AsyncIterator[Site]:
    async with admin_site(sessionmaker) as site:
        yield site


async def snapshot(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[Any, ...]:
    """Return what an action could change: statuses, classes, notices, audit entries."""
    async with sessionmaker() as session:
        statuses = sorted(
            (await session.execute(select(Registration.id, Registration.status))).all()
        )
        classes = sorted(
            (
                await session.execute(
                    select(TrainingClass.code, TrainingClass.status, TrainingClass.capacity)
                )
            ).all()
        )
        notices = await session.scalar(select(func.count()).select_from(OutboxMessage))
        audits = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action != "login")
        )
        casts = sorted(
            (
                await session.execute(
                    select(Broadcast.id, Broadcast.status, Broadcast.urgent, Broadcast.audience)
                )
            ).all(),
            key=lambda row: row[0],
        )
        queued = sorted(
            (await session.execute(select(OutboxMessage.id, OutboxMessage.status))).all()
        )
        codes = await session.scalar(select(func.count()).select_from(LinkCode))
    return statuses, classes, notices, audits, casts, queued, codes


def fill(path: str, world: World, ids: dict[str, int]) -> str:
    return path.format(
        class_id=world.shared.id,
        registration_id=world.own_pending.id,
        unit_id=world.yen_thanh.id,
        person_id=world.learner.id,
        draft_id=ids["draft"],
        sending_id=ids["sending"],
    )


async def test_no_page_or_action_without_login(
    site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    before = await snapshot(sessionmaker)
    ids = await broadcast_ids(sessionmaker)
    for method, template in ROUTES:
        path = fill(template, world, ids)
        response = await site.client.request(
            method, path, data={**FORGED, "capacity": "99"}, allow_redirects=False
        )
        if method == "GET":
            assert response.status == 303, path
            assert response.headers["Location"].startswith("/login?next="), path
        else:
            assert response.status == 403, path
            assert "đăng nhập" in await response.text()
    assert await snapshot(sessionmaker) == before


async def test_a_forged_or_missing_csrf_token_is_refused_and_changes_nothing(
    site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    visitor = await site.visitor().logged_in("admin")
    before = await snapshot(sessionmaker)
    ids = await broadcast_ids(sessionmaker)
    for method, template in ROUTES:
        if method != "POST" or template == "/logout":
            continue
        for token in ("", "forged-token", visitor.token[:-1]):
            form = {**FORGED, "capacity": "99"}
            response = await visitor.post(fill(template, world, ids), form, token=token)
            assert response.status == 403, (template, token)
            assert "Biểu mẫu đã cũ hoặc không hợp lệ" in visitor.last_text
    assert await snapshot(sessionmaker) == before
    # The same action with the page's token goes through.
    await visitor.page(f"/classes/{world.shared.id}")
    response = await visitor.post(f"/registrations/{world.own_pending.id}/approve")
    assert response.status == 303
    assert (await snapshot(sessionmaker)) != before


async def test_a_login_post_without_its_cookie_token_is_refused(
    site: Site,
) -> None:
    visitor = site.visitor()
    await visitor.get("/login")
    visitor.http.cookie_jar.clear()
    response = await visitor.post("/login", {"username": "admin", "password": "x" * 12})
    assert response.status == 403
    assert "tb_session" not in visitor.cookies


async def test_another_sites_form_cannot_use_the_session(
    site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    visitor = await site.visitor().logged_in("admin")
    before = await snapshot(sessionmaker)
    # A page elsewhere can make the browser post with its cookie, but cannot read the token.
    response = await visitor.http.post(
        f"/classes/{world.shared.id}/close", data={}, allow_redirects=False
    )
    assert response.status == 403
    assert await snapshot(sessionmaker) == before
    assert visitor.token


async def test_a_unit_head_sees_and_acts_on_their_units_only(
    site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    head = await site.visitor().logged_in("head")
    page = visible_text(await head.page(f"/classes/{world.shared.id}"))
    assert "Phạm Thu Trang" in page
    assert "Hồ Văn Nam" not in page
    # Forged ids: another unit's class, unit, people and registration.
    assert (await head.get(f"/classes/{world.dien_chau_only.id}")).status == 404
    assert (await head.get(f"/classes/{world.dien_chau_only.id}/registrations.xlsx")).status == 404
    assert (await head.get(f"/units/{world.dien_chau.id}")).status == 404
    assert (await head.get(f"/units/{world.province.id}")).status == 404
    assert (await head.get(f"/people?unit={world.dien_chau.id}")).status == 404
    people = visible_text(await head.page("/people"))
    assert "Phạm Thu Trang" in people
    assert "Hồ Văn Nam" not in people
    assert "Hồ Văn Nam" not in visible_text(await head.page("/people?q=0912000190"))
    before = await snapshot(sessionmaker)
    await head.page(f"/classes/{world.shared.id}")
    for action in ("approve", "reject", "cancel"):
        response = await head.post(
            f"/registrations/{world.other_pending.id}/{action}", {"reason": "forged"}
        )
        assert response.status == 404, action
    # Admin-only pages and actions.
    for path in (
        "/uploads",
        "/audit",
        "/failures",
        "/classes/new",
        f"/classes/{world.shared.id}/edit",
    ):
        assert (await head.get(path)).status == 403, path
    for path in ("/classes/new", f"/classes/{world.shared.id}/close"):
        assert (await head.post(path, {"code": "X-1"})).status == 403, path
    assert await snapshot(sessionmaker) == before
    # Their own unit's registration: decided, as in the chat.
    response = await head.post(f"/registrations/{world.own_pending.id}/approve")
    assert response.status == 303
    async with sessionmaker() as session:
        own = await session.get(Registration, world.own_pending.id)
        assert own is not None
        assert own.status == RegistrationStatus.CONFIRMED
        assert own.decided_by_id == world.head.id


async def test_html_in_names_and_messages_is_escaped(
    site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    async with sessionmaker() as session, session.begin():
        learner = await session.merge(world.learner)
        learner.full_name = attack
        training_class = await session.merge(world.shared)
        training_class.title = attack
        training_class.location = attack
    admin = await site.visitor().logged_in("admin")
    for path in (
        f"/classes/{world.shared.id}",
        "/classes",
        "/people",
        f"/units/{world.yen_thanh.id}",
    ):
        page = await admin.page(path)
        assert "<script>" not in page, path
        assert "<img src=x" not in page, path
        assert "&lt;script&gt;" in page, path
    # A rejection reason typed with HTML, shown in the audit log.
    await admin.page(f"/classes/{world.shared.id}")
    await admin.post(f"/registrations/{world.other_pending.id}/reject", {"reason": attack})
    page = await admin.page("/audit")
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


async def test_repeated_failures_lock_the_account_with_a_clear_message_until_it_expires(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    clock = Clock()
    async with admin_site(sessionmaker, clock=clock) as site:
        visitor = site.visitor()
        for _ in range(4):
            assert (await visitor.login("admin", "wrong password!")).status == 401
            assert "không đúng" in visitor.last_text
        response = await visitor.login("admin", "wrong password!")
        assert response.status == 429
        assert "tạm khoá đến" in visible_text(visitor.last_text)
        # Locked: even the right password is refused, with the same message.
        response = await visitor.login("admin")
        assert response.status == 429
        assert "tạm khoá đến" in visible_text(visitor.last_text)
        # Another account from another address is not locked.
        other = site.visitor()
        await other.logged_in("head")
        clock.advance(minutes=16)
        response = await visitor.login("admin")
        assert response.status == 303


async def test_repeated_failures_from_one_address_lock_that_address(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    settings = web_settings(lockout_address_failures=3, lockout_failures=100)
    async with admin_site(sessionmaker, settings) as site:
        visitor = site.visitor()
        # The test client is a local proxy (trusted): X-Forwarded-For names the client.
        attacker = {"X-Forwarded-For": "203.0.113.9"}
        for name in ("a1", "a2"):
            assert (await visitor.login(name, "guess guess guess", headers=attacker)).status == 401
        assert (await visitor.login("a3", "guess guess guess", headers=attacker)).status == 429
        # Locked for every account from that address, the real one too.
        assert (await visitor.login("admin", headers=attacker)).status == 429
        # Another client behind the same proxy is not.
        assert (
            await visitor.login("admin", headers={"X-Forwarded-For": "198.51.100.7"})
        ).status == 303


async def test_a_forwarded_address_counts_only_from_a_trusted_proxy(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    settings = web_settings(lockout_address_failures=2, lockout_failures=100, trusted_proxies=[])
    async with admin_site(sessionmaker, settings) as site:
        visitor = site.visitor()
        # Not trusted: each forged header is ignored, the peer's address is counted.
        first = {"X-Forwarded-For": "192.0.2.1"}
        second = {"X-Forwarded-For": "192.0.2.2"}
        assert (await visitor.login("x1", "guess guess guess", headers=first)).status == 401
        assert (await visitor.login("x2", "guess guess guess", headers=second)).status == 429


async def test_session_cookie_flags_over_http_and_behind_tls(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    async with admin_site(sessionmaker) as site:
        response = await site.visitor().login("admin")
        cookie = response.cookies["tb_session"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Lax"
        assert cookie["path"] == "/"
        assert not cookie["secure"]
    secure = web_settings(public_url="https://admin.truongchinhtri.example.vn")
    async with admin_site(sessionmaker, secure) as site:
        client = site.client
        form = {"username": "admin", "password": "correct horse battery staple"}
        # Over plain HTTP a browser does not send a Secure cookie back: the test passes it.
        raw = await client.get("/login", allow_redirects=False)
        login_cookie = raw.cookies["tb_login_csrf"]
        assert login_cookie["secure"]
        response = await client.post(
            "/login",
            data=form | {"csrf_token": login_cookie.value},
            cookies={"tb_login_csrf": login_cookie.value},
            allow_redirects=False,
        )
        assert response.status == 303
        cookie = response.cookies["__Host-tb_session"]
        assert cookie["secure"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Lax"
        assert cookie["path"] == "/"
        assert not cookie["domain"]


async def test_sessions_expire_end_at_logout_and_are_shared_by_processes(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    clock = Clock()
    async with (
        admin_site(sessionmaker, clock=clock) as first,
        admin_site(sessionmaker, clock=clock) as second,
    ):
        visitor = await first.visitor().logged_in("admin")
        # Another process on the same database knows the session.
        response = await second.client.get(
            "/classes", cookies={"tb_session": visitor.cookies["tb_session"]}, allow_redirects=False
        )
        assert response.status == 200
        clock.advance(hours=12, seconds=1)
        assert (await visitor.get("/classes")).status == 303
        await visitor.logged_in("admin")
        await visitor.post("/logout")
        assert (await visitor.get("/classes")).status == 303
        async with sessionmaker() as session:
            left = await session.scalar(select(func.count()).select_from(AdminSession))
        assert left == 0  # the expired one went at the second login, the other at logout


async def test_every_answer_carries_the_security_headers(site: Site) -> None:
    for path in ("/login", "/classes", "/healthz", "/no-such-page"):
        response = await site.client.get(path, allow_redirects=False)
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path


async def test_two_logins_at_once_both_count_as_failures(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    settings = web_settings(lockout_failures=2)
    async with admin_site(sessionmaker, settings) as site:
        visitors = [site.visitor(), site.visitor()]
        for visitor in visitors:
            await visitor.get("/login")
        answers = await asyncio.gather(
            *(
                v.post("/login", {"username": "admin", "password": "wrong password"})
                for v in visitors
            )
        )
        assert sorted(a.status for a in answers) == [401, 429]


async def test_a_unit_heads_account_cannot_see_stop_or_send_anothers_broadcast(
    site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await broadcast_ids(sessionmaker)
    async with sessionmaker() as session, session.begin():
        # Diễn Châu's head, with a web account, sends to their own unit.
        other_head = await add_person(session, "0912000195", "Nguyễn Văn Diễn", world.dien_chau)
        other_head.is_unit_head = True
        await add_account(session, "head2", AccountRole.UNIT_HEAD, other_head)
        theirs = await broadcasts.create_draft(
            session,
            author_id=other_head.id,
            scope_unit_id=world.dien_chau.id,
            text="Việc riêng Diễn Châu",
            message=encode_reply(school_announcement("Huyện Diễn Châu", "Việc riêng Diễn Châu")),
            now=NOW,
        )
        theirs.audience = Audience(AudienceKind.UNITS, (world.dien_chau.id,)).as_json()
        await session.flush()
        await broadcasts.start(
            session,
            theirs.id,
            author_id=other_head.id,
            scope_unit_id=world.dien_chau.id,
            now=NOW,
            today=TODAY,
        )
    head = await site.visitor().logged_in("head")
    listed = visible_text(await head.page("/broadcasts"))
    for text in ("Thông báo toàn Trường", "Việc riêng Diễn Châu", "Bản nháp của Trường"):
        assert text not in listed
    before = await snapshot(sessionmaker)
    for broadcast_id in (ids["sending"], theirs.id, ids["draft"]):
        assert (await head.get(f"/broadcasts/{broadcast_id}")).status == 404
        assert (await head.get(f"/broadcasts/{broadcast_id}/edit")).status == 404
        for action in ("stop", "send", "drop", "urgent", "edit"):
            response = await head.post(
                f"/broadcasts/{broadcast_id}/{action}", {**FORGED, "tag": "1"}
            )
            assert response.status == 404, (broadcast_id, action)
    assert await snapshot(sessionmaker) == before
    # The other head sees and stops their own, and only that.
    other = await site.visitor().logged_in("head2")
    assert "Việc riêng Diễn Châu" in visible_text(await other.page(f"/broadcasts/{theirs.id}"))
    assert (await other.get(f"/broadcasts/{ids['sending']}")).status == 404
    assert (await other.post(f"/broadcasts/{theirs.id}/stop")).status == 303
    async with sessionmaker() as session:
        stopped = await session.get(Broadcast, theirs.id)
        assert stopped is not None
        assert stopped.status == BroadcastStatus.STOPPED


async def test_a_unit_heads_forged_units_and_classes_are_refused(
    site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        other = await session.merge(world.other)
        klass = await session.merge(world.dien_chau_only)
        await add_registration(session, other, klass, RegistrationStatus.CONFIRMED)
    head = await site.visitor().logged_in("head")
    form = visible_text(await head.page("/broadcasts/new"))
    assert "Huyện Diễn Châu" not in form
    assert "NV-02" not in form
    before = await snapshot(sessionmaker)
    for forged in (
        {"kind": "units", "unit": str(world.dien_chau.id)},
        {"kind": "units", "unit": str(world.province.id)},
        {"kind": "class", "class_id": str(world.dien_chau_only.id)},
    ):
        response = await head.post("/broadcasts/new", {"text": "Họp", **forged})
        assert response.status == 422, forged
        assert "chưa lưu gì" in visible_text(head.last_text)
    assert await snapshot(sessionmaker) == before
    # Their own draft cannot be turned to another unit either.
    response = await head.post(
        "/broadcasts/new", {"text": "Họp", "kind": "units", "unit": str(world.yen_thanh.id)}
    )
    own = response.headers["Location"]
    await head.page(f"{own}/edit")
    response = await head.post(
        f"{own}/edit", {"text": "Họp", "kind": "units", "unit": str(world.dien_chau.id)}
    )
    assert response.status == 422
    async with sessionmaker() as session:
        draft = await session.get(Broadcast, int(own.rsplit("/", 1)[1]))
        assert draft is not None
        assert draft.audience == {"kind": "units", "unit_ids": [world.yen_thanh.id]}
    # A head no longer heading a unit (a roster import) may not broadcast from the web.
    async with sessionmaker() as session, session.begin():
        demoted = await session.merge(world.head)
        demoted.is_unit_head = False
    assert (await head.get("/broadcasts/new")).status == 403
    assert "thủ trưởng đơn vị" in visible_text(head.last_text)


async def test_a_unit_heads_account_cannot_see_or_issue_a_code_for_another_units_person(
    site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    head = await site.visitor().logged_in("head")
    before = await snapshot(sessionmaker)
    assert (await head.get(f"/people/{world.other.id}")).status == 404
    await head.page(f"/people/{world.learner.id}")
    response = await head.post(f"/people/{world.other.id}/link-code")
    assert response.status == 404
    assert "Hồ Văn Nam" not in head.last_text
    assert await snapshot(sessionmaker) == before


async def test_html_in_broadcasts_and_on_a_persons_page_is_escaped(
    site: Site, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    async with sessionmaker() as session, session.begin():
        learner = await session.merge(world.learner)
        learner.full_name = attack
    admin = await site.visitor().logged_in("admin")
    await admin.page("/broadcasts/new")
    response = await admin.post("/broadcasts/new", {"text": attack, "kind": "everyone"})
    preview = response.headers["Location"]
    page = await admin.page(preview)
    tag = re.search(r'name="tag" value="(\d+)"', page)
    assert tag is not None
    await admin.post(f"{preview}/send", {"tag": tag[1]})
    await admin.page(f"/people/{world.learner.id}")
    await admin.post(f"/people/{world.learner.id}/link-code")
    pages = [
        admin.last_text,
        page,
        await admin.page(preview),
        await admin.page("/broadcasts"),
        await admin.page(f"/people/{world.learner.id}"),
        await admin.page("/audit"),
    ]
    for number, html in enumerate(pages):
        assert "<script>" not in html, number
        assert "<img src=x" not in html, number
        assert "&lt;script&gt;" in html, number
