"""The SQL engine (SQLite by default, PostgreSQL when configured) and the programmatic migration runner.

SQLite runs in WAL mode with foreign keys on, and every transaction starts ``BEGIN IMMEDIATE``: writers queue
on the busy timeout instead of failing half-way with "database is locked" when a read turns into a write.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from vIOP.errors import ConfigError, StartupError

SQLITE_BUSY_TIMEOUT_MS = 10_000
MIGRATIONS = Path(__file__).parent / "migrations"
_READ_ONLY = "viop_read_only"


def default_sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'viop.db'}"


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver must not open transactions itself: the "begin" hook below does, as IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode across app crashes
    cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url`` with vIOP's connection settings; ConfigError for an unusable URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("VIOP_DATABASE_URL", "not a database URL") from None
    if parsed.drivername == "postgresql":  # a plain postgresql:// URL means our async driver
        parsed = parsed.set(drivername="postgresql+asyncpg")
        url = parsed.render_as_string(hide_password=False)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if (backend, driver) not in {("sqlite", "aiosqlite"), ("postgresql", "asyncpg")}:
        raise ConfigError(
            "VIOP_DATABASE_URL", "use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB"
        )
    path = _sqlite_path(url)
    if path is not None:
        _prepare_sqlite_file(path)
    engine = create_async_engine(url, pool_pre_ping=backend == "postgresql", **kwargs)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
    return engine


def _prepare_sqlite_file(path: Path) -> None:
    """Create the database file owner-only (0600) before SQLite does with the process umask."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
    except OSError as exc:
        raise StartupError(f"cannot create the database file {path}: {exc.strerror}") from None


class Database:
    """One async engine. ``async with db.begin() as conn`` is a transaction, committed on success;
    ``async with db.read() as conn`` is a read-only one."""

    __slots__ = ("engine", "url")

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self.url = url

    @classmethod
    async def open(cls, url: str, **engine_kwargs: Any) -> Database:
        """Connect once to fail fast (StartupError) on a wrong URL, missing server or bad password."""
        engine = create_engine(url, **engine_kwargs)
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except (DBAPIError, OSError) as exc:
            await engine.dispose()
            raise StartupError(f"cannot open the database: {type(exc).__name__}") from None
        return cls(engine, url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction: on SQLite it does not queue behind writers for the write lock."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**{_READ_ONLY: True})
            async with conn.begin():
                yield conn

    async def close(self) -> None:
        await self.engine.dispose()


def _alembic_upgrade(connection: Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade(url: str, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` (programmatic: no alembic.ini needed)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            # Alembic is synchronous: it runs on the async connection through run_sync.
            await conn.run_sync(_alembic_upgrade, revision)
    except (DBAPIError, OSError) as exc:
        raise StartupError(f"database migration failed: {type(exc).__name__}: {exc}"[:500]) from None
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()


def run_upgrade_blocking(url: str) -> None:
    """For CLI code paths that are not already inside an event loop."""
    asyncio.run(upgrade(url))
