"""Registration export: CSV and XLSX, ordered by class then time, times in the local zone."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import main
from bot.roster_cli import export_command, load_demo
from db.models import Person, Registration, RegistrationStatus, TrainingClass
from db.roster import DEMO_ANCHOR

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
UTC = dt.UTC
HEADER = "class_code,full_name,phone,unit_code,unit_name,status,registered_at"


async def register(
    sessionmaker: async_sessionmaker[AsyncSession],
    entries: list[tuple[str, str, RegistrationStatus, dt.datetime]],
) -> None:
    """Add registrations given as (class code, phone, status, created at)."""
    async with sessionmaker() as session, session.begin():
        for class_code, phone, status, at in entries:
            class_id = await session.scalar(
                select(TrainingClass.id).where(TrainingClass.code == class_code)
            )
            person_id = await session.scalar(select(Person.id).where(Person.phone == phone))
            assert class_id is not None
            assert person_id is not None
            session.add(
                Registration(person_id=person_id, class_id=class_id, status=status, created_at=at)
            )


@pytest.fixture
async def registered(
    sessionmaker: async_sessionmaker[AsyncSession], demo_data: Path
) -> async_sessionmaker[AsyncSession]:
    """Return the demo database with four registrations in two classes."""
    await load_demo(sessionmaker, demo_data, today=DEMO_ANCHOR)
    await register(
        sessionmaker,
        [
            # TC-K45 starts 2027-01-11, after NV-TG-2026 (2026-12-02): it comes second.
            (
                "TC-K45",
                "0912000102",
                RegistrationStatus.CONFIRMED,
                dt.datetime(2026, 11, 26, 2, 0, tzinfo=UTC),
            ),
            (
                "TC-K45",
                "0912000101",
                RegistrationStatus.WAITLISTED,
                dt.datetime(2026, 11, 25, 17, 5, tzinfo=UTC),
            ),
            (
                "NV-TG-2026",
                "0912000100",
                RegistrationStatus.CANCELLED,
                dt.datetime(2026, 11, 27, 1, 30, tzinfo=UTC),
            ),
            (
                "NV-TG-2026",
                "0912000103",
                RegistrationStatus.PENDING_APPROVAL,
                dt.datetime(2026, 11, 24, 1, 30, tzinfo=UTC),
            ),
        ],
    )
    return sessionmaker


SCHOOL = "TCT,Trường Chính trị tỉnh Nghệ An"
EXPECTED_ROWS = [
    f"NV-TG-2026,Hồ Diệu Oanh,0912000103,{SCHOOL},pending_approval,2026-11-24 08:30",
    f"NV-TG-2026,Đặng Xuân Nam,0912000100,{SCHOOL},cancelled,2026-11-27 08:30",
    # 17:05 UTC on the 25th is past midnight in Vietnam (UTC+7).
    f"TC-K45,Lê Đức Khoa,0912000101,{SCHOOL},waitlisted,2026-11-26 00:05",
    f"TC-K45,Trần Thu Trang,0912000102,{SCHOOL},confirmed,2026-11-26 09:00",
]


async def export(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    class_code: str | None = None,
    file_format: str = "csv",
    output: Path | None = None,
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = await export_command(
        sessionmaker,
        class_code=class_code,
        file_format=file_format,
        output=output,
        stdout=out,
        zone=ZONE,
        stderr=err,
    )
    return status, out.getvalue(), err.getvalue()


async def test_csv_to_stdout_in_order_and_local_time(
    registered: async_sessionmaker[AsyncSession],
) -> None:
    status, out, err = await export(registered)
    assert (status, err) == (0, "")
    assert not out.startswith("\ufeff")
    assert out.splitlines() == [HEADER, *EXPECTED_ROWS]


async def test_one_class(registered: async_sessionmaker[AsyncSession]) -> None:
    status, out, _err = await export(registered, class_code="TC-K45")
    assert status == 0
    assert out.splitlines() == [HEADER, *EXPECTED_ROWS[2:]]


async def test_class_without_registrations_gives_the_header(
    registered: async_sessionmaker[AsyncSession],
) -> None:
    assert await export(registered, class_code="CDS-2027-01") == (0, HEADER + "\n", "")


async def test_unknown_class_code(registered: async_sessionmaker[AsyncSession]) -> None:
    status, out, err = await export(registered, class_code="TC-K99")
    assert (status, out) == (2, "")
    assert err == "trainingbot: no class with code 'TC-K99'\n"


async def test_csv_file_has_bom_for_excel(
    registered: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = tmp_path / "registrations.csv"
    status, out, _err = await export(registered, output=path)
    assert (status, out) == (0, f"4 registrations written to {path}\n")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert path.read_text(encoding="utf-8-sig").splitlines() == [HEADER, *EXPECTED_ROWS]


async def test_xlsx_file(registered: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    path = tmp_path / "registrations.xlsx"
    status, out, _err = await export(registered, file_format="xlsx", output=path)
    assert (status, out) == (0, f"4 registrations written to {path}\n")
    sheet = openpyxl.load_workbook(path).worksheets[0]
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0] == HEADER.split(",")
    assert [row[0] for row in values[1:]] == ["NV-TG-2026", "NV-TG-2026", "TC-K45", "TC-K45"]
    assert values[1][2] == "0912000103"  # text, so the leading 0 survives
    assert values[3][6] == dt.datetime(2026, 11, 26, 0, 5)


@pytest.mark.parametrize(
    ("file_format", "output", "message"),
    [
        ("xlsx", None, "an xlsx export needs an output file: add -o FILE.xlsx"),
        ("csv", "out.xlsx", "out.xlsx ends in .xlsx but the format is csv: add --format xlsx"),
        ("pdf", None, "unknown export format 'pdf' (use csv or xlsx)"),
    ],
)
async def test_usage_errors(
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    file_format: str,
    output: str | None,
    message: str,
) -> None:
    target = tmp_path / output if output else None
    status, out, err = await export(sessionmaker, file_format=file_format, output=target)
    assert (status, out, err) == (2, "", f"trainingbot: {message}\n")
    assert target is None or not target.exists()


async def test_unwritable_output(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    status, _out, err = await export(sessionmaker, output=tmp_path / "no" / "such" / "dir.csv")
    assert status == 2
    assert err.startswith("trainingbot: cannot write ")


def test_cli_export(tmp_path: Path, demo_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n', encoding="utf-8"
    )
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    for kind in ("units", "people", "classes"):
        assert main(["--config", str(config), "import", kind, str(demo_data / f"{kind}.csv")]) == 0
    capsys.readouterr()

    assert main(["--config", str(config), "export", "registrations"]) == 0
    assert capsys.readouterr().out == HEADER + "\n"
    assert main(["--config", str(config), "export", "registrations", "--class", "NOPE"]) == 2
    assert capsys.readouterr().err == "trainingbot: no class with code 'NOPE'\n"
    assert main(["--config", str(config), "export", "registrations", "--format", "xlsx"]) == 2
    assert "needs an output file" in capsys.readouterr().err
    output = tmp_path / "r.xlsx"
    args = ["export", "registrations", "--format", "xlsx", "-o", str(output)]
    assert main(["--config", str(config), *args]) == 0
    assert openpyxl.load_workbook(output).worksheets[0]["A1"].value == "class_code"
