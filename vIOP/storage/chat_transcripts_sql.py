"""Saved chat transcripts in SQL (issue 15): a host copies the room's chat record (sealed in Redis while the
room is live, ``vIOP.storage.redis_chat``) into the durable session record on purpose.

One row per room: ids, the time, the number of lines and the lines as one ciphertext under the system field
key, bound to the room id (a row's blob cannot be moved to another room). A later save of the same room
replaces the earlier one with everything kept since the room opened. The retention job deletes it with the
room's record (``vIOP.storage.retention``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from sqlalchemy import delete, insert, select

from vIOP.ids import RoomId, UserId
from vIOP.rooms.chat import ChatLine
from vIOP.storage.crypto import FieldRef, KeyRing
from vIOP.storage.database import Database
from vIOP.storage.schema import chat_transcripts


def _lines_ref(room_id: str) -> FieldRef:
    return FieldRef("chat_transcripts", "lines", room_id)


@dataclass(frozen=True, slots=True)
class SavedTranscript:
    room_id: RoomId
    saved_by: UserId
    saved_at: float
    lines: list[ChatLine]


class SqlChatTranscripts:
    __slots__ = ("_db", "_ring")

    def __init__(self, db: Database, ring: KeyRing) -> None:
        self._db = db
        self._ring = ring

    async def save(self, room_id: RoomId, lines: list[ChatLine], *, by: UserId, at: float) -> None:
        sealed = self._ring.system_fields.encrypt(_lines_ref(room_id), msgspec.json.encode(lines))
        async with self._db.begin() as conn:
            await conn.execute(delete(chat_transcripts).where(chat_transcripts.c.room_id == room_id))
            await conn.execute(
                insert(chat_transcripts).values(
                    room_id=room_id,
                    saved_by=by,
                    saved_at=datetime.fromtimestamp(at, UTC),
                    line_count=len(lines),
                    lines=sealed,
                )
            )

    async def get(self, room_id: RoomId) -> SavedTranscript | None:
        async with self._db.read() as conn:
            row = (
                (await conn.execute(select(chat_transcripts).where(chat_transcripts.c.room_id == room_id)))
                .mappings()
                .first()
            )
        if row is None:
            return None
        plain = self._ring.system_fields.decrypt(_lines_ref(room_id), row["lines"])
        return SavedTranscript(
            room_id=RoomId(row["room_id"]),
            saved_by=UserId(row["saved_by"]),
            saved_at=row["saved_at"].timestamp(),
            lines=msgspec.json.decode(plain, type=list[ChatLine]),
        )
