"""Uploading a roster or class list: checked as the CLI checks it, previewed, applied once."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator

import openpyxl
import pytest
from aiohttp import FormData
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditEntry, Person, WebUpload
from tests.web_support import Site, Visitor, admin_site, visible_text
from tests.web_world import World, build_world

PEOPLE_HEADER = "phone,full_name,unit_code,position,gender,birth_year,theory_level,roles\n"


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    return await build_world(sessionmaker)


@pytest.fixture
async def site(sessionmaker: async_sessionmaker[AsyncSession], world: World) -> AsyncIterator[Site]:
    async with admin_site(sessionmaker) as site:
        yield site


@pytest.fixture
async def admin(site: Site) -> Visitor:
    return await site.visitor().logged_in("admin")


async def upload(admin: Visitor, kind: str, name: str, content: bytes) -> str:
    """Upload a file through the form; return the preview page's path."""
    await admin.page("/uploads")
    form = FormData()
    form.add_field("csrf_token", admin.token)
    form.add_field("kind", kind)
    form.add_field("file", content, filename=name, content_type="application/octet-stream")
    response = await admin.http.post("/uploads", data=form, allow_redirects=False)
    admin.last_text = await response.text()
    assert response.status == 303, admin.last_text[:500]
    return response.headers["Location"]


async def people_count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.scalar(select(func.count()).select_from(Person))) or 0


async def test_preview_then_apply_once(
    admin: Visitor, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    content = (
        PEOPLE_HEADER
        + "0912000178,Phạm Thu Trang,YTH,Chuyên viên,,1985,,learner\n"  # updated: position
        + "0912000301,Nguyễn Văn Mới,YTH,Chuyên viên,nam,1990,trung_cap,learner\n"
        + "0912000302,Trần Thị Mới,DCH,,nữ,1992,,\n"
    ).encode()
    path = await upload(admin, "people", "people.csv", content)
    page = visible_text(await admin.page(path))
    assert "Số dòng 3 Thêm mới 2 Cập nhật 1 Không đổi 0" in page
    assert await people_count(sessionmaker) == 3  # a preview writes nothing
    # Two submits at once (a double click): one import.
    answers = await asyncio.gather(
        admin.post(f"{path}/apply"), admin.post(f"{path}/apply"), return_exceptions=False
    )
    locations = sorted(answer.headers["Location"] for answer in answers)
    assert locations == [f"{path}?done=already", f"{path}?done=applied"]
    assert await people_count(sessionmaker) == 5
    # The back button and a third submit: still nothing twice.
    response = await admin.post(f"{path}/apply")
    assert response.headers["Location"].endswith("done=already")
    page = visible_text(await admin.page(response.headers["Location"]))
    assert "không nhập lại lần nữa" in page
    async with sessionmaker() as session:
        entries = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "import.people"))
        ).all()
    assert len(entries) == 1
    assert entries[0].details == {"rows": 3, "added": 2, "updated": 1, "unchanged": 0, "removed": 0}


async def test_bad_rows_are_listed_with_their_lines_and_nothing_can_be_applied(
    admin: Visitor, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    content = (
        PEOPLE_HEADER
        + "0912000301,Nguyễn Văn Mới,YTH,,,1990,,\n"
        + "12345,Sai Số,YTH,,,1990,,\n"
        + "0912000303,Không Đơn Vị,NOPE,,,1990,,\n"
    ).encode()
    path = await upload(admin, "people", "people.csv", content)
    page = await admin.page(path)
    text = visible_text(page)
    assert "Tệp có 2 dòng lỗi: chưa nhập gì" in text
    assert "3 phone '12345' is not a Vietnamese mobile number" in text
    assert "4 unit_code 'NOPE' is not a known unit" in text
    assert "/apply" not in page
    response = await admin.post(f"{path}/apply")
    assert response.headers["Location"] == path
    assert await people_count(sessionmaker) == 3


async def test_an_xlsx_class_list_is_read_as_the_cli_reads_it(admin: Visitor, world: World) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(
        [
            "code",
            "title",
            "program",
            "form",
            "location",
            "start_date",
            "end_date",
            "registration_deadline",
            "capacity",
            "max_age",
            "required_theory_level",
            "unit_quotas",
            "remarks",
        ]
    )
    sheet.append(
        [
            "KN-09",
            "Kỹ năng mới",
            "ky_nang",
            "full_time",
            "",
            "2027-03-01",
            "2027-03-05",
            "2027-02-20",
            30,
            0,
            "",
            "YTH:5",
            "ghi chú",
        ]
    )
    buffer = io.BytesIO()
    workbook.save(buffer)
    path = await upload(admin, "classes", "lop.xlsx", buffer.getvalue())
    text = visible_text(await admin.page(path))
    assert "Thêm mới 1" in text
    assert "Các cột không dùng đến: remarks" in text


async def test_a_file_that_is_not_a_table_is_refused_at_once(admin: Visitor) -> None:
    await admin.page("/uploads")
    form = FormData()
    form.add_field("csrf_token", admin.token)
    form.add_field("kind", "people")
    form.add_field("file", b"code,name\nX,Y\n", filename="people.csv")
    response = await admin.http.post("/uploads", data=form, allow_redirects=False)
    assert response.status == 422
    assert re.search(r"missing column\(s\) phone", await response.text())
    form = FormData()
    form.add_field("csrf_token", admin.token)
    form.add_field("kind", "people")
    form.add_field("file", b"\x00\x01", filename="people.pdf")
    response = await admin.http.post("/uploads", data=form, allow_redirects=False)
    assert response.status == 422
    assert "unsupported file type" in await response.text()


async def test_another_accounts_upload_is_not_found(
    site: Site, admin: Visitor, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    path = await upload(
        admin, "people", "p.csv", (PEOPLE_HEADER + "0912000301,A B,YTH,,,,,\n").encode()
    )
    async with sessionmaker() as session, session.begin():
        from tests.web_support import add_account

        await add_account(session, "admin2")
    other = await site.visitor().logged_in("admin2")
    assert (await other.get(path)).status == 404
    await other.page("/uploads")
    assert (await other.post(f"{path}/apply")).status == 404
    async with sessionmaker() as session:
        item = await session.get(WebUpload, int(path.rsplit("/", 1)[1]))
        assert item is not None
        assert item.applied_at is None
