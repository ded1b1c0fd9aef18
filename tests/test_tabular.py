"""Reading and writing CSV/XLSX tables: encodings, delimiters, Excel's cell types, line numbers."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import openpyxl
import pytest

from bot.tabular import (
    TableError,
    cell_text,
    read_table,
    write_csv,
    write_csv_file,
    write_xlsx,
)


def test_csv_with_bom_and_untidy_header(tmp_path: Path) -> None:
    path = tmp_path / "units.csv"
    path.write_bytes("\ufeff Code ,NAME\r\nYTH,Huyện Yên Thành\r\n".encode())
    table = read_table(path)
    assert table.columns == ("code", "name")
    assert [(r.line, r.values) for r in table.rows] == [
        (2, {"code": "YTH", "name": "Huyện Yên Thành"})
    ]


def test_semicolon_csv_from_excel_in_vietnamese_locale(tmp_path: Path) -> None:
    path = tmp_path / "classes.csv"
    path.write_text(
        'code;title;unit_quotas\nTC-K45;"Trung cấp, K45";"YTH:8;DCH:8"\n', encoding="utf-8-sig"
    )
    table = read_table(path)
    assert table.rows[0].values == {
        "code": "TC-K45",
        "title": "Trung cấp, K45",
        "unit_quotas": "YTH:8;DCH:8",
    }


def test_comma_csv_with_semicolons_inside_cells_stays_comma(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("phone,roles\n0912000100,unit_head;admin\n", encoding="utf-8")
    assert read_table(path).rows[0].values == {"phone": "0912000100", "roles": "unit_head;admin"}


def test_blank_lines_are_skipped_but_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "units.csv"
    path.write_text("code,name\nA,One\n\n,\nB,Two\n", encoding="utf-8")
    assert [(r.line, r.values["code"]) for r in read_table(path).rows] == [(2, "A"), (5, "B")]


def test_short_rows_are_padded(tmp_path: Path) -> None:
    path = tmp_path / "units.csv"
    path.write_text("code,name,parent_code\nA,One\n", encoding="utf-8")
    assert read_table(path).rows[0].values == {"code": "A", "name": "One", "parent_code": ""}


def test_xlsx_cells_become_typed_text(tmp_path: Path) -> None:
    path = tmp_path / "people.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Phone", "Birth_Year", "Start_Date", "Capacity", "Flag", "Empty"])
    sheet.append([912000100, 1976, dt.datetime(2027, 1, 11), 60.0, True, None])
    sheet.append([])  # a blank sheet row keeps the numbering of the next one
    sheet.append(["0912 000 101", "1980", dt.date(2027, 2, 1), 2.5, False, "  x  "])
    workbook.save(path)

    table = read_table(path)

    assert table.columns == ("phone", "birth_year", "start_date", "capacity", "flag", "empty")
    assert [r.line for r in table.rows] == [2, 4]
    assert table.rows[0].values == {
        "phone": "912000100",
        "birth_year": "1976",
        "start_date": "2027-01-11",
        "capacity": "60",
        "flag": "true",
        "empty": "",
    }
    assert table.rows[1].values["start_date"] == "2027-02-01"
    assert table.rows[1].values["capacity"] == "2.5"
    assert table.rows[1].values["empty"] == "x"


def test_cell_text_keeps_a_time_of_day() -> None:
    assert cell_text(dt.datetime(2026, 12, 1, 8, 30)) == "2026-12-01 08:30"


def test_cell_text_of_a_time_cell() -> None:
    assert cell_text(dt.time(7, 30)) == "07:30"
    assert cell_text(dt.time(7, 30, 15)) == "07:30:15"


def test_xlsx_time_cells_read_as_times(tmp_path: Path) -> None:
    path = tmp_path / "sessions.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["start_time", "end_time"])
    sheet.append([dt.time(7, 30), dt.time(11, 0)])
    sheet["A2"].number_format = "h:mm"
    workbook.save(path)
    assert read_table(path).rows[0].values == {"start_time": "07:30", "end_time": "11:00"}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("units.xls", b"", "unsupported file type"),
        ("units.txt", b"code\nA\n", "unsupported file type"),
        ("units.csv", "code,name\nĐ,x\n".encode("cp1258"), "not UTF-8"),
        ("units.csv", b"", "first row must hold the column names"),
        ("units.csv", b"\n", "first row must hold the column names"),
        ("units.csv", b"code,,name\n", "column 2 of the header has no name"),
        ("units.csv", b"code,Code\n", "columns named twice in the header: code"),
        ("units.csv", b"code,name\nA,B,C\n", "units.csv line 2: more cells than header"),
        ("units.xlsx", b"code,name\n", "not a valid .xlsx workbook"),
    ],
)
def test_unreadable_files_say_why(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TableError, match=message):
        read_table(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="file not found"):
        read_table(tmp_path / "people.csv")


def test_write_csv_to_a_stream_has_no_bom() -> None:
    stream = io.StringIO()
    write_csv(stream, ["a", "when"], [["Đặng", dt.datetime(2026, 12, 1, 8, 30, 59)], [None, 3]])
    assert stream.getvalue() == "a,when\nĐặng,2026-12-01 08:30\n,3\n"


def test_write_csv_file_has_bom_for_excel(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_csv_file(path, ["name"], [["Đặng Xuân Nam"]])
    assert path.read_bytes() == "\ufeffname\r\nĐặng Xuân Nam\r\n".encode()


FORMULAS = ["=1+1", "+84912000100", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


def test_write_csv_neutralises_formulas_in_text() -> None:
    stream = io.StringIO()
    texts = [text for text in FORMULAS if "\r" not in text]  # "\n" lines leave \r unquoted
    write_csv(stream, ["text", "number"], [[text, -5] for text in [*texts, "Lê = Lý"]])
    rows = list(csv.reader(io.StringIO(stream.getvalue(), newline="")))
    assert rows[1:] == [[f"'{text}", "-5"] for text in texts] + [["Lê = Lý", "-5"]]


def test_write_csv_file_neutralises_formulas_in_text(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_csv_file(path, ["name"], [[text] for text in FORMULAS])
    with path.open(encoding="utf-8-sig", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[1:] == [[f"'{text}"] for text in FORMULAS]


def test_write_xlsx_keeps_types_and_never_writes_formulas(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    when = dt.datetime(2026, 12, 1, 8, 30)
    write_xlsx(path, ["name", "phone", "at", "day"], [["=1+1", "0912000100", when, when.date()]])
    sheet = openpyxl.load_workbook(path).worksheets[0]
    assert [c.value for c in sheet[1]] == ["name", "phone", "at", "day"]
    assert sheet["A1"].font.bold
    assert sheet["A2"].value == "=1+1"
    assert sheet["A2"].data_type == "s"
    assert sheet["B2"].value == "0912000100"
    assert sheet["C2"].value == when
    assert sheet["D2"].value == dt.datetime(2026, 12, 1)
