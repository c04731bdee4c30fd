"""``users`` subcommands end to end: real SQLite in a temp data folder, real key file, real argon2id."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from tests.auth.support import CHEAP_ARGON2
from vIOP.auth.accounts import Account, AccountAdmin
from vIOP.auth.passwords import PasswordHasher
from vIOP.cli.users import add_users_parser, open_account_admin, run_users
from vIOP.errors import BadRequest, Conflict, NotFound
from vIOP.settings import Settings
from vIOP.storage.bootstrap import open_storage
from vIOP.storage.schema import audit_log

PASSWORD = "correct horse battery staple"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vIOP")
    sub = parser.add_subparsers(dest="command", required=True)
    assert add_users_parser(sub) == "users"
    return parser.parse_args(["users", *argv])


def cheap_admin(settings: Settings) -> AbstractAsyncContextManager[AccountAdmin]:
    return open_account_admin(settings, PasswordHasher(CHEAP_ARGON2))


def run(settings: Settings, *argv: str, stdin: str = PASSWORD + "\n", production_argon2: bool = False) -> str:
    out = io.StringIO()
    opener = open_account_admin if production_argon2 else cheap_admin
    assert run_users(parse(*argv), settings, stdin=io.StringIO(stdin), stdout=out, open_admin=opener) == 0
    return out.getvalue()


def lookup(settings: Settings, username: str) -> Account:
    async def find() -> Account:
        async with cheap_admin(settings) as admin:
            return await admin.find(username)

    return asyncio.run(find())


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir)


def test_create_without_totp(settings: Settings) -> None:
    output = run(
        settings,
        "create",
        "--role",
        "clinician",
        "--username",
        "Dr.Lee",
        "--password-stdin",
        production_argon2=True,
    )
    account = lookup(settings, "dr.lee")
    assert output == f"created clinician account {account.id}\n"
    assert PASSWORD not in output and not account.mfa_enabled
    assert account.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")  # production parameters


def test_create_with_totp_prints_the_uri_once(settings: Settings) -> None:
    output = run(
        settings, "create", "--role", "admin", "--username", "it.admin", "--password-stdin", "--totp"
    )
    lines = output.splitlines()
    assert lines[1].startswith("TOTP provisioning URI") and lines[2].startswith(
        "otpauth://totp/vIOP:it.admin?"
    )
    secret_b32 = parse_qs(urlsplit(lines[2]).query)["secret"][0]
    account = lookup(settings, "it.admin")
    assert base64.b32encode(account.totp_secret or b"").decode().rstrip("=") == secret_b32


def test_password_keeps_inner_spaces_and_ignores_crlf(settings: Settings) -> None:
    run(
        settings,
        "create",
        "--role",
        "staff",
        "--username",
        "desk",
        "--password-stdin",
        stdin=f" {PASSWORD} \r\n",
    )
    assert PasswordHasher(CHEAP_ARGON2).verify(lookup(settings, "desk").password_hash, f" {PASSWORD} ")


def test_empty_stdin_is_refused(settings: Settings) -> None:
    with pytest.raises(BadRequest, match="no password"):
        run(settings, "create", "--role", "staff", "--username", "desk", "--password-stdin", stdin="")


def test_password_never_on_the_command_line() -> None:
    with pytest.raises(SystemExit):
        parse("create", "--role", "staff", "--username", "desk")
    with pytest.raises(SystemExit):
        parse("create", "--role", "staff", "--username", "desk", "--password", PASSWORD)
    with pytest.raises(SystemExit):
        parse("create", "--role", "client", "--username", "desk", "--password-stdin")


def test_duplicate_username(settings: Settings) -> None:
    run(settings, "create", "--role", "staff", "--username", "desk", "--password-stdin")
    with pytest.raises(Conflict):
        run(settings, "create", "--role", "admin", "--username", "DESK", "--password-stdin")


def test_disable_enable_and_reset_mfa(settings: Settings) -> None:
    run(settings, "create", "--role", "clinician", "--username", "dr.kim", "--password-stdin", "--totp")
    before = lookup(settings, "dr.kim")
    assert run(settings, "disable", "--username", "dr.kim") == f"disabled account {before.id}\n"
    assert lookup(settings, "dr.kim").disabled
    run(settings, "enable", "--username", "dr.kim")
    assert not lookup(settings, "dr.kim").disabled
    output = run(settings, "reset-mfa", "--username", "dr.kim")
    assert "otpauth://totp/vIOP:dr.kim?" in output
    assert lookup(settings, "dr.kim").totp_secret not in (None, before.totp_secret)
    with pytest.raises(NotFound):
        run(settings, "disable", "--username", "nobody")
    assert audit_rows(settings) == [
        ("cli", "user.created", "user", before.id), ("cli", "user.disabled", "user", before.id),
        ("cli", "user.enabled", "user", before.id), ("cli", "user.mfa_reset", "user", before.id),
    ]  # fmt: skip


def audit_rows(settings: Settings) -> list[tuple[str, str, str, str]]:
    async def read() -> list[tuple[str, str, str, str]]:
        storage = await open_storage(settings)
        try:
            assert (await storage.audit.verify()).ok
            async with storage.db.read() as conn:
                rows = await conn.execute(
                    select(audit_log.c.actor_role, audit_log.c.action, audit_log.c.object_type,
                           audit_log.c.object_id).order_by(audit_log.c.seq)
                )  # fmt: skip
                return [tuple(row) for row in rows]
        finally:
            await storage.close()

    return asyncio.run(read())


def test_production_requires_totp(data_dir: Path, tmp_path: Path) -> None:
    production = Settings(
        env="production",
        data_dir=data_dir,
        database_url=f"sqlite+aiosqlite:///{data_dir / 'prod.db'}",
        key_file=tmp_path / "keys" / "keys.json",
    )
    from vIOP.storage.database import upgrade
    from vIOP.storage.keys import FileKeySource

    FileKeySource(production.key_file, create=True)  # type: ignore[arg-type]
    asyncio.run(upgrade(production.effective_database_url))  # production migrates explicitly (db upgrade)
    with pytest.raises(BadRequest, match="TOTP"):
        run(production, "create", "--role", "admin", "--username", "root.admin", "--password-stdin")
    run(production, "create", "--role", "admin", "--username", "root.admin", "--password-stdin", "--totp")
    assert lookup(production, "root.admin").mfa_enabled


def test_display_name_at_creation_and_later(settings: Settings) -> None:
    run(settings, "create", "--role", "clinician", "--username", "dr.lee", "--password-stdin",
        "--display-name", "  Dr. Lee ")  # fmt: skip
    account = lookup(settings, "dr.lee")
    assert account.display_name == "Dr. Lee"
    output = run(settings, "set-display-name", "--username", "dr.lee", "--display-name", "Dr. Amy Lee")
    assert output == f"account {account.id} is shown as the new display name from the next room entry\n"
    assert "Amy" not in output  # the name stays out of terminal logs too
    assert lookup(settings, "dr.lee").display_name == "Dr. Amy Lee"
    assert audit_rows(settings)[-1] == ("cli", "user.display_name_changed", "user", account.id)


def test_display_name_defaults_to_the_role_never_the_username(settings: Settings) -> None:
    run(settings, "create", "--role", "clinician", "--username", "dr.kim", "--password-stdin")
    run(settings, "create", "--role", "staff", "--username", "desk", "--password-stdin")
    assert lookup(settings, "dr.kim").display_name == "Clinician"
    assert lookup(settings, "desk").display_name == "Staff"


@pytest.mark.parametrize("shown", ["", "   ", "Dr.\u200bLee", "x" * 65, "DR.KIM"])
def test_bad_display_names_are_refused_and_change_nothing(settings: Settings, shown: str) -> None:
    run(settings, "create", "--role", "clinician", "--username", "dr.kim", "--password-stdin")
    with pytest.raises(BadRequest, match="display name"):
        run(settings, "set-display-name", "--username", "dr.kim", "--display-name", shown)
    with pytest.raises(BadRequest, match="display name"):
        run(settings, "create", "--role", "clinician", "--username", "dr.new", "--password-stdin",
            "--display-name", shown if shown != "DR.KIM" else "dr.new")  # fmt: skip
    assert lookup(settings, "dr.kim").display_name == "Clinician"
    with pytest.raises(NotFound):
        lookup(settings, "dr.new")
