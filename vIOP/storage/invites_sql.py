"""The SQL :class:`~vIOP.auth.invites.InviteStore`: ``invites`` plus the ``clients`` row each invite names.

Only ``SHA-256(token)`` is stored. A new client gets its own data key (crypto-shreddable) and its display
name is encrypted under it with AAD = (clients, display_name, client id). Use counting is one conditional
``UPDATE``, atomic on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from vIOP.auth.invites import Invite
from vIOP.errors import NotFound
from vIOP.ids import ClientId, InviteId, RoomId, UserId
from vIOP.storage.crypto import FieldRef, KeyRing, KeyScope
from vIOP.storage.database import Database
from vIOP.storage.schema import clients, invite_devices, invites


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _display_name_ref(client_id: str) -> FieldRef:
    return FieldRef("clients", "display_name", client_id)


class SqlInviteStore:
    __slots__ = ("_db", "_ring")

    def __init__(self, db: Database, ring: KeyRing) -> None:
        self._db = db
        self._ring = ring

    async def add(self, invite: Invite, token_hash: bytes, display_name: str | None) -> None:
        created = _at(invite.created_at)
        async with self._db.begin() as conn:
            if display_name is not None:  # None: the client exists already (an enrollment's)
                key_id = await self._ring.create_data_key(conn, KeyScope.CLIENT)
                name = await self._ring.encrypt_field(
                    key_id, _display_name_ref(invite.client_id), display_name
                )
                await conn.execute(
                    insert(clients).values(
                        id=invite.client_id, data_key_id=key_id, display_name=name,
                        created_by=invite.created_by, created_at=created,
                    )
                )  # fmt: skip
            await conn.execute(
                insert(invites).values(
                    id=invite.id, token_hash=token_hash, room_id=invite.room_id, client_id=invite.client_id,
                    created_by=invite.created_by, label=None, created_at=created,
                    expires_at=_at(invite.expires_at), max_uses=invite.max_uses, uses=invite.uses,
                    revoked_at=None if invite.revoked_at is None else _at(invite.revoked_at),
                )
            )  # fmt: skip

    async def by_token_hash(self, token_hash: bytes) -> Invite | None:
        return await self._one(invites.c.token_hash == token_hash)

    async def by_device_hash(self, token_hash: bytes) -> Invite | None:
        return await self._one(invite_devices.c.token_hash == token_hash)

    async def exchange(self, invite_id: InviteId, device_hash: bytes, now: float) -> bool:
        # The primary key on invite_id makes the first exchange the only one, on SQLite and PostgreSQL.
        try:
            async with self._db.begin() as conn:
                await conn.execute(
                    insert(invite_devices).values(
                        invite_id=invite_id, token_hash=device_hash, exchanged_at=_at(now)
                    )
                )
        except IntegrityError:
            return False
        return True

    async def get(self, invite_id: InviteId) -> Invite | None:
        return await self._one(invites.c.id == invite_id)

    async def consume(self, invite_id: InviteId, now: float) -> bool:
        usable = (
            (invites.c.id == invite_id)
            & invites.c.revoked_at.is_(None)
            & (invites.c.expires_at > _at(now))
            & (invites.c.max_uses.is_(None) | (invites.c.uses < invites.c.max_uses))
        )
        async with self._db.begin() as conn:
            result = await conn.execute(update(invites).where(usable).values(uses=invites.c.uses + 1))
        return result.rowcount == 1

    async def revoke(self, invite_id: InviteId, now: float) -> None:
        async with self._db.begin() as conn:
            result = await conn.execute(
                update(invites)
                .where(invites.c.id == invite_id, invites.c.revoked_at.is_(None))
                .values(revoked_at=_at(now))
            )
            if result.rowcount == 0:
                found = await conn.execute(select(invites.c.id).where(invites.c.id == invite_id))
                if found.first() is None:
                    raise NotFound("no such invite")

    async def revoke_for_client(self, client_id: ClientId, now: float) -> list[RoomId]:
        usable = (invites.c.client_id == client_id) & invites.c.revoked_at.is_(None)
        async with self._db.begin() as conn:
            rooms = [RoomId(r) for (r,) in await conn.execute(select(invites.c.room_id).where(usable))]
            await conn.execute(update(invites).where(usable).values(revoked_at=_at(now)))
        return sorted(set(rooms))

    async def client_display_name(self, client_id: ClientId) -> str:
        async with self._db.read() as conn:
            blob = (
                await conn.execute(select(clients.c.display_name).where(clients.c.id == client_id))
            ).scalar_one_or_none()
        if blob is None:
            raise NotFound("no such client")
        return await self._ring.decrypt_text(_display_name_ref(client_id), blob)

    async def _one(self, condition: Any) -> Invite | None:
        joined = invites.outerjoin(invite_devices, invite_devices.c.invite_id == invites.c.id)
        query = select(invites, invite_devices.c.exchanged_at).select_from(joined).where(condition)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _invite(row)


def _invite(row: Row[Any]) -> Invite:
    return Invite(
        id=InviteId(row.id),
        room_id=RoomId(row.room_id),
        client_id=ClientId(row.client_id),
        created_by=UserId(row.created_by),
        created_at=row.created_at.timestamp(),
        expires_at=row.expires_at.timestamp(),
        max_uses=row.max_uses,
        uses=row.uses,
        revoked_at=None if row.revoked_at is None else row.revoked_at.timestamp(),
        exchanged_at=None if row.exchanged_at is None else row.exchanged_at.timestamp(),
    )
