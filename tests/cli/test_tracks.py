"""``tracks`` as an operator runs it: a checked schedule or one clear line and exit 1 with nothing stored."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.auth.support import CHEAP_ARGON2
from vIOP.auth.passwords import PasswordHasher
from vIOP.auth.permissions import Role
from vIOP.cli.storage import add_parsers as add_storage_parsers
from vIOP.cli.storage import run as run_storage
from vIOP.cli.tracks import add_parsers, run
from vIOP.cli.users import open_account_admin
from vIOP.settings import Settings
from vIOP.storage.bootstrap import open_storage
from vIOP.storage.schema import enrollments, tracks


def cli(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["tracks", *argv]), settings)


@pytest.fixture
def settings(data_dir: Path, key_file: Path) -> Settings:
    parser = argparse.ArgumentParser()
    add_storage_parsers(parser.add_subparsers(dest="command", required=True))
    assert run_storage(parser.parse_args(["keys", "init", str(key_file)]), Settings(data_dir=data_dir)) == 0
    settings = Settings(data_dir=data_dir, key_file=key_file)

    async def clinician() -> None:
        async with open_account_admin(settings, PasswordHasher(CHEAP_ARGON2)) as admin:
            await admin.create(Role.CLINICIAN, "dr.evening", "correct horse battery staple", with_totp=False)

    asyncio.run(clinician())
    return settings


def count(settings: Settings, table: object) -> int:
    async def read() -> int:
        storage = await open_storage(settings)
        try:
            async with storage.db.read() as conn:
                return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]
        finally:
            await storage.close()

    return asyncio.run(read())


EVENING = (
    "create", "--title", "Evening IOP", "--time-zone", "America/New_York", "--first-start", "2030-03-04T18:00",
    "--rrule", "FREQ=WEEKLY;BYDAY=MO,WE,TH", "--duration", "180", "--host", "dr.evening",
)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--time-zone", "Mars/Base"), "IANA time zone"),
        (("--rrule", "FREQ=SOMETIMES"), "RRULE"),
        (("--first-start", "2030-03-10T02:30", "--rrule", "FREQ=DAILY"), "does not exist"),
        (("--host", "nobody.here"), "not an active clinician"),
    ],
)
def test_a_bad_track_is_one_line_and_exit_1_with_nothing_stored(
    settings: Settings, capsys: pytest.CaptureFixture[str], change: tuple[str, ...], message: str
) -> None:
    args = list(EVENING)
    for name, value in zip(change[::2], change[1::2], strict=True):
        args[args.index(name) + 1] = value
    assert cli(settings, *args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert count(settings, tracks) == 0


def test_create_show_enroll_unenroll_end(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(settings, *EVENING) == 0
    track_id = capsys.readouterr().out.split()[0]
    assert track_id.startswith("tk_")
    assert cli(settings, "list") == 0
    assert "Evening IOP" in capsys.readouterr().out
    assert cli(settings, "enroll", track_id, "--display-name", "Riley") == 0
    out = capsys.readouterr().out.splitlines()
    enrollment_id = out[0].split()[0]
    assert "/join#enroll=venr_" in out[1]
    assert count(settings, enrollments) == 1
    assert cli(settings, "unenroll", enrollment_id) == 0
    assert cli(settings, "end", track_id) == 0
    capsys.readouterr()
    assert cli(settings, "list") == 0
    assert capsys.readouterr().out == ""
    assert cli(settings, "show", "tk_unknown") == 1
    assert "no such track" in capsys.readouterr().err
