from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from vIOP.errors import ConfigError, StartupError
from vIOP.storage.database import Database, current_revision, default_sqlite_url, upgrade
from vIOP.storage.schema import data_keys, metadata


async def test_upgrade_creates_every_table_of_the_schema_and_matches_it(db: Database) -> None:
    def diff(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata))

    async with db.begin() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []
    assert await current_revision(db.url) == "0010"


async def test_upgrade_is_idempotent(database_url: str) -> None:
    await upgrade(database_url)
    await upgrade(database_url)
    assert await current_revision(database_url) == "0010"


async def test_sqlite_file_is_owner_only(data_dir: Path) -> None:
    url = default_sqlite_url(data_dir)
    await upgrade(url)
    mode = stat.S_IMODE((data_dir / "viop.db").stat().st_mode)
    assert mode == 0o600


async def test_times_come_back_aware_utc(db: Database) -> None:
    paris = timezone(timedelta(hours=1))
    written = datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=paris)
    async with db.begin() as conn:
        await conn.execute(insert(data_keys).values(id="k", scope="system", created_at=written))
        read = (await conn.execute(select(data_keys.c.created_at))).scalar_one()
    assert read == written
    assert read.utcoffset() == timedelta(0)
    assert read.tzinfo == UTC


async def test_naive_times_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with db.begin() as conn:
            await conn.execute(
                insert(data_keys).values(id="k", scope="system", created_at=datetime(2026, 1, 1))
            )


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite:///x.db", "not a url at all"])
async def test_unsupported_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="VIOP_DATABASE_URL"):
        await Database.open(url)


@pytest.mark.parametrize(
    "url", ["postgresql+asyncpg://viop@127.0.0.1:1/viop", "postgresql://viop@127.0.0.1:1/viop"]
)
async def test_unreachable_postgres_is_a_startup_error(url: str) -> None:
    with pytest.raises(StartupError, match="cannot open the database"):
        await Database.open(url)
