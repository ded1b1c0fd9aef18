"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

# How long a SQLite unit of work waits for another one's write lock before failing.
SQLITE_BUSY_SECONDS = 30
# How long opening a PostgreSQL connection may take (asyncpg's default is 60 s): a server
# that accepts but never answers must not hold a worker, or a stop, that long.
CONNECT_TIMEOUT_SECONDS = 10


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create an async engine; SQLite gets foreign keys, WAL, a busy timeout, real transactions.

    No dialect prints bound values in its errors (`hide_parameters`): a failed statement
    must not put a roster batch's names and phone numbers into a traceback or a log.

    On SQLite every unit of work is a transaction that holds the write lock from its
    start (`BEGIN IMMEDIATE`), as SQLAlchemy's recipe for (aio)sqlite does it. The
    driver on its own sends BEGIN only before the first INSERT/UPDATE/DELETE, so the
    reads before it saw other connections' commits and two imports of one schedule
    could both insert it. The cost is that units of work, reads included, run one at a
    time; they wait for each other up to SQLITE_BUSY_SECONDS.
    """
    kwargs.setdefault("hide_parameters", True)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        connect_args = {"timeout": CONNECT_TIMEOUT_SECONDS, **kwargs.pop("connect_args", {})}
        return create_async_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS}, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _configure_sqlite(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # The driver must not send BEGIN itself; _begin_immediate does (aiosqlite's
        # adapted connection passes this setting on to its sqlite3 connection).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def upsert_insert(session: AsyncSession, model: type[Any]) -> postgresql.Insert | sqlite.Insert:
    """Return an INSERT for `model` in the session's dialect, which has ON CONFLICT clauses.

    Both databases the service runs on spell ON CONFLICT the same way, but SQLAlchemy
    builds it only from the dialect's own insert().
    """
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return the session factory; objects stay usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
