"""One process appending to the audit chain: ``python -m tests.storage.audit_appender DATA_DIR COUNT ACTOR``.
It opens the database (already migrated, key file already made), prints ``ready``, waits for a line on
stdin, then appends COUNT rows by ACTOR, one transaction each (a checkpoint every 7 rows) and prints ``done``. Two of
these at once are two `serve` workers on one SQLite file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from vIOP.settings import load_settings
from vIOP.storage.audit import AuditEvent, AuditLog
from vIOP.storage.bootstrap import open_storage

CHECKPOINT_EVERY = 7


async def main(data_dir: Path, count: int, actor: str) -> None:
    settings = load_settings(
        environ={
            "VIOP_DATA_DIR": str(data_dir),
            "VIOP_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'viop.db'}",
        }
    )
    storage = await open_storage(settings)
    try:
        audit = AuditLog(
            storage.keys, checkpoint_path=data_dir / "checkpoints.log", checkpoint_every=CHECKPOINT_EVERY
        )
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        for _ in range(count):
            await audit.append(actor, "staff", AuditEvent.PRESENCE_VIEWED)
        print("done", flush=True)
    finally:
        await storage.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
