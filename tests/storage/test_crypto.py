from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, select

from vIOP.errors import NotFound
from vIOP.storage.crypto import (
    SYSTEM_KEYS,
    FieldRef,
    KeyDestroyed,
    KeyRing,
    UnknownDataKey,
    shred_client,
    utc_now,
)
from vIOP.storage.database import Database, default_sqlite_url, upgrade
from vIOP.storage.keys import FileKeySource, KekSet, KeySourceError, StaticKeySource, UnknownKek
from vIOP.storage.schema import clients, data_keys
from vIOP.storage.sealing import DecryptionError


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def add_client(ring: KeyRing, client_id: str, name: str) -> str:
    async with ring.db.begin() as conn:
        key_id = await ring.create_data_key(conn)
        blob = await ring.encrypt_field(key_id, FieldRef("clients", "display_name", client_id), name)
        await conn.execute(
            insert(clients).values(id=client_id, data_key_id=key_id, display_name=blob, created_at=utc_now())
        )
    return key_id


async def read_name(ring: KeyRing, client_id: str) -> str:
    async with ring.db.read() as conn:
        blob = (
            await conn.execute(select(clients.c.display_name).where(clients.c.id == client_id))
        ).scalar_one()
    return await ring.decrypt_text(FieldRef("clients", "display_name", client_id), blob)


async def test_system_keys_are_created_once_and_survive_reopening(
    db: Database, key_source: FileKeySource
) -> None:
    first = await KeyRing.open(db, key_source)
    second = await KeyRing.open(db, key_source)
    async with db.read() as conn:
        ids = set((await conn.execute(select(data_keys.c.id))).scalars())
    assert ids == set(SYSTEM_KEYS)
    assert first.blind_index("username", "alice") == second.blind_index("username", "alice")
    sealed = first.redis_sealer().seal(b"Alice", b"wr:rm_1")
    assert second.redis_sealer().unseal(sealed, b"wr:rm_1") == b"Alice"
    where = FieldRef("rooms", "title", "rm_1")
    assert second.system_fields.decrypt_text(where, first.system_fields.encrypt(where, "Tuesday group")) == (
        "Tuesday group"
    )


async def test_client_fields_round_trip_and_are_bound_to_their_row(ring: KeyRing) -> None:
    await add_client(ring, "cl_a", "Zoë Canary")
    await add_client(ring, "cl_b", "Bob")
    assert await read_name(ring, "cl_a") == "Zoë Canary"
    async with ring.db.begin() as conn:
        blob_a = (
            await conn.execute(select(clients.c.display_name).where(clients.c.id == "cl_a"))
        ).scalar_one()
        await conn.execute(clients.update().where(clients.c.id == "cl_b").values(display_name=blob_a))
    with pytest.raises(DecryptionError):
        await read_name(ring, "cl_b")  # a blob moved to another row fails


async def test_unknown_data_key_is_a_typed_error(ring: KeyRing) -> None:
    from vIOP.storage.crypto import FieldCipher

    stranger = FieldCipher("dk_nobody", bytes(32))
    where = FieldRef("clients", "display_name", "cl_x")
    with pytest.raises(UnknownDataKey, match="dk_nobody"):
        await ring.decrypt_field(where, stranger.encrypt(where, "x"))
    with pytest.raises(DecryptionError):
        await ring.decrypt_field(where, b"\x01")


async def test_blind_index_is_deterministic_normalised_and_purpose_bound(
    ring: KeyRing, tmp_path: Path
) -> None:
    index = ring.blind_index("username", "Alice")
    assert len(index) == 32
    assert ring.blind_index("username", "alice") == index
    assert ring.blind_index("username", "ＡＬＩＣＥ") == index  # NFKC fullwidth
    assert ring.blind_index("username", "alicf") != index
    assert ring.blind_index("email", "alice") != index
    assert b"alice" not in index
    other_url = default_sqlite_url(tmp_path)  # another installation: its own database and keys
    await upgrade(other_url)
    other_db = await Database.open(other_url)
    other_install = await KeyRing.open(other_db, StaticKeySource(KekSet.generate(), "other"))
    assert other_install.blind_index("username", "alice") != index
    await other_db.close()


async def test_shred_makes_a_client_unreadable_everywhere(ring: KeyRing, key_source: FileKeySource) -> None:
    key_id = await add_client(ring, "cl_a", "Zoë Canary")
    await add_client(ring, "cl_b", "Bob")
    clock = ManualClock()
    other_process = await KeyRing.open(ring.db, key_source, cache_ttl=60, clock=clock)
    assert await read_name(other_process, "cl_a") == "Zoë Canary"  # now cached there

    result = await shred_client(ring, "cl_a")
    assert result.data_key_id == key_id
    assert not result.already_shredded
    with pytest.raises(KeyDestroyed):
        await read_name(ring, "cl_a")
    with pytest.raises(KeyDestroyed):
        await read_name(await KeyRing.open(ring.db, key_source), "cl_a")
    clock.now += 61  # the other process's cache expires
    with pytest.raises(KeyDestroyed):
        await read_name(other_process, "cl_a")
    assert await read_name(ring, "cl_b") == "Bob"
    async with ring.db.read() as conn:
        row = (await conn.execute(select(data_keys).where(data_keys.c.id == key_id))).one()
    assert row.wrapped is None
    assert row.destroyed_at is not None
    assert (await shred_client(ring, "cl_a")).already_shredded
    with pytest.raises(NotFound):
        await shred_client(ring, "cl_nobody")


async def test_a_wrong_or_missing_key_source_cannot_open_the_ring(ring: KeyRing, key_file: Path) -> None:
    with pytest.raises(UnknownKek):
        await KeyRing.open(ring.db, StaticKeySource(KekSet.generate("elsewhere"), "wrong keys"))
    with pytest.raises(DecryptionError):
        await KeyRing.open(ring.db, StaticKeySource(KekSet.generate(), "same label, other bytes"))
    key_file.unlink()
    with pytest.raises(KeySourceError, match="does not exist"):
        await KeyRing.open(ring.db, FileKeySource(key_file))
