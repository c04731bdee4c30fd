"""The storage subcommands, run as an operator would (each opens its own event loop and storage)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.storage.populate import add_clients
from vIOP.cli.storage import add_parsers, run
from vIOP.errors import ConfigError
from vIOP.settings import Settings
from vIOP.storage.bootstrap import open_storage
from vIOP.storage.crypto import FieldRef, KeyDestroyed
from vIOP.storage.keys import KeySourceError
from vIOP.storage.schema import audit_log, clients


def cli(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(list(argv)), settings)


@pytest.fixture
def settings(data_dir: Path, key_file: Path) -> Settings:
    assert cli(Settings(data_dir=data_dir), "keys", "init", str(key_file)) == 0
    return Settings(data_dir=data_dir, key_file=key_file)


def seed(settings: Settings, count: int) -> None:
    async def go() -> None:
        storage = await open_storage(settings)
        await add_clients(storage.keys, count)
        await storage.close()

    asyncio.run(go())


def audit_actions(settings: Settings) -> list[tuple[str, str | None, str]]:
    async def go() -> list[tuple[str, str | None, str]]:
        storage = await open_storage(settings)
        async with storage.db.read() as conn:
            rows = (
                await conn.execute(select(audit_log.c.action, audit_log.c.object_id, audit_log.c.outcome))
            ).all()
        await storage.close()
        return [tuple(row) for row in rows]  # type: ignore[misc]

    return asyncio.run(go())


def test_keys_init_never_overwrites(settings: Settings, key_file: Path) -> None:
    before = key_file.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        cli(settings, "keys", "init", str(key_file))
    assert key_file.read_bytes() == before


def test_db_upgrade(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(settings, "db", "upgrade") == 0
    assert "revision 0010" in capsys.readouterr().out


def test_rotate_status_retire_then_verify(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    seed(settings, 50)
    assert cli(settings, "keys", "rotate", "--batch-size", "20") == 0
    out = capsys.readouterr().out
    assert "53 data keys re-wrapped" in out
    assert cli(settings, "keys", "status") == 0
    status = capsys.readouterr().out
    assert "local:2  53 data keys  primary" in status
    assert "local:1  0 data keys" in status
    assert cli(settings, "keys", "retire") == 0
    assert "retired: local:1" in capsys.readouterr().out
    assert audit_actions(settings) == [
        ("keys.rotated", "local:2", "success"),
        ("keys.retired", "local:1", "success"),
    ]
    assert cli(settings, "audit", "verify") == 0
    assert "audit log intact: 2 rows" in capsys.readouterr().out


def test_audit_verify_exits_1_naming_the_row(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    async def go() -> None:
        storage = await open_storage(settings)
        for i in range(6):
            await storage.audit.append("us_1", "clinician", "room.admit", "participant", f"pt_{i}")
        async with storage.db.begin() as conn:
            await conn.execute(update(audit_log).where(audit_log.c.seq == 4).values(object_id="pt_other"))
        await storage.close()

    asyncio.run(go())
    assert cli(settings, "audit", "verify") == 1
    assert "BROKEN at row 4: altered" in capsys.readouterr().err


def test_audit_checkpoint_then_truncation_fails_verify(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marks = tmp_path / "elsewhere" / "marks.jsonl"

    async def write(count: int) -> None:
        storage = await open_storage(settings)
        for _ in range(count):
            await storage.audit.append("us_1", "staff", "presence.viewed")
        await storage.close()

    asyncio.run(write(3))
    assert cli(settings, "audit", "checkpoint", "--checkpoints", str(marks)) == 0
    assert "checkpoint written at row 3" in capsys.readouterr().out

    async def cut() -> None:
        storage = await open_storage(settings)
        async with storage.db.begin() as conn:
            await conn.execute(audit_log.delete().where(audit_log.c.seq == 3))
        await storage.close()

    asyncio.run(cut())
    assert cli(settings, "audit", "verify", "--checkpoints", str(marks)) == 1
    assert "truncated" in capsys.readouterr().err


def test_clients_shred_needs_yes_then_destroys(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(settings, 3)
    with pytest.raises(ConfigError, match="--yes"):
        cli(settings, "clients", "shred", "cl_000001")
    assert cli(settings, "clients", "shred", "cl_000001", "--yes") == 0
    assert "client cl_000001 shredded" in capsys.readouterr().out

    async def read(client_id: str) -> str:
        storage = await open_storage(settings)
        try:
            async with storage.db.read() as conn:
                blob = (
                    await conn.execute(select(clients.c.display_name).where(clients.c.id == client_id))
                ).scalar_one()
            return await storage.keys.decrypt_text(FieldRef("clients", "display_name", client_id), blob)
        finally:
            await storage.close()

    with pytest.raises(KeyDestroyed):
        asyncio.run(read("cl_000001"))
    assert asyncio.run(read("cl_000002")) == "cl name 2"
    assert ("client.shredded", "cl_000001", "success") in audit_actions(settings)


def test_missing_key_file_stops_every_command(data_dir: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=data_dir, key_file=tmp_path / "gone.json")
    with pytest.raises(KeySourceError, match="does not exist"):
        cli(settings, "keys", "status")
