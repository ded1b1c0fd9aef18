"""Database fixtures: every database test runs on SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db import migrate
from db.models import Base
from db.session import create_engine, create_sessionmaker

POSTGRES_ENV = "TRAININGBOT_TEST_POSTGRES_URL"
SKIP_POSTGRES = (
    f"PostgreSQL tests are off: set {POSTGRES_ENV} "
    "(e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/postgres; .ci/run does)"
)
DEMO_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "demo"


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _create_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """Create one migrated PostgreSQL database for the run, or None when not configured.

    Fails (never skips) when the variable is set but the server cannot be reached, so CI
    cannot pass without running the PostgreSQL half.
    """
    server_url = os.environ.get(POSTGRES_ENV)
    if not server_url:
        yield None
        return
    name = f"trainingbot_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_create_database(server_url, name))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"{POSTGRES_ENV} is set but PostgreSQL cannot be used: {exc}")
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_migrate(url))
    yield url
    asyncio.run(_drop_database(server_url, name))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate one SQLite file per run; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


async def _empty_all(url: str) -> None:
    """Delete every row and restart the ids, as TRUNCATE … RESTART IDENTITY would.

    DELETE on a few small tables takes milliseconds where TRUNCATE of every table takes
    a tenth of a second or more (it replaces each table's files): a minute or two over
    the suite's PostgreSQL half.
    """
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                await connection.exec_driver_sql(f'DELETE FROM "{table.name}"')
            await connection.exec_driver_sql(
                "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, 1, false) "
                "FROM pg_sequences WHERE schemaname = current_schema()"
            )
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_url: str | None,
) -> str:
    """Return the URL of an empty, migrated database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    if postgres_url is None:
        pytest.skip(SKIP_POSTGRES)
    await _empty_all(postgres_url)
    return postgres_url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """Return an engine on the test database, disposed after the test."""
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return the session factory the application itself would use."""
    return create_sessionmaker(engine)


@pytest.fixture
def demo_data() -> Path:
    """Return ../shared/data/demo, the demo roster the README's `make demo` loads."""
    if not (DEMO_DATA / "people.csv").exists():
        pytest.skip(f"demo roster not found at {DEMO_DATA} (it lives in ../shared beside the repo)")
    return DEMO_DATA
