"""The web admin in a real browser: headless Chromium (Debian's) driven by Playwright.

The service runs as `trainingbot run` runs it (the Telegram channel against the fake Bot
API, the web admin on its own port); a learner registers in the chat and the staff see it
in the admin; staff send a broadcast and watch the delivery engine send it to the end.
`make test` installs Chromium when it is missing (Makefile: browser).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import BroadcastSettings, WebSettings
from db.models import ChannelAccount, Registration, RegistrationStatus, TrainingClass
from tests.factories import add_person, add_unit, link
from tests.fake_bot_api import FakeBotApi
from tests.telegram_support import fake_bot_api, free_port, in_days, running, settings_for
from tests.test_telegram_journeys import User, data_with, only
from tests.web_support import PASSWORD, add_account

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling Google's hosts, which
# this closed network refuses.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LEARNER = 111
# Learners linked on Telegram who get the broadcast.
CHATS = (301, 302, 303)
ANNOUNCEMENT = "Khai giảng lớp Kỹ năng số lúc 8 giờ sáng thứ Hai.\nĐồng chí mang theo máy tính."

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed: `make test` installs it (Makefile: browser)",
)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with fake_bot_api() as api:
        yield api


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def log_in(page: Page, base: str, username: str) -> None:
    """Log in through the form as a person would."""
    await page.goto(f"{base}/classes")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.get_by_label("Tên đăng nhập").fill(username)
    await page.get_by_label("Mật khẩu").fill(PASSWORD)
    await page.get_by_role("button", name="Đăng nhập").click()
    await expect(page.get_by_role("heading", name="Lớp học")).to_be_visible()


async def test_staff_create_a_class_and_see_a_chat_registration_appear(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    browser: Browser,
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        await add_person(session, "0912000178", "Phạm Thu Trang", unit)
        await add_account(session, "giaovu")
    port = free_port()
    settings = settings_for(api, database_url).model_copy(
        update={"web": WebSettings(listen_port=port)}
    )
    base = f"http://127.0.0.1:{port}"
    start = in_days(30)
    async with running(sessionmaker, settings, api):
        page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        await log_in(page, base, "giaovu")
        await page.get_by_role("link", name="Mở lớp mới").click()
        await page.get_by_label("Mã lớp").fill("KN-WEB-01")
        await page.get_by_label("Tên lớp").fill("Kỹ năng chuyển đổi số")
        await page.get_by_label("Chương trình").select_option("ky_nang")
        await page.get_by_label("Hình thức").select_option("full_time")
        await page.get_by_label("Địa điểm").fill("Hội trường A")
        await page.get_by_label("Ngày khai giảng").fill(start.isoformat())
        await page.get_by_label("Ngày kết thúc").fill(in_days(32).isoformat())
        await page.get_by_label("Hạn đăng ký").fill(in_days(25).isoformat())
        await page.get_by_label("Số chỗ").fill("20")
        await page.get_by_label("Chỉ tiêu theo đơn vị").fill("YTH:5")
        await page.get_by_role("button", name="Lưu").click()
        await expect(page.get_by_text("Đã mở lớp mới.")).to_be_visible()
        await expect(page.get_by_text("Chưa có ai đăng ký.")).to_be_visible()
        async with sessionmaker() as session:
            class_id = await session.scalar(
                select(TrainingClass.id).where(TrainingClass.code == "KN-WEB-01")
            )
        assert class_id is not None

        # A learner links their account and registers in the chat.
        learner = User(api, sessionmaker, LEARNER, language_code="vi")
        await learner.say("/start")
        await learner.share("84912000178", LEARNER)
        detail = only(await learner.say("/class KN-WEB-01"), "sendMessage")
        asked = only(await learner.press(data_with([detail], "rg:"), 4001), "editMessageText")
        only(await learner.press(data_with([asked], "rc:"), 4001), "editMessageText")

        await page.reload()
        await expect(page.get_by_role("heading", name=re.compile("Đã xác nhận"))).to_be_visible()
        await expect(page.locator("td.name", has_text="Phạm Thu Trang")).to_be_visible()
        # And staff cancel it from the phone; the learner is told in the chat.
        await page.get_by_text("Huỷ đăng ký…").click()
        await page.get_by_role("button", name="Xác nhận huỷ").click()
        await expect(page.get_by_text("Đã huỷ đăng ký")).to_be_visible()
        [notice] = await api.wait_for(
            "sendMessage", lambda p: "Nhà trường đã huỷ đăng ký" in p["text"], timeout=10
        )
        assert notice.params["chat_id"] == LEARNER
    async with sessionmaker() as session:
        status = await session.scalar(
            select(Registration.status).where(Registration.class_id == class_id)
        )
    assert status == RegistrationStatus.CANCELLED


async def test_staff_send_a_broadcast_and_watch_it_go_out_to_the_end(
    api: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    browser: Browser,
) -> None:
    async with sessionmaker() as session, session.begin():
        unit = await add_unit(session, "YTH", "Huyện Yên Thành")
        for number, chat in enumerate(CHATS):
            person = await add_person(session, f"091200030{number}", f"Học viên {number}", unit)
            await link(session, person, "telegram", str(chat))
        blocked = await add_person(session, "0912000309", "Người Đã Chặn", unit)
        session.add(
            ChannelAccount(
                person_id=blocked.id, channel="telegram", external_id="309", reachable=False
            )
        )
        await add_person(session, "0912000310", "Người Chưa Liên Kết", unit)
        await add_account(session, "giaovu")
    port = free_port()
    settings = settings_for(api, database_url).model_copy(
        update={
            "web": WebSettings(listen_port=port),
            # The broadcast's page reloads itself every second while it goes out.
            "broadcast": BroadcastSettings(progress_seconds=1),
        }
    )
    base = f"http://127.0.0.1:{port}"
    async with running(sessionmaker, settings, api):
        page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        await log_in(page, base, "giaovu")
        await page.get_by_role("link", name="Thông báo").click()
        await page.get_by_role("link", name="Viết thông báo mới").click()
        await page.get_by_label("Nội dung thông báo").fill(ANNOUNCEMENT)
        await page.get_by_label("Các đơn vị chọn").check()
        await page.get_by_label("Huyện Yên Thành").check()
        await page.get_by_role("button", name="Xem trước").click()
        await expect(page.get_by_text("Người nhận sẽ thấy")).to_be_visible()
        await expect(page.locator("dd.total")).to_have_text("5")
        await expect(page.locator("dd.reachable")).to_have_text("3")
        assert api.calls_of("sendMessage") == []

        # The first notice is held at the Bot API: the page shows it going out.
        api.hold("sendMessage")
        await page.get_by_role("button", name="Gửi đến 3 người").click()
        await expect(page.get_by_text("Đã bắt đầu gửi.")).to_be_visible()
        await api.wait_for("sendMessage")
        await page.reload()
        await expect(page.locator(".tag", has_text="Đang gửi")).to_be_visible()
        await expect(page.locator("dd.left")).to_have_text("3")
        # Released: one learner blocked the bot meanwhile; the page follows on its own.
        api.fail_blocked()
        api.release_all()
        await expect(page.get_by_role("heading", name="Kết quả")).to_be_visible(timeout=15_000)
        await expect(page.locator(".heading .tag")).to_have_text("Đã gửi xong")
        await expect(page.locator("dd.delivered")).to_have_text("2")
        await expect(page.locator("dd.blocked")).to_have_text("2")  # one at the start, one now
        await expect(page.locator("dd.never-linked")).to_have_text("1")
        await expect(page.get_by_role("button", name="Dừng gửi")).to_have_count(0)
    sent = api.calls_of("sendMessage")
    assert sorted(call.params["chat_id"] for call in sent) == sorted(CHATS)
    assert all(ANNOUNCEMENT.splitlines()[0] in call.params["text"] for call in sent)
    assert all("Thông báo của Nhà trường" in call.params["text"] for call in sent)
