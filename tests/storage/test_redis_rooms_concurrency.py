"""Races against a real Redis, between two "processes" (two clients, two services, one Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.rooms.support import HOST, HOST2, Backend, knock, new_sealer, redis_backend
from vIOP.ids import ClientId, ParticipantId, RoomId, new_room_id
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.errors import IllegalTransition, RoomAlreadyEnded, RoomFull
from vIOP.rooms.events import Admitted, Event, LeaveReason, Left
from vIOP.rooms.participant import ParticipantState, Role
from vIOP.rooms.room import RoomKind, RoomState
from vIOP.storage.redis_bus import EventStream
from vIOP.storage.redis_rooms import RedisKeys, RedisRoomStore


@pytest.fixture
async def two_processes(
    redis_client: aioredis.Redis, redis_url: str
) -> AsyncIterator[tuple[Backend, Backend]]:
    sealer, clock = new_sealer(), ManualClock()
    a, b = aioredis.from_url(redis_url), aioredis.from_url(redis_url)
    yield redis_backend(a, sealer, clock), redis_backend(b, sealer, clock)
    await a.aclose()
    await b.aclose()


async def two_host_room(a: Backend, b: Backend, capacity: int) -> tuple[RoomId, ParticipantId, ParticipantId]:
    room_id = new_room_id()
    await a.service.open_room(
        room_id, kind=RoomKind.GROUP, host_ids=frozenset({HOST, HOST2}), capacity=capacity
    )
    hosts = []
    for proc, user in ((a, HOST), (b, HOST2)):
        t = await proc.service.host_enter(room_id, user_id=user, display_name="Dr")
        assert t.participant is not None
        await proc.service.join(room_id, t.participant.id)
        hosts.append(t.participant.id)
    return room_id, hosts[0], hosts[1]


async def stream_events(client: aioredis.Redis, stream: EventStream) -> list[Event]:
    return [stream.decode(fields) for _id, fields in await client.xrange(stream.key)]


async def test_fifty_concurrent_admits_for_five_seats(two_processes: tuple[Backend, Backend]) -> None:
    a, b = two_processes
    room_id, host_a, host_b = await two_host_room(a, b, capacity=5)
    knocks = await asyncio.gather(
        *(
            (a if n % 2 else b).service.knock(room_id, subject=ClientId(f"cl_{n}"), display_name=f"C{n}")
            for n in range(50)
        )
    )
    clients = [t.participant.id for t in knocks if t.participant is not None]
    assert sorted(t.participant.knock_seq for t in knocks if t.participant) == list(range(1, 51))

    async def admit(n: int, pid: ParticipantId) -> str:
        proc, host = (a, host_a) if n % 2 else (b, host_b)
        try:
            await proc.service.admit(room_id, by=host, participant_id=pid)
        except RoomFull:
            return "full"
        return "admitted"

    outcomes = await asyncio.gather(*(admit(n, pid) for n, pid in enumerate(clients)))
    assert outcomes.count("admitted") == 5 and outcomes.count("full") == 45
    lost = sum(p.rooms.lost_races for p in (a, b) if isinstance(p.rooms, RedisRoomStore))
    print(f"50 knocks + 50 admits: {lost} transactions re-run after a lost race")
    room = await a.rooms.get(room_id)
    assert room.seats_taken == 5
    assert len(room.in_state(ParticipantState.WAITING)) == 45
    store = a.rooms
    assert isinstance(store, RedisRoomStore)
    admitted = [
        e
        for e in await stream_events(store.client, store.stream)
        if isinstance(e, Admitted) and room.participant(e.participant_id).role is Role.CLIENT
    ]
    assert len(admitted) == 5 and len({e.participant_id for e in admitted}) == 5


async def test_two_hosts_admitting_the_same_client_admit_once(two_processes: tuple[Backend, Backend]) -> None:
    a, b = two_processes
    room_id, host_a, host_b = await two_host_room(a, b, capacity=15)
    for n in range(15):
        pid = await knock(a.service, room_id, n)
        results = await asyncio.gather(
            a.service.admit(room_id, by=host_a, participant_id=pid),
            b.service.admit(room_id, by=host_b, participant_id=pid),
            return_exceptions=True,
        )
        wins = [r for r in results if not isinstance(r, BaseException)]
        losses = [r for r in results if isinstance(r, BaseException)]
        assert len(wins) == 1, results
        assert len(losses) == 1 and isinstance(losses[0], IllegalTransition)
    store = a.rooms
    assert isinstance(store, RedisRoomStore)
    events = await stream_events(store.client, store.stream)
    room = await a.rooms.get(room_id)
    client_admits = [
        e
        for e in events
        if isinstance(e, Admitted) and room.participant(e.participant_id).role is Role.CLIENT
    ]
    assert len(client_admits) == 15 and len({e.participant_id for e in client_admits}) == 15
    assert room.seats_taken == 15


async def test_knocks_racing_an_end_leave_nobody_behind(
    two_processes: tuple[Backend, Backend], redis_client: aioredis.Redis
) -> None:
    a, b = two_processes
    room_id, host_a, _ = await two_host_room(a, b, capacity=15)

    async def try_knock(n: int) -> ParticipantId | None:
        try:
            t = await (a if n % 2 else b).service.knock(
                room_id, subject=ClientId(f"cl_{n}"), display_name="K"
            )
        except RoomAlreadyEnded:
            return None
        assert t.participant is not None
        return t.participant.id

    knocks = [try_knock(n) for n in range(30)]
    results = await asyncio.gather(*knocks[:15], a.service.end(room_id, by=host_a), *knocks[15:])
    entered = [r for r in results if isinstance(r, str)]
    print(f"knocks in before the end: {len(entered)} of 30")
    room = await b.rooms.get(room_id)
    assert room.state is RoomState.ENDED
    assert {p.id for p in room.participants if p.role is Role.CLIENT} == set(entered)
    assert all(p.state is ParticipantState.LEFT for p in room.participants)
    store = a.rooms
    assert isinstance(store, RedisRoomStore)
    lefts = {e.participant_id for e in await stream_events(store.client, store.stream) if isinstance(e, Left)}
    assert set(entered) <= lefts
    assert all(
        e.reason is LeaveReason.ENDED
        for e in await stream_events(store.client, store.stream)
        if isinstance(e, Left)
    )
    # nothing of the room is left in the liveness indexes
    keys = RedisKeys()
    assert await redis_client.exists(keys.active(room_id)) == 0
    assert await redis_client.zcard(keys.presence) == 0
    assert not await redis_client.sismember(keys.rooms, room_id)
    assert await a.service.sweep() == []
