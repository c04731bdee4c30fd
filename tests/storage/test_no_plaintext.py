"""A canary name written through every encrypted column and into Redis never appears in the raw bytes of
the SQLite files, a Redis dump, or the logs (SQL statements and their parameters included)."""

from __future__ import annotations

import logging
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import insert, select

from vIOP.storage.audit import AuditEvent, AuditLog
from vIOP.storage.crypto import FieldRef, KeyRing
from vIOP.storage.database import Database, default_sqlite_url, upgrade
from vIOP.storage.keys import FileKeySource
from vIOP.storage.schema import attendance_intervals, clients, invites, room_sessions, rooms, users

CANARY = "Zoë Canary-7Q"


def canary_forms() -> list[bytes]:
    folded = unicodedata.normalize("NFKC", CANARY).casefold()
    forms = []
    for text in {CANARY, folded, CANARY.upper()}:
        for codec in ("utf-8", "utf-16-le", "utf-16-be", "latin-1"):
            forms.append(text.encode(codec))
    forms.append(b"Canary-7Q")  # the ASCII tail alone, in case a codec splits the name
    return forms


def assert_no_canary(blob: bytes, where: str) -> None:
    for form in canary_forms():
        assert form not in blob, f"canary {form!r} found in {where}"


async def write_everything(ring: KeyRing, audit: AuditLog) -> None:
    now = datetime.now(UTC)
    sys_fields = ring.system_fields
    async with ring.db.begin() as conn:
        await conn.execute(
            insert(users).values(
                id="us_1",
                role="clinician",
                username_index=ring.blind_index("username", CANARY),
                username=sys_fields.encrypt(FieldRef("users", "username", "us_1"), CANARY),
                email_index=ring.blind_index("email", f"{CANARY}@example.org"),
                email=sys_fields.encrypt(FieldRef("users", "email", "us_1"), f"{CANARY}@example.org"),
                password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
                mfa_enabled=False,
                disabled=False,
                failed_logins=0,
                created_at=now,
                updated_at=now,
            )
        )
        key_id = await ring.create_data_key(conn)
        client = await ring.cipher(key_id)
        await conn.execute(
            insert(clients).values(
                id="cl_1",
                data_key_id=key_id,
                created_at=now,
                display_name=client.encrypt(FieldRef("clients", "display_name", "cl_1"), CANARY),
            )
        )
        await conn.execute(
            insert(rooms).values(
                id="rm_1",
                kind="group",
                capacity=15,
                host_user_id="us_1",
                state="open",
                created_at=now,
                title=sys_fields.encrypt(FieldRef("rooms", "title", "rm_1"), f"{CANARY}'s group"),
            )
        )
        await conn.execute(
            insert(invites).values(
                id="iv_1",
                token_hash=b"\x01" * 32,
                room_id="rm_1",
                client_id="cl_1",
                created_by="us_1",
                created_at=now,
                expires_at=now + timedelta(days=1),
                uses=0,
                label=client.encrypt(FieldRef("invites", "label", "iv_1"), f"for {CANARY}"),
            )
        )
        await conn.execute(insert(room_sessions).values(id="ss_1", room_id="rm_1", started_at=now))
        await conn.execute(
            insert(attendance_intervals).values(
                id="ai_1",
                session_id="ss_1",
                room_id="rm_1",
                participant_id="pt_1",
                client_id="cl_1",
                joined_at=now,
            )
        )
    await audit.append(
        "us_1", "clinician", AuditEvent.ADMIT, "client", "cl_1", ip="198.51.100.4", user_agent=CANARY
    )
    await audit.checkpoint()


async def test_canary_is_nowhere_in_sqlite_redis_or_logs(
    data_dir: Path, tmp_path: Path, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # statements and parameters; reset after
    url = default_sqlite_url(data_dir)
    await upgrade(url)
    db = await Database.open(url)
    ring = await KeyRing.open(db, FileKeySource(tmp_path / "keys.json", create=True))
    audit = AuditLog(ring, checkpoint_path=data_dir / "audit-checkpoints.jsonl")
    await write_everything(ring, audit)

    sealer = ring.redis_sealer()
    await redis_client.hset("viop:wr:rm_1", "pt_1", sealer.seal(CANARY.encode(), b"viop:wr:rm_1/pt_1"))
    await redis_client.set(
        "viop:presence:pt_1", sealer.seal(CANARY.encode("utf-16-le"), b"viop:presence:pt_1")
    )

    # Everything reads back, so the canary really was written.
    async with db.read() as conn:
        blob = (await conn.execute(select(clients.c.display_name))).scalar_one()
        user = (await conn.execute(select(users.c.username_index))).scalar_one()
    assert await ring.decrypt_text(FieldRef("clients", "display_name", "cl_1"), blob) == CANARY
    assert user == ring.blind_index("username", CANARY.lower())
    assert (
        sealer.unseal(await redis_client.hget("viop:wr:rm_1", "pt_1"), b"viop:wr:rm_1/pt_1")
        == CANARY.encode()
    )
    await db.close()

    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "viop.db" for p in files)
    for path in files:
        assert_no_canary(path.read_bytes(), str(path))

    await redis_client.save()
    config = await redis_client.config_get("dir")
    dbfile = (await redis_client.config_get("dbfilename"))["dbfilename"]
    dump = (Path(config["dir"]) / dbfile).read_bytes()
    assert b"viop:wr:rm_1" in dump  # the dump holds our keys...
    assert_no_canary(dump, "the Redis dump")  # ...but not the name

    assert any("INSERT INTO clients" in r.getMessage() for r in caplog.records)  # SQL logging was on
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records).encode(
        "utf-8", "backslashreplace"
    )
    assert_no_canary(logged, "the logs")
