"""Open the durable store from Settings: database (migrated when embedded), key ring and audit log."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect

from vIOP.errors import StartupError
from vIOP.settings import Settings
from vIOP.storage.audit import AuditLog
from vIOP.storage.crypto import KeyRing
from vIOP.storage.database import Database, upgrade
from vIOP.storage.keys import key_source_for

CHECKPOINT_FILE = "audit-checkpoints.jsonl"


def default_checkpoint_path(settings: Settings) -> Path:
    """Development default. Production should point this at other storage (append-only, off the host)."""
    return settings.data_dir / CHECKPOINT_FILE


@dataclass(frozen=True, slots=True)
class Storage:
    db: Database
    keys: KeyRing
    audit: AuditLog

    async def close(self) -> None:
        """Write a last audit checkpoint, then release the engine."""
        if self.audit.checkpoint_path is not None:
            await self.audit.checkpoint()
        await self.db.close()


async def open_storage(settings: Settings, *, checkpoint_path: Path | None = None) -> Storage:
    """The embedded SQLite default is migrated here; PostgreSQL must have had ``db upgrade`` run."""
    url = settings.effective_database_url
    embedded = settings.database_url is None
    if embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await upgrade(url)
    source = key_source_for(settings)  # before touching data: a missing key file stops start-up here
    db = await Database.open(url)
    try:
        async with db.read() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        if "data_keys" not in tables:
            raise StartupError("the database has no vIOP schema: run `python -m vIOP db upgrade` first")
        ring = await KeyRing.open(db, source)
    except BaseException:
        await db.close()
        raise
    audit = AuditLog(ring, checkpoint_path=checkpoint_path or default_checkpoint_path(settings))
    return Storage(db, ring, audit)
