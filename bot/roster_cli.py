"""Roster commands of the CLI: import units, people, classes or schedules; export; seed the demo.

Output conventions: an import's report (summary or bad rows) goes to `stdout`; a file or
argument that cannot be used is one `trainingbot: …` sentence on `stderr` with exit
status 2, as bot.cli does for its own errors. Exported CSV goes to stdout as plain
UTF-8 (for pipes and terminals) and to a file as UTF-8 with a BOM, because Excel, which
school staff open it with, reads BOM-less CSV in the legacy code page and garbles
Vietnamese.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.tabular import (
    Cell,
    Table,
    TableError,
    read_table,
    write_csv,
    write_csv_file,
    write_xlsx,
)
from db.roster import (
    DEFAULT_ZONE,
    DEMO_ANCHOR,
    EXPORT_COLUMNS,
    KINDS,
    ImportResult,
    Kind,
    RegistrationRow,
    RosterError,
    Row,
    import_rows,
    missing_columns,
    registrations_for_export,
    unknown_columns,
)

EXPORT_FORMATS = ("csv", "xlsx")
# The demo roster's files, imported in this order; it has no schedule.
DEMO_KINDS: tuple[Kind, ...] = ("units", "people", "classes")


def read_roster_file(kind: Kind, path: Path) -> tuple[Table, list[Row]]:
    """Read a roster file and check its header, or raise TableError."""
    table = read_table(path)
    missing = missing_columns(kind, table.columns)
    if missing:
        raise TableError(
            f"{table.name}: missing column(s) {', '.join(missing)}; a {kind} file has "
            f"columns {','.join(missing_columns(kind, ()))}"
        )
    return table, list(table.rows)


def report_errors(name: str, result: ImportResult, stdout: TextIO) -> None:
    """Print every problem as `FILE line N: why`, then how many rows were bad."""
    for error in result.errors:
        print(f"{name} line {error.line}: {error.message}", file=stdout)
    bad_rows = len({error.line for error in result.errors})
    print(f"nothing imported: {bad_rows} bad row{'s' if bad_rows != 1 else ''}", file=stdout)


async def import_command(
    sessionmaker: async_sessionmaker[AsyncSession],
    kind: str,
    path: Path,
    stdout: TextIO,
    *,
    stderr: TextIO | None = None,
    zone: ZoneInfo = DEFAULT_ZONE,
    now: dt.datetime | None = None,
) -> int:
    """Import one roster file; return 0 on success, 1 for bad rows, 2 for an unusable file.

    All rows are checked before anything is written, in one transaction: a file with
    any bad row changes nothing. A schedule's dates and times are local to `zone`, and
    so is today (`now`, the current time unless given) for the birth-year check.
    """
    stderr = stderr or sys.stderr
    if kind not in KINDS:
        print(f"trainingbot: unknown import kind {kind!r} (use {', '.join(KINDS)})", file=stderr)
        return 2
    try:
        table, rows = read_roster_file(kind, path)
    except TableError as exc:
        print(f"trainingbot: {exc}", file=stderr)
        return 2
    today = (now or dt.datetime.now(dt.UTC)).astimezone(zone).date()
    ignored = unknown_columns(kind, table.columns)
    if ignored:
        print(f"{table.name}: ignoring unknown column(s): {', '.join(ignored)}", file=stdout)
    try:
        async with sessionmaker() as session, session.begin():
            result = await import_rows(session, kind, rows, today=today, zone=zone)
    except IntegrityError:
        # Upserts make this rare: a unit deleted by someone else while people referred to it.
        print(
            "the roster changed while importing (another import at the same time?); "
            "nothing imported — run the import again",
            file=stdout,
        )
        return 1
    if result.errors:
        report_errors(table.name, result, stdout)
        return 1
    print(result.summary, file=stdout)
    for warning in result.warnings:
        print(f"warning: {warning}", file=stdout)
    return 0


def export_cells(row: RegistrationRow, zone: ZoneInfo) -> list[Cell]:
    """Return one export line; the time is local and naive, as Excel cannot hold zones."""
    local = row.registered_at.astimezone(zone).replace(tzinfo=None)
    return [
        row.class_code,
        row.full_name,
        row.phone,
        row.unit_code,
        row.unit_name,
        row.status.value,
        local,
    ]


def _export_problem(file_format: str, output: Path | None) -> str | None:
    """Return why the format and output cannot be used together, or None."""
    if file_format not in EXPORT_FORMATS:
        return f"unknown export format {file_format!r} (use csv or xlsx)"
    if output is None:
        if file_format == "xlsx":
            return "an xlsx export needs an output file: add -o FILE.xlsx"
        return None
    suffix = output.suffix.lower().lstrip(".")
    if suffix in EXPORT_FORMATS and suffix != file_format:
        return (
            f"{output.name} ends in .{suffix} but the format is {file_format}: "
            f"add --format {suffix}"
        )
    return None


async def export_command(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    class_code: str | None,
    file_format: str,
    output: Path | None,
    stdout: TextIO,
    zone: ZoneInfo,
    stderr: TextIO | None = None,
) -> int:
    """Export registrations (all statuses) as CSV or XLSX; return 0, or 2 on a usage error.

    Columns are EXPORT_COLUMNS; rows go by class start date, class code, then time of
    registration, shown in `zone` to the minute. CSV goes to stdout unless `output` is
    given; XLSX needs `output`.
    """
    stderr = stderr or sys.stderr
    problem = _export_problem(file_format, output)
    if problem:
        print(f"trainingbot: {problem}", file=stderr)
        return 2
    try:
        async with sessionmaker() as session:
            registrations = await registrations_for_export(session, class_code)
    except RosterError as exc:
        print(f"trainingbot: {exc}", file=stderr)
        return 2
    rows = [export_cells(row, zone) for row in registrations]
    if output is None:
        write_csv(stdout, EXPORT_COLUMNS, rows)
        return 0
    try:
        if file_format == "xlsx":
            write_xlsx(output, EXPORT_COLUMNS, rows)
        else:
            write_csv_file(output, EXPORT_COLUMNS, rows)
    except OSError as exc:
        print(f"trainingbot: cannot write {output}: {exc.strerror or exc}", file=stderr)
        return 2
    count = len(rows)
    print(f"{count} registration{'s' if count != 1 else ''} written to {output}", file=stdout)
    return 0


def _demo_rows(data_dir: Path) -> dict[Kind, tuple[str, list[Row]]]:
    """Read the demo's three CSV files, or raise RosterError."""
    files: dict[Kind, tuple[str, list[Row]]] = {}
    for kind in DEMO_KINDS:
        try:
            table, rows = read_roster_file(kind, data_dir / f"{kind}.csv")
        except TableError as exc:
            raise RosterError(f"demo roster: {exc}") from None
        files[kind] = (table.name, rows)
    return files


def _first_errors(name: str, result: ImportResult, limit: int = 3) -> str:
    shown = "; ".join(f"line {e.line}: {e.message}" for e in result.errors[:limit])
    more = f" (and {len(result.errors) - limit} more)" if len(result.errors) > limit else ""
    return f"demo roster: {name} has bad rows, nothing loaded: {shown}{more}"


async def load_demo(
    sessionmaker: async_sessionmaker[AsyncSession], data_dir: Path, *, today: dt.date
) -> str:
    """Import the demo roster with class dates moved so DEMO_ANCHOR falls on `today`.

    Idempotent: loading it again on the same day changes nothing. Raise RosterError (a
    ValueError) when a file is missing or has bad rows; nothing is loaded then.
    """
    shift = (today - DEMO_ANCHOR).days
    files = _demo_rows(data_dir)
    results: list[ImportResult] = []
    # One transaction: units first, so people and quotas see them.
    async with sessionmaker() as session, session.begin():
        for kind in DEMO_KINDS:
            name, rows = files[kind]
            result = await import_rows(session, kind, rows, today=today, shift_days=shift)
            if result.errors:
                raise RosterError(_first_errors(name, result))
            results.append(result)
    return _demo_summary(results, shift)


def _demo_summary(results: Sequence[ImportResult], shift: int) -> str:
    counts = "; ".join(result.summary for result in results)
    return f"demo roster loaded (class dates shifted by {shift:+d} days): {counts}"
