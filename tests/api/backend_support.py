"""A live server on each SQL backend (SQLite in the test's folder; PostgreSQL when VIOP_TEST_POSTGRES_URL is
set), what its SQL engine executes, and the database made unavailable under it, as tests/faults does."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.faults import _lock_sqlite, _unlock_sqlite
from tests.api.support import Api
from tests.storage.conftest import _reset_postgres
from vIOP.storage.database import Database, upgrade

POSTGRES_URL = os.environ.get("VIOP_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]


@contextlib.asynccontextmanager
async def api_on(backend: str, live_server_factory: Callable[..., Any]) -> AsyncIterator[Api]:
    """The HTTP API of a live server whose SQL store is ``backend`` (a fresh, migrated database)."""
    overrides: dict[str, str] = {}
    if backend == "postgresql":
        assert POSTGRES_URL is not None
        await _reset_postgres(POSTGRES_URL)
        await upgrade(POSTGRES_URL)  # a server migrates SQLite itself; PostgreSQL is `vIOP db upgrade`
        overrides["database_url"] = POSTGRES_URL
    async with (
        live_server_factory(**overrides) as live,
        httpx.AsyncClient(base_url=live.base_url, timeout=60) as http,
    ):
        yield Api(live, http)


@contextlib.contextmanager
def sql_writes(db: Database) -> Iterator[list[str]]:
    """Every INSERT, UPDATE and DELETE the engine sends while the block runs (SQLAlchemy's own hook)."""
    seen: list[str] = []

    def on_execute(*args: Any) -> None:
        statement: str = args[2]
        if statement.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            seen.append(" ".join(statement.split()))

    event.listen(db.engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", on_execute)


@contextlib.contextmanager
def failed_writes(db: Database, table: str) -> Iterator[asyncio.Event]:
    """An event set once an UPDATE of ``table`` has failed in the engine (SQLAlchemy's error hook)."""
    failed = asyncio.Event()

    def on_error(context: Any) -> None:
        statement = " ".join((context.statement or "").split())
        if statement.startswith(f"UPDATE {table} "):
            failed.set()

    event.listen(db.engine.sync_engine, "handle_error", on_error)
    try:
        yield failed
    finally:
        event.remove(db.engine.sync_engine, "handle_error", on_error)


@contextlib.asynccontextmanager
async def database_down(backend: str, data_dir: Path) -> AsyncIterator[None]:
    """The database takes no writes until the block ends; reads still work. SQLite: its write lock held by
    another process (what a careless backup does: writers wait out the busy timeout, then fail).
    PostgreSQL: every session read-only, open ones cut (a failover to a standby, as clients see it)."""
    if backend == "sqlite":
        # In a thread: the server may share this event loop, and it must be able to finish (commit) the
        # write transaction it is in while the locker waits for the lock (blocking the loop deadlocked).
        locker = await asyncio.to_thread(_lock_sqlite, data_dir / "viop.db")
        try:
            yield
        finally:
            await asyncio.to_thread(_unlock_sqlite, locker)
        return
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL)
    name = url.database
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")

    async def sessions_become(setting: str) -> None:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'ALTER DATABASE "{name}" {setting}')
            await conn.execute(  # open sessions keep the old setting: cut them (the pool reconnects)
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                {"name": name},
            )

    try:
        await sessions_become("SET default_transaction_read_only = on")
        try:
            yield
        finally:
            await sessions_become("RESET default_transaction_read_only")
    finally:
        await admin.dispose()
