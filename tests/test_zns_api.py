"""The ZNS/OA client against the fake Zalo over HTTP, and the values a template gets from a
notice (handlers/zns_fields.py) as the real jobs write them."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.channels.zns_api import ZnsApi, ZnsApiError, ZnsNetworkError, quota_of
from db.models import Form, Program, TrainingClass
from handlers.types import Msg, Reply
from handlers.zns_fields import MISSING, ZNS_KINDS, kind_of, notice_values, template_data
from jobs.class_changes import change_lines
from jobs.runner import Tick
from jobs.timing import NotifySettings
from jobs.unit_alerts import deadline_reply
from tests.factories import TODAY
from tests.fake_zns_api import APP_ID, REMINDER_TEMPLATE, SECRET_KEY, FakeZnsApi, fake_zns_api
from tests.telegram_support import free_port


@pytest.fixture
async def fake() -> AsyncIterator[FakeZnsApi]:
    async with fake_zns_api() as api:
        yield api


@pytest.fixture
async def api(fake: FakeZnsApi) -> AsyncIterator[ZnsApi]:
    client = ZnsApi(
        APP_ID, SECRET_KEY, oauth_base=fake.base_url, zns_base=fake.base_url, oa_base=fake.base_url
    )
    yield client
    await client.close()


DATA = {"ho_ten": "Lan", "ma_lop": "K45", "ten_lop": "KN", "thoi_gian": "t", "dia_diem": "d"}


async def test_refresh_send_quota_and_text_over_http(fake: FakeZnsApi, api: ZnsApi) -> None:
    pair = await api.refresh(fake.refresh_token)
    assert pair.expires_in == 90_000
    accepted = await api.send_template(
        pair.access_token,
        phone="84912000402",
        template_id=REMINDER_TEMPLATE,
        data=DATA,
        tracking_id="t" * 32,
    )
    assert accepted.msg_id == fake.sent[0].msg_id
    assert (accepted.quota.daily, accepted.quota.remaining) == (500, 499)
    quota = await api.quota(pair.access_token)
    assert (quota.daily, quota.remaining) == (500, 499)
    assert await api.send_text(pair.access_token, "7001", "xin chào")
    assert fake.texts == [("7001", "xin chào")]


async def test_errors_come_as_http_200_with_a_code_and_never_show_a_secret(
    fake: FakeZnsApi, api: ZnsApi
) -> None:
    pair = await api.refresh(fake.refresh_token)
    with pytest.raises(ZnsApiError) as caught:
        await api.send_template(
            "not-a-token",
            phone="84912000402",
            template_id=REMINDER_TEMPLATE,
            data=DATA,
            tracking_id="t1",
        )
    assert (caught.value.code, caught.value.kind) == (-124, "token")
    with pytest.raises(ZnsApiError) as caught:
        await api.send_template(
            pair.access_token, phone="84912000402", template_id="999", data=DATA, tracking_id="t2"
        )
    assert (caught.value.code, caught.value.kind) == (-109, "request")
    with pytest.raises(ZnsApiError) as caught:
        await api.refresh("used-token")
    assert caught.value.code == -14014
    for text in (str(caught.value), caught.value.message):
        assert SECRET_KEY not in text
        assert "used-token" not in text
        assert pair.access_token not in text


async def test_no_answer_is_a_network_error_that_names_no_secret() -> None:
    # Nothing listens there; and a server that answers HTML.
    client = ZnsApi(APP_ID, SECRET_KEY, oauth_base=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ZnsNetworkError) as caught:
        await client.refresh("R-secret")
    await client.close()
    assert "R-secret" not in str(caught.value)
    assert SECRET_KEY not in str(caught.value)

    async def html(_request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", html)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = ZnsApi(APP_ID, SECRET_KEY, zns_base=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(ZnsApiError) as answer:
            await client.quota("A-secret")
    finally:
        await client.close()
        await runner.cleanup()
    assert (answer.value.status, answer.value.kind) == (503, "temporary")


@pytest.mark.parametrize(
    ("code", "message", "status", "kind"),
    [
        (-124, "Access token invalid", 200, "token"),
        (-216, "Access token is invalid", 200, "token"),
        (-144, "OA has exceeded the daily quota", 200, "daily_quota"),
        (-1, "Quota exceeded", 200, "daily_quota"),
        (-115, "Out of quota", 200, "balance"),
        (-118, "Zalo account not existed", 200, "recipient"),
        (-119, "Account can not receive ZNS message", 200, "recipient"),
        (-139, "User refused to receive ZNS", 200, "recipient"),
        (-108, "Phone number invalid", 200, "recipient"),
        (-100, "Unknown error", 200, "temporary"),
        (502, "answer without a JSON body", 502, "temporary"),
        (429, "Too Many Requests", 429, "throttled"),
        (-109, "Template ID invalid", 200, "request"),
        (-112, "Template data invalid", 200, "request"),
        (-117, "OA or App does not have permission to access this template", 200, "request"),
    ],
)
def test_zalo_error_codes_are_read_by_what_they_mean(
    code: int, message: str, status: int, kind: str
) -> None:
    assert ZnsApiError(code, message, status=status).kind == kind


def test_quota_numbers_come_as_strings_or_numbers() -> None:
    assert quota_of({"dailyQuota": "500", "remainingQuota": 12}).remaining == 12
    assert quota_of({"dailyQuota": "x"}).daily is None
    assert quota_of(None).remaining is None


def test_every_kind_names_outbox_kinds_of_one_kind_only() -> None:
    seen: set[str] = set()
    for kind in ZNS_KINDS.values():
        assert not seen & set(kind.outbox_kinds)
        seen |= set(kind.outbox_kinds)
        for outbox_kind in kind.outbox_kinds:
            assert kind_of(outbox_kind) is kind
    # Chat-only kinds have no ZNS kind: a link code must never go by ZNS.
    assert kind_of("linking.code") is None
    assert kind_of("admin.summary") is None


def test_values_of_a_deadline_warning_as_the_job_writes_it() -> None:
    klass = TrainingClass(
        code="K45",
        title="Kỹ năng lãnh đạo",
        program=Program.KY_NANG,
        form=Form.FULL_TIME,
        start_date=TODAY + dt.timedelta(days=10),
        end_date=TODAY + dt.timedelta(days=12),
        registration_deadline=TODAY + dt.timedelta(days=3),
        capacity=30,
    )
    reply = deadline_reply(klass, "Huyện Yên Thành", 3, [], 3)
    values = notice_values(reply, language="vi", person_name="Lý Đình Trung", phone="0912000175")
    for source in ZNS_KINDS["deadline_warning"].sources:
        assert source in values, source
    assert values["deadline"] == (TODAY + dt.timedelta(days=3)).strftime("%d/%m/%Y")
    assert values["unit"] == "Huyện Yên Thành"
    assert (values["used"], values["seats"]) == ("0", "3")
    assert values["message"].startswith("⚠️ Còn 3 ngày nữa")


def test_values_of_a_class_change_as_the_job_writes_it() -> None:
    klass = TrainingClass(
        code="K45",
        title="Kỹ năng lãnh đạo",
        program=Program.KY_NANG,
        form=Form.FULL_TIME,
        start_date=dt.date(2026, 12, 8),
        end_date=dt.date(2026, 12, 10),
        registration_deadline=dt.date(2026, 12, 1),
        capacity=30,
        location="Phòng 204",
    )
    klass.sessions = []
    old = {
        "start": "2026-12-07",
        "end": "2026-12-09",
        "location": "Hội trường A",
        "online_url": "",
        "cancelled": False,
        "sessions": [],
    }
    new = {**old, "start": "2026-12-08", "end": "2026-12-10", "location": "Phòng 204"}
    tick = Tick(
        now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC), settings=NotifySettings(), last_run=None
    )
    reply = Reply(tuple(change_lines(klass, old, new, tick)))
    values = notice_values(reply, language="vi", person_name="Lan", phone="0912000402")
    assert (values["code"], values["start"], values["old_start"]) == (
        "K45",
        "08/12/2026",
        "07/12/2026",
    )
    assert values["location"] == "Phòng 204"
    assert "Địa điểm: Phòng 204 (trước đây: Hội trường A)" in values["details"]
    assert not values["details"].startswith("📢")


def test_template_data_fills_constants_missing_values_and_cuts_long_ones() -> None:
    reply = Reply((Msg("reminder.place", {"place": "Hội trường A, Trường Chính trị tỉnh"}),))
    values = notice_values(reply, language="vi", person_name="Nguyễn Thị Lan", phone="0912000402")
    data = template_data(
        {"dia_diem": "place", "truong": "=Trường Chính trị tỉnh", "thoi_gian": "when"},
        values,
        {"dia_diem": 12},
    )
    assert data == {
        "dia_diem": "Hội trường…",
        "truong": "Trường Chính trị tỉnh",
        "thoi_gian": MISSING,
    }
