"""Roster import: every bad row reported by line, nothing written then; idempotent upserts."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import main
from bot.roster_cli import import_command, load_demo, read_roster_file
from db.models import ClassQuota, ClassStatus, Person, TheoryLevel, TrainingClass, Unit
from db.roster import (
    DEMO_ANCHOR,
    REQUIRED_COLUMNS,
    RosterError,
    Row,
    RowError,
    import_rows,
    validate_classes,
    validate_people,
    validate_units,
)
from db.text import CODE_CHARACTERS

TODAY = dt.date(2026, 11, 24)
UNITS = {"TCT", "YTH", "DCH", "SNV"}
UNITS_HEADER = "code,name,kind,parent_code"
PEOPLE_HEADER = "phone,full_name,unit_code,position,gender,birth_year,theory_level,roles"
CLASSES_HEADER = (
    "code,title,program,form,location,start_date,end_date,registration_deadline,capacity,"
    "max_age,required_theory_level,unit_quotas"
)
GOOD_CLASS = "K1,Lớp một,ky_nang,full_time,Hội trường A,2027-01-11,2027-01-15,2027-01-04,20,0,,"


def rows(header: str, *lines: str) -> list[Row]:
    """Return CSV lines as rows numbered as in a file whose line 1 is the header."""
    reader = csv.reader(io.StringIO("\n".join([header, *lines])))
    columns = next(reader)
    return [
        Row(number, dict(zip(columns, cells, strict=True)))
        for number, cells in enumerate(reader, 2)
    ]


def messages(errors: list[RowError]) -> list[tuple[int, str]]:
    return [(error.line, error.message) for error in errors]


def write(path: Path, header: str, *lines: str, encoding: str = "utf-8") -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding=encoding)
    return path


async def count(sessionmaker: async_sessionmaker[AsyncSession], model: type[object]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def import_file(
    sessionmaker: async_sessionmaker[AsyncSession], kind: str, path: Path
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = await import_command(sessionmaker, kind, path, out, stderr=err)
    return status, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------- pure validation


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["X,Xã X,commune,NOPE"], [(2, "parent_code 'NOPE' is not a known unit")]),
        (
            ["X,Xã X,commune,yth"],
            [(2, "parent_code 'yth' is not a known unit (did you mean 'YTH'?)")],
        ),
        (
            ["X,Xã X,village,"],
            [
                (
                    2,
                    "kind 'village' is not one of: school, party_committee, department, "
                    "district, political_center, commune, other",
                )
            ],
        ),
        (["X,,commune,"], [(2, "name is empty")]),
        ([",Xã X,commune,"], [(2, "code is empty")]),
        (["X Y,Xã X,commune,"], [(2, "code 'X Y' must not contain spaces")]),
        (
            ["ĐT,Xã X,commune,", "A:B,Xã A,commune,", "A;B,Xã B,commune,", "A*,C,commune,"],
            [
                (2, f"code 'ĐT' may contain only {CODE_CHARACTERS}"),
                (3, f"code 'A:B' may contain only {CODE_CHARACTERS}"),
                (4, f"code 'A;B' may contain only {CODE_CHARACTERS}"),
                (5, f"code 'A*' may contain only {CODE_CHARACTERS}"),
            ],
        ),
        (["Ab-1_2.3/4,Xã X,commune,"], []),
        (
            ["X,Xã X,commune,", "X,Xã X lần hai,commune,"],
            [(3, "duplicate code 'X' (already on line 2)")],
        ),
        (["X,Xã X,commune,X"], [(2, "unit 'X' would be its own ancestor: X → X")]),
        (
            ["A,A,other,B", "B,B,other,A", "C,C,other,A"],
            [
                (2, "unit 'A' would be its own ancestor: A → B → A"),
                (3, "unit 'B' would be its own ancestor: B → A → B"),
            ],
        ),
        # The stored tree counts too: YTH is stored under TCT here, so TCT under YTH loops.
        (["TCT,Trường,school,YTH"], [(2, "unit 'TCT' would be its own ancestor: TCT → YTH → TCT")]),
    ],
)
def test_bad_units_rows(lines: list[str], expected: list[tuple[int, str]]) -> None:
    stored = {"TCT": None, "YTH": "TCT", "DCH": None}
    _records, errors = validate_units(rows(UNITS_HEADER, *lines), stored)
    assert messages(errors) == expected


def test_units_may_name_a_parent_defined_later_in_the_file() -> None:
    records, errors = validate_units(
        rows(UNITS_HEADER, "TTCT-X,Trung tâm,political_center,X", "X,Huyện X,DISTRICT,"), {}
    )
    assert errors == []
    assert [(r.code, r.parent_code, r.kind.value) for r in records] == [
        ("TTCT-X", "X", "political_center"),
        ("X", None, "district"),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("12345,Nam,YTH,,,,,", "phone '12345' is not a Vietnamese mobile number"),
        (",Nam,YTH,,,,,", "phone is empty"),
        ("0912000100,,YTH,,,,,", "full_name is empty"),
        ("0912000100,Nam,XXX,,,,,", "unit_code 'XXX' is not a known unit"),
        ("0912000100,Nam,YTH,,,19x0,,", "birth_year '19x0' is not a 4-digit year"),
        ("0912000100,Nam,YTH,,,197,,", "birth_year '197' is not a 4-digit year"),
        ("0912000100,Nam,YTH,,,2030,,", "birth_year 2030 is in the future"),
        ("0912000100,Nam,YTH,,,1900,,", "birth_year 1900 is implausible (age must be 16 to 100)"),
        ("0912000100,Nam,YTH,,,2020,,", "birth_year 2020 is implausible (age must be 16 to 100)"),
        (
            "0912000100,Nam,YTH,,,,tien_si,",
            "theory_level 'tien_si' is not one of: so_cap, trung_cap, cao_cap",
        ),
        (
            "0912000100,Nam,YTH,,,,,boss",
            "roles: unknown role 'boss' (use learner, unit_head, admin, ';'-separated)",
        ),
        ("0912000100,Nam,YTH,,robot,,,", "gender 'robot' is not male, female or other"),
    ],
)
def test_bad_people_rows(line: str, expected: str) -> None:
    _records, errors = validate_people(rows(PEOPLE_HEADER, line), UNITS, today=TODAY)
    assert messages(errors) == [(2, expected)]


def test_every_problem_of_a_row_is_reported() -> None:
    _records, errors = validate_people(
        rows(PEOPLE_HEADER, "0912000100,Nam,YTH,,,,,", "12,,NOPE,,,3000,x,"), UNITS, today=TODAY
    )
    assert messages(errors) == [
        (3, "phone '12' is not a Vietnamese mobile number"),
        (3, "full_name is empty"),
        (3, "birth_year 3000 is in the future"),
        (3, "theory_level 'x' is not one of: so_cap, trung_cap, cao_cap"),
        (3, "unit_code 'NOPE' is not a known unit"),
    ]


def test_phones_are_normalised_and_duplicates_found_after_normalising() -> None:
    records, errors = validate_people(
        rows(
            PEOPLE_HEADER,
            "912000100,A,YTH,,,,,",
            "+84 912 000 101,B,YTH,,,,,",
            "84912000100,C,YTH,,,,,",
        ),
        UNITS,
        today=TODAY,
    )
    assert [r.phone for r in records] == ["0912000100", "0912000101"]
    assert messages(errors) == [(4, "duplicate phone '0912000100' (already on line 2)")]


def test_people_roles_and_fields() -> None:
    records, errors = validate_people(
        rows(
            PEOPLE_HEADER,
            "0912000100,Đặng Xuân Nam,TCT,Hiệu trưởng,Nam,1976,CAO_CAP, Unit_Head ; admin ",
            "0912000101,Lê Đức Khoa,TCT,,,,,",
        ),
        UNITS,
        today=TODAY,
    )
    assert errors == []
    head, learner = records
    assert (head.gender, head.birth_year, head.theory_level) == ("male", 1976, TheoryLevel.CAO_CAP)
    assert (head.is_learner, head.is_unit_head, head.is_admin) == (False, True, True)
    # An empty roles cell means an ordinary learner.
    assert (learner.is_learner, learner.is_unit_head, learner.is_admin) == (True, False, False)
    assert (learner.gender, learner.birth_year, learner.theory_level) == (None, None, None)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,20,0,,", None),
        (
            "ĐT-01,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,20,0,,",
            f"code 'ĐT-01' may contain only {CODE_CHARACTERS}",
        ),
        ("K1,,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,20,0,,", "title is empty"),
        (
            "K1,Lớp,hoc_gi,full_time,,2027-01-11,2027-01-15,2027-01-04,20,0,,",
            "program 'hoc_gi' is not one of: so_cap_llct, trung_cap_llct, cap_nhat_kien_thuc, "
            "ky_nang, nghiep_vu, chuyen_de, dang_vien_moi",
        ),
        (
            "K1,Lớp,ky_nang,evening,,2027-01-11,2027-01-15,2027-01-04,20,0,,",
            "form 'evening' is not one of: full_time, part_time, online",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-10,2027-01-04,20,0,,",
            "end_date 2027-01-10 is before start_date 2027-01-11",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-12,20,0,,",
            "registration_deadline 2027-01-12 is after start_date 2027-01-11",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-02-30,2027-03-15,2027-01-04,20,0,,",
            "start_date '2027-02-30' is not a valid date",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,11.01.2027,2027-01-15,next week,20,0,,",
            "registration_deadline 'next week' is not a date (use YYYY-MM-DD or DD/MM/YYYY)",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,,20,0,,",
            "registration_deadline is empty",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,0,0,,",
            "capacity '0' is not a positive whole number",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,-5,0,,",
            "capacity '-5' is not a positive whole number",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,many,0,,",
            "capacity 'many' is not a positive whole number",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,20,7,,",
            "max_age '7' is not an age from 16 to 100 (0 or empty: no limit)",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,20,0,giao_su,",
            "required_theory_level 'giao_su' is not one of: so_cap, trung_cap, cao_cap",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,20,0,,YTH=8",
            "unit_quotas 'YTH=8' is not UNIT:SEATS (e.g. YTH:8;DCH:8)",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,20,0,,YTH:0",
            "unit_quotas 'YTH:0': seats must be at least 1",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,20,0,,YTH:2;YTH:3",
            "unit_quotas: unit 'YTH' is listed twice",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,20,0,,YTH:2;HUE:3",
            "unit_quotas unit 'HUE' is not a known unit",
        ),
        (
            "K1,Lớp,ky_nang,full_time,,2027-01-11,2027-01-15,2027-01-04,20,0,,YTH:12;DCH:9",
            "unit_quotas total 21 is more than capacity 20",
        ),
    ],
)
def test_bad_classes_rows(line: str, expected: str | None) -> None:
    _records, errors = validate_classes(rows(CLASSES_HEADER, line), UNITS)
    assert messages(errors) == ([] if expected is None else [(2, expected)])


def test_class_fields_and_day_first_dates() -> None:
    header = CLASSES_HEADER + ",requires_approval,status"
    records, errors = validate_classes(
        rows(
            header,
            "K1,Lớp,KY_NANG,online,,11/01/2027,15/01/2027,4/1/2027,20,45,trung_cap,"
            " YTH : 8 ;DCH:2;,có,closed",
            GOOD_CLASS.replace("K1", "K2") + ",,",
            GOOD_CLASS + ",,",
        ),
        UNITS,
    )
    assert messages(errors) == [(4, "duplicate code 'K1' (already on line 2)")]
    first, second = records
    assert (first.start_date, first.end_date, first.registration_deadline) == (
        dt.date(2027, 1, 11),
        dt.date(2027, 1, 15),
        dt.date(2027, 1, 4),
    )
    assert first.quotas == (("DCH", 2), ("YTH", 8))
    assert (first.max_age, first.requires_approval, first.status) == (45, True, ClassStatus.CLOSED)
    assert (second.max_age, second.requires_approval, second.status, second.quotas) == (
        None,
        None,
        None,
        (),
    )


# ----------------------------------------------------------------------- database


async def test_demo_roster_imports_and_reimports_unchanged(
    sessionmaker: async_sessionmaker[AsyncSession], demo_data: Path
) -> None:
    for kind, expected in [("units", 17), ("people", 119), ("classes", 8)]:
        status, out, err = await import_file(sessionmaker, kind, demo_data / f"{kind}.csv")
        assert (status, err) == (0, "")
        assert out == f"{kind}: {expected} rows — {expected} added, 0 updated, 0 unchanged\n"
    for kind, expected in [("units", 17), ("people", 119), ("classes", 8)]:
        status, out, _err = await import_file(sessionmaker, kind, demo_data / f"{kind}.csv")
        assert out == f"{kind}: {expected} rows — 0 added, 0 updated, {expected} unchanged\n"

    async with sessionmaker() as session:
        center = await session.scalar(select(Unit).where(Unit.code == "TTCT-YTH"))
        assert center is not None
        parent = await session.get(Unit, center.parent_id)
        assert parent is not None
        assert parent.code == "YTH"
        head = await session.scalar(select(Person).where(Person.phone == "0912000100"))
        assert head is not None
        assert (head.full_name, head.is_unit_head, head.is_admin, head.is_learner) == (
            "Đặng Xuân Nam",
            True,
            True,
            False,
        )
        k45 = await session.scalar(select(TrainingClass).where(TrainingClass.code == "TC-K45"))
        assert k45 is not None
        assert k45.search_text == "tc-k45 trung cap ly luan chinh tri - hanh chinh k45"
        assert (k45.max_age, k45.start_date, k45.status) == (
            45,
            dt.date(2027, 1, 11),
            ClassStatus.OPEN,
        )
        quotas = await session.execute(
            select(Unit.code, ClassQuota.seats)
            .join(ClassQuota, ClassQuota.unit_id == Unit.id)
            .where(ClassQuota.class_id == k45.id)
            .order_by(Unit.code)
        )
        assert quotas.all() == [("DCH", 8), ("VINH", 10), ("YTH", 8)]


async def test_one_bad_row_imports_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], demo_data: Path, tmp_path: Path
) -> None:
    await import_file(sessionmaker, "units", demo_data / "units.csv")
    lines = (demo_data / "people.csv").read_text(encoding="utf-8").splitlines()
    lines[5] = lines[5].replace("0912000104", "12345")
    lines[9] = lines[9].replace(",BTC,", ",NOPE,")
    path = tmp_path / "people.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    status, out, _err = await import_file(sessionmaker, "people", path)

    assert status == 1
    assert out.splitlines() == [
        "people.csv line 6: phone '12345' is not a Vietnamese mobile number",
        "people.csv line 10: unit_code 'NOPE' is not a known unit",
        "nothing imported: 2 bad rows",
    ]
    assert await count(sessionmaker, Person) == 0


def test_control_characters_in_cells_are_bad_rows() -> None:
    header = PEOPLE_HEADER
    people = rows(
        header,
        "0912000100,Nguyễn\x00Văn A,YTH,,,,,",
        '0912000101,"Trần\tB",YTH,"Phó\nphòng",,,,',
        "0912000102,Lê\x85C,YTH\x07,,,,,",
        "0912000103,Lê D,YTH,,,,,",
    )
    records, errors = validate_people(people, UNITS, today=TODAY)
    assert [r.phone for r in records] == ["0912000103"]
    hint = "retype the cell as one line of plain text"
    assert messages(errors) == [
        (2, f"full_name contains a control character (U+0000) at character 7; {hint}"),
        (3, f"full_name contains a control character (U+0009) at character 5; {hint}"),
        (3, f"position contains a control character (U+000A) at character 4; {hint}"),
        (4, f"full_name contains a control character (U+0085) at character 3; {hint}"),
        (4, f"unit_code contains a control character (U+0007) at character 4; {hint}"),
    ]
    _records, errors = validate_classes(
        rows(CLASSES_HEADER, GOOD_CLASS.replace("Lớp một", "Lớp\x00một")), UNITS
    )
    assert messages(errors) == [
        (2, f"title contains a control character (U+0000) at character 4; {hint}")
    ]


async def test_a_nul_in_a_name_is_a_bad_row_on_every_database(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """PostgreSQL cannot store NUL: it used to fail the batch with every row in the error."""
    await import_file(
        sessionmaker,
        "units",
        write(tmp_path / "units.csv", UNITS_HEADER, "YTH,Yên Thành,district,"),
    )
    path = write(
        tmp_path / "people.csv",
        PEOPLE_HEADER,
        "0912000100,Đặng Xuân Nam,YTH,,,,,",
        "0912000101,Lê\x00Khoa,YTH,,,,,",
    )
    status, out, err = await import_file(sessionmaker, "people", path)
    assert (status, err) == (1, "")
    assert out.splitlines() == [
        "people.csv line 3: full_name contains a control character (U+0000) at character 3; "
        "retype the cell as one line of plain text",
        "nothing imported: 1 bad row",
    ]
    assert await count(sessionmaker, Person) == 0


async def test_reimport_counts_updates_and_replaces_quotas(
    sessionmaker: async_sessionmaker[AsyncSession], demo_data: Path, tmp_path: Path
) -> None:
    await load_demo(sessionmaker, demo_data, today=DEMO_ANCHOR)
    people = write(
        tmp_path / "people.csv",
        PEOPLE_HEADER,
        "0912000101,Lê Đức Khoa,YTH,Phó phòng,male,1976,trung_cap,learner",  # moved unit
        "0912000102,Trần Thu Trang,TCT,Cán bộ,female,1989,so_cap,learner",  # as stored
        "0912999999,Người Mới,DCH,,,,,",  # new
    )
    classes = write(
        tmp_path / "classes.csv",
        CLASSES_HEADER + ",requires_approval,status",
        "TC-K45,Trung cấp lý luận chính trị - hành chính K45,trung_cap_llct,full_time,"
        '"Trường Chính trị tỉnh, 51 Lê Hồng Phong, TP Vinh",2027-01-11,2027-06-30,2026-12-20,'
        "60,45,,YTH:5;QLU:4,true,",
    )

    assert (await import_file(sessionmaker, "people", people))[1] == (
        "people: 3 rows — 1 added, 1 updated, 1 unchanged\n"
    )
    assert (await import_file(sessionmaker, "classes", classes))[1] == (
        "classes: 1 rows — 0 added, 1 updated, 0 unchanged\n"
    )
    # The status column is empty, so the class keeps its status; people not in the file stay.
    assert await count(sessionmaker, Person) == 120
    async with sessionmaker() as session:
        moved = await session.scalar(select(Person).where(Person.phone == "0912000101"))
        assert moved is not None
        unit = await session.get(Unit, moved.unit_id)
        assert unit is not None
        assert unit.code == "YTH"
        assert moved.theory_level is TheoryLevel.TRUNG_CAP
        k45 = await session.scalar(select(TrainingClass).where(TrainingClass.code == "TC-K45"))
        assert k45 is not None
        assert (k45.requires_approval, k45.status) == (True, ClassStatus.OPEN)
        quotas = await session.execute(
            select(Unit.code, ClassQuota.seats)
            .join(ClassQuota, ClassQuota.unit_id == Unit.id)
            .where(ClassQuota.class_id == k45.id)
            .order_by(Unit.code)
        )
        assert quotas.all() == [("QLU", 4), ("YTH", 5)]
    assert (await import_file(sessionmaker, "classes", classes))[1] == (
        "classes: 1 rows — 0 added, 0 updated, 1 unchanged\n"
    )


async def test_unit_reimport_moves_a_parent(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    first = write(tmp_path / "units.csv", UNITS_HEADER, "B,B,other,A", "A,A,other,", "C,C,other,")
    assert (await import_file(sessionmaker, "units", first))[1] == (
        "units: 3 rows — 3 added, 0 updated, 0 unchanged\n"
    )
    second = write(tmp_path / "units2.csv", UNITS_HEADER, "B,B,other,C", "A,A,other,B")
    assert (await import_file(sessionmaker, "units", second))[1] == (
        "units: 2 rows — 0 added, 2 updated, 0 unchanged\n"
    )
    cycle = write(tmp_path / "units3.csv", UNITS_HEADER, "C,C,other,A")
    status, out, _err = await import_file(sessionmaker, "units", cycle)
    assert status == 1
    assert "units3.csv line 2: unit 'C' would be its own ancestor: C → A → B → C" in out


async def test_xlsx_people_with_numeric_phone(
    sessionmaker: async_sessionmaker[AsyncSession], demo_data: Path, tmp_path: Path
) -> None:
    await import_file(sessionmaker, "units", demo_data / "units.csv")
    path = tmp_path / "people.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(
        [
            " Phone",
            "Full_Name",
            "unit_code",
            "position",
            "gender",
            "birth_year",
            "theory_level",
            "roles",
        ]
    )
    sheet.append(
        [
            912000100,
            "Đặng Xuân Nam",
            "TCT",
            "Hiệu trưởng",
            "male",
            1976,
            "cao_cap",
            "unit_head;admin",
        ]
    )
    sheet.append([84912000101, "Lê Đức Khoa", "TCT", None, None, 1976.0, None, None])
    sheet.append(["0912000102", "Trần Thu Trang", "TCT", None, "female", "1989", None, None])
    sheet.append([12345, "Sai Số", "TCT", None, None, None, None, None])
    workbook.save(path)

    status, out, _err = await import_file(sessionmaker, "people", path)
    assert status == 1
    assert out.splitlines() == [
        "people.xlsx line 5: phone '12345' is not a Vietnamese mobile number",
        "nothing imported: 1 bad row",
    ]
    sheet.delete_rows(5)
    workbook.save(path)
    status, out, _err = await import_file(sessionmaker, "people", path)
    assert (status, out) == (0, "people: 3 rows — 3 added, 0 updated, 0 unchanged\n")
    async with sessionmaker() as session:
        phones = await session.scalars(select(Person.phone).order_by(Person.phone))
        assert list(phones) == ["0912000100", "0912000101", "0912000102"]


async def test_xlsx_classes_with_date_cells(
    sessionmaker: async_sessionmaker[AsyncSession], demo_data: Path, tmp_path: Path
) -> None:
    await import_file(sessionmaker, "units", demo_data / "units.csv")
    path = tmp_path / "classes.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(REQUIRED_COLUMNS["classes"])
    sheet.append(
        [
            "K1",
            "Kỹ năng",
            "ky_nang",
            "full_time",
            "Phòng 302",
            dt.datetime(2027, 1, 11),
            dt.date(2027, 1, 15),
            "04/01/2027",
            30,
            0,
            None,
            "YTH:5",
        ]
    )
    workbook.save(path)
    status, out, _err = await import_file(sessionmaker, "classes", path)
    assert (status, out) == (0, "classes: 1 rows — 1 added, 0 updated, 0 unchanged\n")
    async with sessionmaker() as session:
        k1 = await session.scalar(select(TrainingClass).where(TrainingClass.code == "K1"))
        assert k1 is not None
        assert (k1.start_date, k1.end_date, k1.registration_deadline, k1.max_age) == (
            dt.date(2027, 1, 11),
            dt.date(2027, 1, 15),
            dt.date(2027, 1, 4),
            None,
        )


async def test_semicolon_csv_with_bom(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = write(
        tmp_path / "units.csv",
        "Code;Name;Kind;Parent_Code",
        "YTH;Huyện Yên Thành;district;",
        "TTCT-YTH;Trung tâm Chính trị huyện Yên Thành;political_center;YTH",
        encoding="utf-8-sig",
    )
    status, out, _err = await import_file(sessionmaker, "units", path)
    assert (status, out) == (0, "units: 2 rows — 2 added, 0 updated, 0 unchanged\n")
    async with sessionmaker() as session:
        assert (
            await session.scalar(select(Unit.name).where(Unit.code == "YTH")) == "Huyện Yên Thành"
        )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "people.csv",
            "phone,full_name\n0912000100,A\n",
            "people.csv: missing column(s) unit_code, position, gender, birth_year, "
            "theory_level, roles",
        ),
        ("people.ods", "", "people.ods: unsupported file type; save it as .csv or .xlsx"),
        ("people.csv", None, "file not found"),
    ],
)
async def test_unreadable_file_exits_2(
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    name: str,
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    status, out, err = await import_file(sessionmaker, "people", path)
    assert (status, out) == (2, "")
    assert err.startswith("trainingbot: ")
    assert message in err


async def test_unknown_columns_are_mentioned(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = write(tmp_path / "units.csv", UNITS_HEADER + ",note", "A,A,other,,hello")
    status, out, _err = await import_file(sessionmaker, "units", path)
    assert status == 0
    assert out.splitlines()[0] == "units.csv: ignoring unknown column(s): note"


async def test_today_for_the_birth_year_check_is_the_configured_zones(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """At 03:00 on 1 January 2027 in Vietnam it is still 2026 in UTC (and maybe on the host).

    Someone born in 2011 is 16 in 2027, old enough; in 2026 they would be 15.
    """
    await import_file(
        sessionmaker,
        "units",
        write(tmp_path / "units.csv", UNITS_HEADER, "YTH,Yên Thành,district,"),
    )
    path = write(tmp_path / "people.csv", PEOPLE_HEADER, "0912000100,Lê Khoa,YTH,,,2011,,")
    now = dt.datetime(2026, 12, 31, 20, 0, tzinfo=dt.UTC)
    for zone, expected in [
        (
            ZoneInfo("UTC"),
            "people.csv line 2: birth_year 2011 is implausible (age must be 16 to 100)",
        ),
        (ZoneInfo("Asia/Ho_Chi_Minh"), "people: 1 rows — 1 added, 0 updated, 0 unchanged"),
    ]:
        out = io.StringIO()
        await import_command(sessionmaker, "people", path, out, zone=zone, now=now)
        assert out.getvalue().splitlines()[0] == expected


async def test_concurrent_imports_do_not_duplicate(
    sessionmaker: async_sessionmaker[AsyncSession], demo_data: Path
) -> None:
    _table, units = read_roster_file("units", demo_data / "units.csv")
    _table, people = read_roster_file("people", demo_data / "people.csv")
    async with sessionmaker() as session, session.begin():
        await import_rows(session, "units", units, today=TODAY)

    async def one_import() -> int:
        async with sessionmaker() as session, session.begin():
            result = await import_rows(session, "people", people, today=TODAY)
            await asyncio.sleep(0.05)  # hold the transaction so the two overlap
            return result.added

    added = await asyncio.gather(one_import(), one_import())
    assert sorted(added) == [0, 119]
    assert await count(sessionmaker, Person) == 119


# --------------------------------------------------------------------------- demo


async def test_load_demo_shifts_dates_and_is_idempotent(
    sessionmaker: async_sessionmaker[AsyncSession], demo_data: Path
) -> None:
    today = dt.date(2026, 12, 1)
    summary = await load_demo(sessionmaker, demo_data, today=today)
    assert "shifted by +7 days" in summary
    assert "people: 119 rows — 119 added" in summary
    async with sessionmaker() as session:
        k45 = await session.scalar(select(TrainingClass).where(TrainingClass.code == "TC-K45"))
        assert k45 is not None
        assert (k45.start_date, k45.end_date, k45.registration_deadline) == (
            dt.date(2027, 1, 18),
            dt.date(2027, 7, 7),
            dt.date(2026, 12, 27),
        )
    again = await load_demo(sessionmaker, demo_data, today=today)
    assert "0 added, 0 updated, 17 unchanged" in again
    assert "0 added, 0 updated, 119 unchanged" in again
    assert "0 added, 0 updated, 8 unchanged" in again
    tomorrow = await load_demo(sessionmaker, demo_data, today=today + dt.timedelta(days=1))
    assert "classes: 8 rows — 0 added, 8 updated, 0 unchanged" in tomorrow


async def test_load_demo_with_a_bad_file_loads_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], demo_data: Path, tmp_path: Path
) -> None:
    for name in ("units.csv", "people.csv", "classes.csv"):
        shutil.copy(demo_data / name, tmp_path / name)
    classes = tmp_path / "classes.csv"
    classes.write_text(
        classes.read_text(encoding="utf-8").replace(",60,45,", ",0,45,"), encoding="utf-8"
    )
    with pytest.raises(
        RosterError, match=r"classes\.csv has bad rows, nothing loaded: line 2: capacity '0'"
    ):
        await load_demo(sessionmaker, tmp_path, today=TODAY)
    assert await count(sessionmaker, Unit) == 0
    (tmp_path / "units.csv").unlink()
    with pytest.raises(RosterError, match=r"units\.csv: file not found"):
        await load_demo(sessionmaker, tmp_path, today=TODAY)


# ---------------------------------------------------------------------------- CLI


def cli_config(tmp_path: Path) -> str:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "bot.db"}"\n', encoding="utf-8"
    )
    assert main(["--config", str(path), "db", "upgrade"]) == 0
    return str(path)


def test_cli_import(tmp_path: Path, demo_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = cli_config(tmp_path)
    capsys.readouterr()
    assert main(["--config", config, "import", "units", str(demo_data / "units.csv")]) == 0
    assert capsys.readouterr().out == "units: 17 rows — 17 added, 0 updated, 0 unchanged\n"

    bad = write(tmp_path / "people.csv", PEOPLE_HEADER, "0912000100,A,TCT,,,,,", "12345,B,TCT,,,,,")
    assert main(["--config", config, "import", "people", str(bad)]) == 1
    assert capsys.readouterr().out == (
        "people.csv line 3: phone '12345' is not a Vietnamese mobile number\n"
        "nothing imported: 1 bad row\n"
    )
    assert main(["--config", config, "import", "people", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: file not found" in capsys.readouterr().err
