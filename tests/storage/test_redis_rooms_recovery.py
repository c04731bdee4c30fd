"""Redis SIGKILLed mid-session and restarted empty: each process puts back what it holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.rooms.support import HOST, Backend, knock, new_sealer, redis_backend
from vIOP.ids import ClientId, ParticipantId, RoomId, new_room_id
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.errors import RoomNotFound
from vIOP.rooms.events import Event, Resync
from vIOP.rooms.memory import MemoryAttendanceStore
from vIOP.rooms.participant import ParticipantState
from vIOP.rooms.ports import AttendanceQuery, HeartbeatResult
from vIOP.rooms.room import RoomKind
from vIOP.rooms.waiting_room import positions
from vIOP.session.loops import follow_events, reassert_rooms
from vIOP.storage.embedded_redis import EmbeddedRedis
from vIOP.storage.redis_rooms import RedisKeys


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False)  # restarts with nothing
    server.start()
    yield server
    server.stop()


def client_for(server: EmbeddedRedis) -> aioredis.Redis:
    # Short, bounded reconnect attempts: the watcher's own loop does the waiting.
    return aioredis.from_url(server.url, retry=Retry(ConstantBackoff(0.05), 2))


async def hold(proc: Backend, room_id: RoomId, pid: ParticipantId) -> None:
    proc.service.holdings.hold(await proc.service.room(room_id), pid)


async def test_redis_restarted_empty_is_rebuilt_from_what_processes_hold(own_redis: EmbeddedRedis) -> None:
    sealer, clock, ledger = new_sealer(), ManualClock(), MemoryAttendanceStore()
    ca, cb = client_for(own_redis), client_for(own_redis)
    a, b = redis_backend(ca, sealer, clock, ledger), redis_backend(cb, sealer, clock, ledger)
    room_id = new_room_id()
    await a.service.open_room(room_id, kind=RoomKind.GROUP, host_ids=frozenset({HOST}))
    entered = await a.service.host_enter(room_id, user_id=HOST, display_name="Dr")
    assert entered.participant is not None
    host = entered.participant.id
    await a.service.join(room_id, host)
    await hold(a, room_id, host)

    first = await knock(a.service, room_id, 1)  # waiting, on A
    await hold(a, room_id, first)
    clock.advance(5)
    second = await knock(b.service, room_id, 2)  # waiting, on B
    await hold(b, room_id, second)
    inside = await knock(b.service, room_id, 3)  # in the room, on B
    await hold(b, room_id, inside)
    await a.service.admit(room_id, by=host, participant_id=inside)
    await b.service.join(room_id, inside)
    flaky = await knock(a.service, room_id, 4)  # in the room but reconnecting, on A
    await hold(a, room_id, flaky)
    await a.service.admit(room_id, by=host, participant_id=flaky)
    await a.service.join(room_id, flaky)
    await a.service.mark_reconnecting(room_id, flaky)

    # Each process runs the production recovery loop: its event stream notices the restart (Resync) and
    # the rooms are re-asserted, as ``vIOP.session.loops.repair`` does first.
    seen: list[list[Event | Resync]] = [[], []]

    def follower(proc: Backend, items: list[Event | Resync]) -> asyncio.Task[None]:
        async def handle(item: Event | Resync) -> None:
            items.append(item)
            if isinstance(item, Resync):
                await reassert_rooms(proc.service)

        return asyncio.create_task(follow_events(proc.bus, handle, retry=0.05))

    followers = [follower(proc, items) for proc, items in zip((a, b), seen, strict=True)]
    try:
        deadline = time.monotonic() + 5
        while not all(seen) and time.monotonic() < deadline:  # both streams are being read
            await a.service.lobby_message(room_id, by=host, participant_id=first, message="hello")
            await asyncio.sleep(0.05)
        assert all(seen)
        before = await a.rooms.get(room_id)
        ledger_before = await ledger.intervals(AttendanceQuery(room_id=room_id))
        assert len(ledger_before) == 3  # host, inside, flaky are in the room
        own_redis.kill()
        with pytest.raises(RedisConnectionError):
            await ca.ping()
        own_redis.start()
        restarted = time.monotonic()
        keys = RedisKeys()
        deadline = restarted + 5
        while time.monotonic() < deadline:
            try:
                room = await a.rooms.get(room_id)
            except RoomNotFound:
                room = None
            presence = await ca.zcard(keys.presence)
            if room is not None and len(room.participants) == 5 and presence == 4:
                break
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - restarted
        print(f"rooms and presence back {elapsed:.2f} s after the restart")
        assert room is not None and elapsed < 5
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)

    assert {p.id: p.state for p in room.participants} == {p.id: p.state for p in before.participants}
    assert positions(room) == {first: 1, second: 2}  # lobby order survived
    assert room.participant(flaky).reconnecting_since == before.participant(flaky).reconnecting_since
    assert room.participant(inside).display_name == "Client 3"
    assert await ca.zscore(keys.reconnecting, keys.member(room_id, flaky)) is not None
    for pid in (host, first, second, inside):
        assert await b.service.heartbeat(room_id, pid) is HeartbeatResult.FRESH
    assert await b.service.heartbeat(room_id, flaky) is HeartbeatResult.REVIVED
    # the room works on: new knocks queue behind the old ones, hosts admit
    late = await b.service.knock(room_id, subject=ClientId("cl_5"), display_name="Late")
    assert late.participant is not None and late.participant.knock_seq > room.participant(second).knock_seq
    assert positions(late.room)[late.participant.id] == 3
    admitted = await a.service.admit(room_id, by=host, participant_id=first)
    assert admitted.room.participant(first).state is ParticipantState.ADMITTED
    assert await ledger.intervals(AttendanceQuery(room_id=room_id)) == ledger_before  # not in Redis
    await ca.aclose()
    await cb.aclose()
