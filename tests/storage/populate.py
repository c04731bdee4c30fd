"""Bulk test data: many clients, each under its own data key, written in a few statements."""

from __future__ import annotations

import secrets

from sqlalchemy import insert, select

from vIOP.storage.crypto import FieldCipher, FieldRef, KeyRing, KeyScope, data_key_aad, utc_now
from vIOP.storage.keys import KeySource
from vIOP.storage.schema import clients, data_keys


async def add_clients(
    ring: KeyRing, count: int, *, prefix: str = "cl", source: KeySource | None = None
) -> None:
    """``count`` clients named "<prefix> name <i>", keys wrapped by ``source`` (default: the ring's)."""
    source = source or ring.source
    now = utc_now()
    key_rows, client_rows = [], []
    for i in range(count):
        key_id, client_id, key = f"dk_{prefix}{i:06d}", f"{prefix}_{i:06d}", secrets.token_bytes(32)
        kek, wrapped = await source.wrap(key, data_key_aad(key_id))
        key_rows.append(
            {
                "id": key_id,
                "scope": KeyScope.CLIENT.value,
                "kek_id": kek.kek_id,
                "kek_version": kek.version,
                "wrapped": wrapped,
                "created_at": now,
            }
        )
        name = FieldCipher(key_id, key).encrypt(
            FieldRef("clients", "display_name", client_id), f"{prefix} name {i}"
        )
        client_rows.append({"id": client_id, "data_key_id": key_id, "display_name": name, "created_at": now})
    async with ring.db.begin() as conn:
        await conn.execute(insert(data_keys), key_rows)
        await conn.execute(insert(clients), client_rows)


async def read_all_names(ring: KeyRing) -> dict[str, str]:
    async with ring.db.read() as conn:
        rows = (await conn.execute(select(clients.c.id, clients.c.data_key_id, clients.c.display_name))).all()
    await ring.preload(row.data_key_id for row in rows)
    return {
        row.id: await ring.decrypt_text(FieldRef("clients", "display_name", row.id), row.display_name)
        for row in rows
    }
