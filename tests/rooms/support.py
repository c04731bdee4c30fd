"""Room test support: the same RoomService over the in-memory twins or over the real Redis stores."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from vIOP.ids import ClientId, ParticipantId, RoomId, UserId, new_room_id
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.holdings import Holdings
from vIOP.rooms.memory import MemoryAttendanceStore, MemoryPresenceStore, MemoryRoomStore
from vIOP.rooms.ports import AttendanceStore, EventBus, PresenceStore, RoomStore
from vIOP.rooms.room import RoomKind
from vIOP.rooms.service import RoomPolicy, RoomService
from vIOP.storage.redis_bus import RedisEventBus
from vIOP.storage.redis_rooms import RedisPresenceStore, RedisRoomStore
from vIOP.storage.sealing import AesGcmSealer

HOST = UserId("us_host_one")
HOST2 = UserId("us_host_two")


@dataclass
class Backend:
    """One "process": its stores, bus and service. Two Backends on one Redis are two processes."""

    name: str
    rooms: RoomStore
    presence: PresenceStore
    bus: EventBus
    clock: ManualClock
    attendance: AttendanceStore = field(default_factory=MemoryAttendanceStore)
    service: RoomService = field(init=False)

    def __post_init__(self) -> None:
        self.service = RoomService(
            self.rooms,
            self.presence,
            clock=self.clock,
            attendance=self.attendance,
            holdings=Holdings(),
            policy=RoomPolicy(),
        )


def memory_backend(clock: ManualClock) -> Backend:
    store = MemoryRoomStore()
    return Backend("memory", store, MemoryPresenceStore(store), store.bus, clock)


def redis_backend(
    client: aioredis.Redis,
    sealer: AesGcmSealer,
    clock: ManualClock,
    attendance: AttendanceStore | None = None,
) -> Backend:
    store = RedisRoomStore(client, sealer)
    backend = Backend("redis", store, RedisPresenceStore(client), RedisEventBus(client, store.stream), clock)
    if attendance is not None:
        backend.attendance = attendance
        backend.__post_init__()
    return backend


def new_sealer() -> AesGcmSealer:
    return AesGcmSealer(os.urandom(32))


@dataclass
class LiveGroup:
    """A room opened by a host who has entered it (so it is live)."""

    room_id: RoomId
    host: ParticipantId


async def live_room(
    service: RoomService, *, kind: RoomKind = RoomKind.GROUP, capacity: int | None = None, hosts=(HOST,)
) -> LiveGroup:
    room_id = new_room_id()
    await service.open_room(room_id, kind=kind, host_ids=frozenset(hosts), capacity=capacity)
    entered = await service.host_enter(room_id, user_id=hosts[0], display_name="Dr. Host")
    assert entered.participant is not None
    await service.join(room_id, entered.participant.id)
    return LiveGroup(room_id, entered.participant.id)


async def knock(service: RoomService, room_id: RoomId, n: int, name: str = "Client") -> ParticipantId:
    t = await service.knock(room_id, subject=ClientId(f"cl_{n}"), display_name=f"{name} {n}")
    assert t.participant is not None
    return t.participant.id


async def enter(backend: Backend, room_id: RoomId, host: ParticipantId, client: str) -> ParticipantId:
    """A client knocks, a host admits them, they join: the usual way into the room."""
    s = backend.service
    t = await s.knock(room_id, subject=ClientId(client), display_name="Client")
    assert t.participant is not None
    await s.admit(room_id, by=host, participant_id=t.participant.id)
    await s.join(room_id, t.participant.id)
    return t.participant.id
