"""The room-view use cases: a room's durable record (SQL ``room_directory``) merged with its live state
(Redis ``services.rooms``), and ending a room in one place.

Reads never write: a room the live store reports ended reads as ended whatever its record says. The record
learns of the end from :func:`end_room` (a host's ``end``) or, for rooms ended elsewhere (another process,
the sweeper after the grace), from :func:`directory_listener` on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.errors import RoomNotFound
from vIOP.rooms.events import Event, Resync, RoomEnded
from vIOP.rooms.room import Room, RoomState, Transition
from vIOP.session.live import EventListener
from vIOP.session.services import Services
from vIOP.storage.rooms_sql import RoomRecord

log = logging.getLogger(__name__)

ENDED: Final = RoomState.ENDED.value


async def end_room(services: Services, room_id: RoomId, *, by: ParticipantId | None) -> Transition:
    """End the live session and record the end in the directory (so listings stop showing it)."""
    t = await services.rooms.end(room_id, by=by)
    await services.room_directory.set_state(room_id, ENDED, ended_at=t.room.ended_at)
    return t


def directory_listener(services: Services) -> EventListener:
    """Record every room end seen on the bus in the directory (idempotent): rooms ended by another process
    or by the sweeper reach SQL without a read having to write."""

    async def record_end(item: Event | Resync) -> None:
        if isinstance(item, RoomEnded):
            await services.room_directory.set_state(item.room_id, ENDED, ended_at=item.at)

    return record_end


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
    """The listing: each record whose live session has not ended, with its live state (one Redis read for every open room)."""
    open_now = {room.id: room for room in await services.rooms.rooms.open_rooms()}
    listed = []
    for record in records:
        live = open_now.get(record.id)
        if live is None:
            live = await live_room(services, record)
        if live is None or live.state is not RoomState.ENDED:
            listed.append((record, live))
    return listed
