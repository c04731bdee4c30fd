"""`serve --workers N` on the embedded SQLite: several processes append to one audit chain. Two real OS
processes (tests/storage/audit_appender.py) append at the same moment; the chain they leave verifies, with
every row and the checkpoints both wrote (SQLite's BEGIN IMMEDIATE serialises the appends across
processes, WAL lets reads go on meanwhile)."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

from sqlalchemy import select

from tests.storage.audit_appender import CHECKPOINT_EVERY
from vIOP.settings import load_settings
from vIOP.storage.audit import AuditLog
from vIOP.storage.bootstrap import open_storage
from vIOP.storage.schema import audit_log

ROWS_EACH = 150


async def test_two_processes_appending_at_once_leave_one_verifiable_chain(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    settings = load_settings(environ={"VIOP_DATA_DIR": str(data_dir)})
    await (await open_storage(settings)).close()  # migrate and make the key file once, as the supervisor does
    appenders = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.storage.audit_appender",
            str(data_dir),
            str(ROWS_EACH),
            actor,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=Path.cwd(),
        )
        for actor in ("us_1", "us_2")
    ]
    for appender in appenders:
        assert appender.stdout is not None
        assert await asyncio.wait_for(appender.stdout.readline(), 60) == b"ready\n"
    for appender in appenders:  # both start appending at the same moment
        assert appender.stdin is not None
        appender.stdin.write(b"go\n")
        await appender.stdin.drain()
    outputs = [await asyncio.wait_for(a.communicate(), 120) for a in appenders]
    assert [a.returncode for a in appenders] == [0, 0]
    assert [out for out, _ in outputs] == [b"done\n", b"done\n"]

    storage = await open_storage(settings)
    try:
        result = await AuditLog(storage.keys).verify(data_dir / "checkpoints.log")
        async with storage.db.read() as conn:
            actors = (
                (await conn.execute(select(audit_log.c.actor_id).order_by(audit_log.c.seq))).scalars().all()
            )
    finally:
        await storage.close()
    assert result.ok, result
    assert result.rows_checked == 2 * ROWS_EACH
    switches = sum(1 for a, b in itertools.pairwise(actors) if a != b)
    assert switches > 2, "the two processes never appended at the same time"  # they interleaved
    assert result.checkpoints_checked >= 2 * ROWS_EACH // CHECKPOINT_EVERY - 2  # both processes wrote them
