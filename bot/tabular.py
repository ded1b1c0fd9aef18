"""Read and write simple tables as CSV or XLSX, the two formats school staff keep rosters in.

Reading gives every cell as a stripped string, whatever the file stored, so validation
sees one shape: Excel's numbers, dates and booleans are turned into the text a person
would have typed. Writing puts dates and times as real Excel values in XLSX and as
`YYYY-MM-DD HH:MM` text in CSV.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import openpyxl
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils.exceptions import InvalidFileException

from db.roster import Row

SUPPORTED_SUFFIXES = (".csv", ".xlsx")
# Candidate CSV delimiters: Excel in a Vietnamese (or any comma-decimal) locale saves ";".
_DELIMITERS = (",", ";", "\t")

Cell = str | int | float | bool | dt.date | dt.datetime | None
# First characters that make Excel read a CSV cell as a formula (OWASP's CSV injection list).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class TableError(ValueError):
    """A file that cannot be read as a table, worded for the person who made it."""


@dataclass(frozen=True)
class Table:
    """A file's header (lower-cased, stripped column names) and its non-empty rows."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]


def read_table(path: Path) -> Table:
    """Read a .csv or .xlsx file into a Table, or raise TableError."""
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise TableError(f"{path.name}: unsupported file type; save it as .csv or .xlsx")
    if not path.is_file():
        raise TableError(f"{path}: file not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TableError(f"{path.name}: cannot be read: {exc.strerror or exc}") from None
    return read_table_data(path.name, data)


def read_table_data(name: str, data: bytes) -> Table:
    """Read the content of a .csv or .xlsx file named `name` (an upload), or raise TableError."""
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise TableError(f"{name}: unsupported file type; save it as .csv or .xlsx")
    grid = _read_csv(name, data) if suffix == ".csv" else _read_xlsx(name, data)
    return _to_table(name, grid)


def _read_csv(name: str, data: bytes) -> list[list[str]]:
    """Return a CSV file's records; accept UTF-8 with or without BOM and `,`, `;` or tab."""
    try:
        # utf-8-sig drops the BOM Excel writes with "CSV UTF-8" and reads plain UTF-8 too.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TableError(
            f"{name}: not UTF-8 text; in Excel use Save As → 'CSV UTF-8 (Comma delimited)'"
        ) from None
    delimiter = _sniff_delimiter(text)
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise TableError(f"{name}: not a valid CSV file: {exc}") from None


def _sniff_delimiter(text: str) -> str:
    """Return the delimiter that splits the header line into the most columns.

    Reliable here because headers are known column names that contain none of the
    candidates, unlike csv.Sniffer's guess over data rows with free text.
    """
    header = text.split("\n", 1)[0].rstrip("\r")
    return max(_DELIMITERS, key=lambda d: len(next(csv.reader([header], delimiter=d), [])))


def _read_xlsx(name: str, data: bytes) -> list[list[str]]:
    """Return the first sheet's rows from row 1, each cell as text."""
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError) as exc:
        raise TableError(f"{name}: not a valid .xlsx workbook ({exc})") from None
    try:
        sheet = workbook.worksheets[0]
        # Read-only sheets yield blank rows for gaps, so the index is the sheet's row number.
        return [[cell_text(value) for value in row] for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


def cell_text(value: Any) -> str:
    """Return a spreadsheet cell as the text a person would have typed into it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        # Excel stores a date as a datetime at midnight.
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        # A time cell (a schedule's 7:30): to the minute unless it has seconds.
        return value.isoformat(timespec="minutes" if value.second == 0 else "seconds")
    if isinstance(value, float) and value.is_integer():
        # Whole numbers come back as floats from many spreadsheets: 60.0 means 60.
        return str(int(value))
    return str(value).strip()


def _to_table(name: str, grid: list[list[str]]) -> Table:
    """Check the header row and pair each later non-blank row with the column names."""
    if not grid or not any(cell.strip() for cell in grid[0]):
        raise TableError(f"{name}: the first row must hold the column names")
    columns = [cell.strip().lower() for cell in grid[0]]
    # Trailing empty header cells are common in spreadsheets; drop them.
    while columns and not columns[-1]:
        columns.pop()
    if "" in columns:
        position = columns.index("") + 1
        raise TableError(f"{name}: column {position} of the header has no name")
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise TableError(f"{name}: columns named twice in the header: {', '.join(duplicates)}")
    rows: list[Row] = []
    for number, record in enumerate(grid[1:], start=2):
        cells = [cell.strip() for cell in record]
        if not any(cells):
            continue
        extra = [cell for cell in cells[len(columns) :] if cell]
        if extra:
            raise TableError(
                f"{name} line {number}: more cells than header columns ({len(cells)} cells, "
                f"{len(columns)} columns); check the delimiter and quoting"
            )
        padded = cells + [""] * (len(columns) - len(cells))
        rows.append(Row(number, dict(zip(columns, padded, strict=False))))
    return Table(name, tuple(columns), tuple(rows))


def _csv_cell(value: Cell) -> str:
    """Return a value as CSV text; times to the minute, as staff read them.

    Text that Excel would take for a formula (it starts with = + - @, or a tab or carriage
    return before one) gets a leading ' so that it shows as typed and never runs: a
    roster name like "=HYPERLINK(…)" must stay a name, as in the XLSX export.
    """
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return str(value)


def write_csv(stream: TextIO, columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> None:
    """Write a header and rows as CSV to an open text stream."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_csv_cell(value) for value in row] for row in rows)


def write_csv_file(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> None:
    """Write a CSV file in UTF-8 with a BOM, without which Excel garbles Vietnamese text."""
    with path.open("w", encoding="utf-8-sig", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(columns)
        writer.writerows([_csv_cell(value) for value in row] for row in rows)


def write_xlsx(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> None:
    """Write one sheet with a bold header; dates and times become Excel dates."""
    _workbook(columns, rows).save(path)


def xlsx_bytes(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> bytes:
    """Return the .xlsx file that `write_xlsx` would write, as bytes (for a download)."""
    buffer = io.BytesIO()
    _workbook(columns, rows).save(buffer)
    return buffer.getvalue()


def _workbook(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Any:
    """Return a workbook of one sheet with a bold header; dates and times as Excel dates."""
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Sheet1")
    header = []
    for column in columns:
        cell = WriteOnlyCell(sheet, value=column)
        cell.font = Font(bold=True)
        header.append(cell)
    sheet.append(header)
    for row in rows:
        sheet.append([_xlsx_cell(sheet, value) for value in row])
    return workbook


def _xlsx_cell(sheet: Any, value: Cell) -> Any:
    """Return a write-only cell; text stays text even when it starts with '='."""
    cell = WriteOnlyCell(sheet, value=value)
    if isinstance(value, str):
        # openpyxl would store "=..." as a formula; a roster name must never run as one.
        cell.data_type = "s"
    elif isinstance(value, dt.datetime):
        cell.number_format = "yyyy-mm-dd hh:mm"
    elif isinstance(value, dt.date):
        cell.number_format = "yyyy-mm-dd"
    return cell
