"""The durable room record in SQL (the port: :class:`vIOP.auth.room_records.RoomRecords`): kind, encrypted
title, capacity, host, state. Live state is in Redis (the room store); this table is what outlives a session
and what permission checks read."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from vIOP.auth.permissions import RoomScope
from vIOP.auth.room_records import RoomRecord, RoomRecords
from vIOP.errors import NotFound
from vIOP.ids import RoomId, UserId
from vIOP.rooms.errors import AlreadyAHost
from vIOP.storage.crypto import FieldRef, KeyRing
from vIOP.storage.database import Database
from vIOP.storage.schema import room_cohosts, rooms

_ROOM_ID = re.compile(r"^rm_[A-Za-z0-9_-]{1,64}$")
LIST_LIMIT = 500  # a listing is bounded: a clinic has tens of rooms, not thousands open at once


def _title_ref(room_id: str) -> FieldRef:
    return FieldRef("rooms", "title", room_id)


__all__ = ["LIST_LIMIT", "RoomRecord", "SqlRoomDirectory"]


class SqlRoomDirectory:
    """Room records on SQL; titles under the system field key (a group's name can disclose treatment)."""

    __slots__ = ("_db", "_ring")

    def __init__(self, db: Database, ring: KeyRing) -> None:
        self._db = db
        self._ring = ring

    async def add(self, record: RoomRecord) -> None:
        sealed = self._ring.system_fields.encrypt(_title_ref(record.id), record.title)
        async with self._db.begin() as conn:
            await conn.execute(
                insert(rooms).values(
                    id=record.id,
                    kind=record.kind,
                    title=sealed,
                    capacity=record.capacity,
                    host_user_id=record.host_user_id,
                    state=record.state,
                    created_at=record.created_at,
                    ended_at=record.ended_at,
                )
            )

    async def get(self, room_id: str) -> RoomRecord:
        """NotFound for an unknown or malformed id (a malformed id is just another unknown one)."""
        if not _ROOM_ID.match(room_id):
            raise NotFound("no such room")
        async with self._db.read() as conn:
            row = (await conn.execute(select(rooms).where(rooms.c.id == room_id))).first()
            if row is None:
                raise NotFound("no such room")
            cohosts = await self._cohosts(conn, [room_id])
        return self._record(row, cohosts.get(room_id, frozenset()))

    async def hosted_by(self, user_id: UserId, *, include_ended: bool = False) -> list[RoomRecord]:
        cohosted = select(room_cohosts.c.room_id).where(room_cohosts.c.user_id == user_id)
        return await self._listed(
            or_(rooms.c.host_user_id == user_id, rooms.c.id.in_(cohosted)), include_ended=include_ended
        )

    async def add_cohost(self, room_id: RoomId, user_id: UserId, *, by: UserId | None, at: float) -> None:
        record = await self.get(room_id)
        if user_id in record.host_ids:
            raise AlreadyAHost("that clinician already hosts this room")
        try:
            async with self._db.begin() as conn:
                await conn.execute(
                    insert(room_cohosts).values(
                        room_id=room_id,
                        user_id=user_id,
                        added_by=by,
                        added_at=datetime.fromtimestamp(at, UTC),
                    )
                )
        except IntegrityError:  # added by someone else meanwhile
            raise AlreadyAHost("that clinician already hosts this room") from None

    async def remove_cohost(self, room_id: RoomId, user_id: UserId) -> bool:
        async with self._db.begin() as conn:
            gone = await conn.execute(
                delete(room_cohosts).where(
                    room_cohosts.c.room_id == room_id, room_cohosts.c.user_id == user_id
                )
            )
        return bool(gone.rowcount)

    async def all_rooms(self, *, include_ended: bool = False) -> list[RoomRecord]:
        """Every room (admin and staff listings), newest first."""
        return await self._listed(None, include_ended=include_ended)

    async def _listed(self, condition: Any, *, include_ended: bool) -> list[RoomRecord]:
        query = select(rooms).order_by(rooms.c.created_at.desc(), rooms.c.id)
        if condition is not None:
            query = query.where(condition)
        if not include_ended:
            query = query.where(rooms.c.state != "ended")
        async with self._db.read() as conn:
            rows = (await conn.execute(query.limit(LIST_LIMIT))).all()
            cohosts = await self._cohosts(conn, [row._mapping["id"] for row in rows])
        return [self._record(row, cohosts.get(row._mapping["id"], frozenset())) for row in rows]

    @staticmethod
    async def _cohosts(conn: Any, room_ids: list[str]) -> dict[str, frozenset[UserId]]:
        if not room_ids:
            return {}
        found: dict[str, set[UserId]] = {}
        query = select(room_cohosts.c.room_id, room_cohosts.c.user_id).where(
            room_cohosts.c.room_id.in_(room_ids)
        )
        for room_id, user_id in await conn.execute(query):
            found.setdefault(room_id, set()).add(UserId(user_id))
        return {room_id: frozenset(users) for room_id, users in found.items()}

    async def set_state(self, room_id: RoomId, state: str, *, ended_at: float | None = None) -> None:
        values: dict[str, object] = {"state": state}
        if ended_at is not None:
            values["ended_at"] = datetime.fromtimestamp(ended_at, UTC)
        async with self._db.begin() as conn:
            await conn.execute(update(rooms).where(rooms.c.id == room_id).values(**values))

    async def unended_ids(self) -> list[RoomId]:
        async with self._db.read() as conn:
            rows = await conn.execute(select(rooms.c.id).where(rooms.c.state != "ended"))
            return [RoomId(room_id) for (room_id,) in rows]

    async def room_scope(self, room_id: RoomId) -> RoomScope:
        return (await self.get(room_id)).scope

    def _record(self, row: object, cohost_ids: frozenset[UserId]) -> RoomRecord:
        r = row._mapping  # type: ignore[attr-defined]
        return RoomRecord(
            id=RoomId(r["id"]),
            kind=r["kind"],
            title=self._ring.system_fields.decrypt_text(_title_ref(r["id"]), r["title"]),
            capacity=r["capacity"],
            host_user_id=UserId(r["host_user_id"]),
            state=r["state"],
            created_at=r["created_at"],
            ended_at=r["ended_at"],
            cohost_ids=cohost_ids,
        )


def _implements_the_port(directory: SqlRoomDirectory) -> RoomRecords:
    return directory  # mypy checks here that SqlRoomDirectory meets RoomRecords
