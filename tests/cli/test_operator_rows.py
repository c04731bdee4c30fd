"""Every CLI audit row names the operator behind ``sudo`` (``AuditOutbox.record_operator``): the storage
commands, and (issue 12) the compliance and attendance commands, whose rows had no actor before."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.cli.test_storage import audit_actions
from tests.storage.populate import add_clients
from vIOP.cli import compliance
from vIOP.cli.storage import add_parsers, run
from vIOP.settings import Settings
from vIOP.storage.bootstrap import open_storage
from vIOP.storage.schema import audit_log


def actors(settings: Settings) -> list[tuple[str, str | None, str]]:
    async def go() -> list[tuple[str, str | None, str]]:
        storage = await open_storage(settings)
        try:
            async with storage.db.read() as conn:
                result = await conn.execute(
                    select(audit_log.c.action, audit_log.c.actor_id, audit_log.c.actor_role)
                )
                return [(r.action, r.actor_id, r.actor_role) for r in result]
        finally:
            await storage.close()

    return asyncio.run(go())


def test_cli_rows_name_the_operator_behind_sudo(
    data_dir: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cli(settings: Settings, *argv: str) -> int:
        parser = argparse.ArgumentParser()
        add_parsers(parser.add_subparsers(dest="command", required=True))
        return run(parser.parse_args(list(argv)), settings)

    assert cli(Settings(data_dir=data_dir), "keys", "init", str(key_file)) == 0
    settings = Settings(data_dir=data_dir, key_file=key_file)
    monkeypatch.setenv("SUDO_USER", "carol.ops")
    assert cli(settings, "keys", "rotate") == 0
    assert cli(settings, "audit", "verify") == 0
    assert [(a, o) for a, _, o in audit_actions(settings)] == [
        ("keys.rotated", "success"),
        ("audit.verified", "success"),
    ]

    assert [(actor, role) for _, actor, role in actors(settings)] == [
        ("os:carol.ops", "operator"),
        ("os:carol.ops", "operator"),
    ]


def test_compliance_cli_rows_name_the_operator_behind_sudo(
    data_dir: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def storage_cli(settings: Settings, *argv: str) -> int:
        parser = argparse.ArgumentParser()
        add_parsers(parser.add_subparsers(dest="command", required=True))
        return run(parser.parse_args(list(argv)), settings)

    def compliance_cli(settings: Settings, *argv: str) -> int:
        parser = argparse.ArgumentParser()
        compliance.add_parsers(parser.add_subparsers(dest="command", required=True))
        return compliance.run(parser.parse_args(list(argv)), settings)

    assert storage_cli(Settings(data_dir=data_dir), "keys", "init", str(key_file)) == 0
    settings = Settings(data_dir=data_dir, key_file=key_file)

    async def one_client() -> None:
        storage = await open_storage(settings)
        try:
            await add_clients(storage.keys, 1)  # cl_000000
        finally:
            await storage.close()

    asyncio.run(one_client())
    monkeypatch.setenv("SUDO_USER", "carol.ops")
    assert compliance_cli(settings, "consent", "list", "--client", "cl_000000") == 0
    assert storage_cli(settings, "audit", "review") == 0
    assert actors(settings) == [
        ("consent.listed", "os:carol.ops", "operator"),
        ("access.break_glass_reviewed", "os:carol.ops", "operator"),
    ]
