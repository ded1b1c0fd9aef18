"""Benchmark: import a province-sized roster (30,000 people) and import it again.

Prints wall-clock seconds on SQLite and, when TRAININGBOT_BENCH_POSTGRES_URL (or
TRAININGBOT_TEST_POSTGRES_URL) names a server, on PostgreSQL in a throwaway database.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.roster_cli import import_command
from db import migrate
from db.roster import REQUIRED_COLUMNS
from db.session import create_engine, create_sessionmaker

PEOPLE = 30_000
UNITS = 60
SURNAMES = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Phan", "Vũ", "Đặng", "Bùi", "Đỗ"]
MIDDLE = ["Văn", "Thị", "Đức", "Thu", "Minh", "Ngọc", "Xuân", "Hữu"]
GIVEN = ["An", "Bình", "Cường", "Dũng", "Hà", "Hoa", "Lan", "Nam", "Oanh", "Trang"]


def write_roster(folder: Path, seed: int = 7) -> tuple[Path, Path]:
    """Write units.csv and people.csv of a synthetic province; return their paths."""
    rng = random.Random(seed)
    units = folder / "units.csv"
    with units.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(REQUIRED_COLUMNS["units"])
        for number in range(UNITS):
            writer.writerow([f"U{number:03d}", f"Đơn vị số {number}", "department", ""])
    people = folder / "people.csv"
    with people.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(REQUIRED_COLUMNS["people"])
        for number in range(PEOPLE):
            name = f"{rng.choice(SURNAMES)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
            writer.writerow(
                [
                    f"09{number:08d}",
                    name,
                    f"U{rng.randrange(UNITS):03d}",
                    "Chuyên viên",
                    rng.choice(["male", "female"]),
                    rng.randint(1966, 2002),
                    rng.choice(["", "so_cap", "trung_cap", "cao_cap"]),
                    "learner",
                ]
            )
    return units, people


@asynccontextmanager
async def postgres_database(server_url: str) -> AsyncIterator[str]:
    """Yield the URL of a new empty PostgreSQL database, dropped afterwards."""
    name = f"trainingbot_bench_{uuid.uuid4().hex[:10]}"
    dsn = make_url(server_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    await connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


async def timed_import(
    sessionmaker: async_sessionmaker[AsyncSession], kind: str, path: Path
) -> tuple[float, str]:
    """Import one file; return the seconds it took and its summary line."""
    out = io.StringIO()
    started = time.perf_counter()
    status = await import_command(sessionmaker, kind, path, out)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"import failed: {out.getvalue()}")
    return elapsed, out.getvalue().strip()


async def run_on(label: str, url: str, units: Path, people: Path) -> None:
    """Migrate, import the roster twice and print the figures."""
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        sessionmaker = create_sessionmaker(engine)
        await timed_import(sessionmaker, "units", units)
        first, summary = await timed_import(sessionmaker, "people", people)
        again, again_summary = await timed_import(sessionmaker, "people", people)
    finally:
        await engine.dispose()
    for name, seconds, said in (
        ("first import", first, summary),
        ("re-import", again, again_summary),
    ):
        print(
            f"{label:<10} {name:<12} {seconds:6.2f} s  ({PEOPLE / seconds:>6,.0f} people/s)  {said}"
        )


async def on_each_database(run: Callable[[str, str], Awaitable[None]]) -> None:
    """Run `run(label, url)` on a fresh SQLite file and, when configured, on PostgreSQL."""
    with tempfile.TemporaryDirectory() as folder:
        await run("sqlite", f"sqlite+aiosqlite:///{folder}/bench.db")
    server = os.environ.get("TRAININGBOT_BENCH_POSTGRES_URL") or os.environ.get(
        "TRAININGBOT_TEST_POSTGRES_URL"
    )
    if server:
        async with postgres_database(server) as url:
            await run("postgresql", url)
    else:
        print("postgresql skipped: set TRAININGBOT_BENCH_POSTGRES_URL to include it")


async def main() -> None:
    """Run the roster import benchmark on every configured database."""
    with tempfile.TemporaryDirectory() as folder:
        units, people = write_roster(Path(folder))
        print(f"roster import benchmark: {PEOPLE:,} people in {UNITS} units")

        async def run(label: str, url: str) -> None:
            await run_on(label, url, units, people)

        await on_each_database(run)


if __name__ == "__main__":
    asyncio.run(main())
