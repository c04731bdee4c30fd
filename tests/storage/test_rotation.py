from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from vIOP.errors import Conflict
from vIOP.storage.crypto import KeyRing
from vIOP.storage.keys import FileKeySource, KekRef, KekSet, StaticKeySource, UnknownKek
from vIOP.storage.rotation import kek_usage, retire_keks, rotate_keys
from vIOP.storage.schema import data_keys, key_rotations

from .populate import add_clients, read_all_names

V1, V2 = KekRef("local", 1), KekRef("local", 2)


def only(source: FileKeySource, kek: KekRef) -> StaticKeySource:
    """A source that has lost every other KEK version: what a retired (disabled) old KEK looks like."""
    keks = source._current()
    return StaticKeySource(KekSet(kek, {kek: keks.keys[kek]}), f"only {kek}")


async def usage(ring: KeyRing) -> dict[KekRef, int]:
    async with ring.db.read() as conn:
        return await kek_usage(conn)


async def test_rotate_10000_records_then_read_all_without_the_old_kek(
    ring: KeyRing, key_source: FileKeySource
) -> None:
    await add_clients(ring, 10_000)
    async with ring.db.read() as conn:
        wrapped_before = dict((await conn.execute(select(data_keys.c.id, data_keys.c.wrapped))).all())
    assert await usage(ring) == {V1: 10_003}  # and the three system keys

    report = await rotate_keys(ring, batch_size=1000)

    assert report.finished
    assert report.target == V2
    assert report.rewrapped == 10_003
    assert report.remaining == 0
    assert await usage(ring) == {V2: 10_003}
    async with ring.db.read() as conn:
        wrapped_after = dict((await conn.execute(select(data_keys.c.id, data_keys.c.wrapped))).all())
    assert all(wrapped_after[k] != wrapped_before[k] for k in wrapped_before)

    old_kek_disabled = await KeyRing.open(ring.db, only(key_source, V2))
    names = await read_all_names(old_kek_disabled)
    assert len(names) == 10_000
    assert all(names[f"cl_{i:06d}"] == f"cl name {i}" for i in range(10_000))
    with pytest.raises(UnknownKek):
        await KeyRing.open(ring.db, only(key_source, V1))


async def test_interrupted_rotation_resumes_and_every_record_reads_throughout(
    ring: KeyRing, key_source: FileKeySource
) -> None:
    await add_clients(ring, 997)
    first = await rotate_keys(ring, batch_size=100, max_batches=3)
    assert not first.finished
    assert first.rewrapped == 300
    assert await usage(ring) == {V1: 700, V2: 300}
    assert len(await read_all_names(await KeyRing.open(ring.db, key_source))) == 997

    with pytest.raises(Conflict, match="unfinished"):
        await retire_keks(ring)
    # A process that has not seen the new KEK yet adds a key that sorts before the cursor.
    await add_clients(ring, 1, prefix="a", source=only(key_source, V1))

    second = await rotate_keys(ring, batch_size=100)
    assert second.resumed
    assert second.finished
    assert second.target == V2  # resuming does not add yet another KEK
    assert second.rewrapped == 701
    assert await usage(ring) == {V2: 1001}
    async with ring.db.read() as conn:
        runs = (await conn.execute(select(key_rotations.c.rewrapped, key_rotations.c.finished_at))).all()
    assert len(runs) == 1
    assert runs[0].rewrapped == 1001
    assert runs[0].finished_at is not None
    assert len(await read_all_names(await KeyRing.open(ring.db, only(key_source, V2)))) == 998


async def test_retire_removes_unused_old_keks_only(
    ring: KeyRing, key_source: FileKeySource, key_file: Path
) -> None:
    await add_clients(ring, 10)
    await rotate_keys(ring)
    retired, in_use = await retire_keks(ring)
    assert retired == [V1]
    assert in_use == {}
    assert await FileKeySource(key_file).versions() == {V2}
    assert len(await read_all_names(await KeyRing.open(ring.db, FileKeySource(key_file)))) == 10


async def test_rotation_without_a_new_kek_moves_keys_to_an_externally_set_primary(ring: KeyRing) -> None:
    await add_clients(ring, 5)
    keks = KekSet.generate("kms").with_new_primary()
    # The operator made a new primary in their secret store and kept the old one readable.
    merged = KekSet(keks.primary, {**ring.source._current().keys, **keks.keys})  # type: ignore[attr-defined]
    ring = await KeyRing.open(ring.db, StaticKeySource(merged, "VIOP_KEYS"))
    report = await rotate_keys(ring, new_kek=False)
    assert report.finished
    assert report.target == KekRef("kms", 2)
    assert await usage(ring) == {KekRef("kms", 2): 8}
