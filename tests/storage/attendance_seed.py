"""People and rooms for attendance tests: the ledger's foreign keys need real rows (ids only, dummy blobs)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert

from tests.rooms.support import HOST
from vIOP.ids import RoomId
from vIOP.storage.database import Database
from vIOP.storage.schema import clients, data_keys, rooms, users

CLIENTS = [f"cl_{n}" for n in range(1, 4)]


async def seed_people(db: Database) -> None:
    now = datetime.now(UTC)
    async with db.begin() as conn:
        await conn.execute(
            insert(users).values(
                id=HOST,
                role="clinician",
                username_index=b"ix-host",
                username=b"sealed",
                password_hash="x",
                created_at=now,
                updated_at=now,
            )
        )
        for c in CLIENTS:
            await conn.execute(insert(data_keys).values(id=f"dk_{c}", scope="client", created_at=now))
            await conn.execute(
                insert(clients).values(id=c, data_key_id=f"dk_{c}", display_name=b"sealed", created_at=now)
            )


async def seed_room(db: Database, room_id: RoomId) -> None:
    async with db.begin() as conn:
        await conn.execute(
            insert(rooms).values(
                id=room_id,
                kind="group",
                title=b"sealed",
                capacity=15,
                host_user_id=HOST,
                state="open",
                created_at=datetime.now(UTC),
            )
        )
