"""The room view: a room's durable record (SQL ``room_directory``) merged with its live state (Redis
``services.rooms``), for the HTTP routes.

Reads never write: a room the live store reports ended reads as ended whatever its record says. The record
learns of the end from the end use case (:mod:`vIOP.session.room_end`), which keeps trying until the
database takes it; a read must not be what repairs the directory (it would write on every GET while the
database is away, and nothing would repair a room nobody reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from vIOP.auth.room_records import RoomRecord
from vIOP.rooms.errors import RoomNotFound
from vIOP.rooms.room import Room, RoomState
from vIOP.session.services import Services

ENDED: Final = RoomState.ENDED.value


async def live_room(services: Services, record: RoomRecord) -> Room | None:
    """The live session of ``record`` from Redis, or None (never opened here, long ended, or lost)."""
    if record.state == ENDED:
        return None
    try:
        return await services.rooms.room(record.id)
    except RoomNotFound:
        return None


def is_ended(record: RoomRecord, live: Room | None) -> bool:
    """The live state wins; without one, the record's."""
    return (live.state.value if live is not None else record.state) == ENDED


async def open_rooms_of(
    services: Services, records: Sequence[RoomRecord]
) -> list[tuple[RoomRecord, Room | None]]:
    """The listing: each record whose live session has not ended, with its live state (the open rooms in
    one Redis read, then one read per record not among them)."""
    open_now = {room.id: room for room in await services.rooms.rooms.open_rooms()}
    listed = []
    for record in records:
        live = open_now.get(record.id)
        if live is None:
            live = await live_room(services, record)
        if live is None or live.state is not RoomState.ENDED:
            listed.append((record, live))
    return listed
