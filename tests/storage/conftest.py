"""Storage fixtures: a migrated database on SQLite, and on PostgreSQL when VIOP_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from vIOP.storage.crypto import KeyRing
from vIOP.storage.database import Database, default_sqlite_url, upgrade
from vIOP.storage.keys import FileKeySource

POSTGRES_URL = os.environ.get("VIOP_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        await conn.exec_driver_sql("CREATE SCHEMA public")
    await engine.dispose()


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, data_dir: Path) -> str:
    """An empty database: a fresh SQLite file in the test's data folder, or a wiped PostgreSQL schema."""
    if request.param == "postgresql":
        assert POSTGRES_URL is not None
        await _reset_postgres(POSTGRES_URL)
        return POSTGRES_URL
    return default_sqlite_url(data_dir)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    await upgrade(database_url)
    database = await Database.open(database_url)
    yield database
    await database.close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A key file outside the data folder, as production keeps it."""
    return tmp_path / "secrets" / "keys.json"


@pytest.fixture
def key_source(key_file: Path) -> FileKeySource:
    return FileKeySource(key_file, create=True)


@pytest.fixture
async def ring(db: Database, key_source: FileKeySource) -> KeyRing:
    return await KeyRing.open(db, key_source)
