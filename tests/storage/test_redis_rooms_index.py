"""The Redis liveness indexes (active hash, presence and reconnecting zsets, open-rooms set) always say
what the stored room says, through a long seeded random walk of room actions on a real Redis."""

from __future__ import annotations

import random

import redis.asyncio as aioredis

from tests.rooms.support import live_room, new_sealer, redis_backend
from vIOP.errors import VIOPError
from vIOP.ids import ClientId, RoomId
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.participant import ParticipantState
from vIOP.rooms.presence import liveness
from vIOP.rooms.room import RoomState
from vIOP.storage.redis_rooms import RedisKeys, RedisRoomStore

ACTIONS = (
    *("knock", "knock", "admit", "admit_all", "join", "leave", "remove", "return", "deny"),
    *("drop", "resume", "heartbeat", "sweep", "lock", "unlock"),
)


async def assert_indexes_match(client: aioredis.Redis, store: RedisRoomStore, room_id: RoomId) -> None:
    keys = RedisKeys()
    room = await store.get(room_id)
    expected = liveness(room, 0.0)
    active = {k.decode(): v.decode() for k, v in (await client.hgetall(keys.active(room_id))).items()}
    assert active == {p: "a" for p in expected.listening} | {p: "r" for p in expected.reconnecting}
    prefix = f"{room_id}/".encode()
    listening = {
        m[len(prefix) :].decode() for m in await client.zrange(keys.presence, 0, -1) if m.startswith(prefix)
    }
    assert listening == set(expected.listening)
    reconnecting = {
        m[len(prefix) :].decode(): s
        for m, s in await client.zrange(keys.reconnecting, 0, -1, withscores=True)
        if m.startswith(prefix)
    }
    assert reconnecting == expected.reconnecting
    assert await client.sismember(keys.rooms, room_id) == (room.state is not RoomState.ENDED)


async def test_indexes_follow_every_change(redis_client: aioredis.Redis) -> None:
    rng = random.Random(20260105)
    clock = ManualClock()
    proc = redis_backend(redis_client, new_sealer(), clock)
    store = proc.rooms
    assert isinstance(store, RedisRoomStore)
    s = proc.service
    g = await live_room(s, capacity=4)
    done = refused = reconnects = 0
    seen: set[ParticipantState] = set()
    for _ in range(400):
        room = await store.get(g.room_id)
        people = [p.id for p in room.participants if p.id != g.host] or [g.host]
        who = rng.choice(people)
        action = rng.choice(ACTIONS)
        clock.advance(rng.choice([1, 5, 40]))
        try:
            if action == "knock":
                await s.knock(g.room_id, subject=ClientId(f"cl_{rng.randrange(12)}"), display_name="C")
            elif action == "admit":
                await s.admit(g.room_id, by=g.host, participant_id=who)
            elif action == "admit_all":
                await s.admit_all(g.room_id, by=g.host)
            elif action == "join":
                await s.join(g.room_id, who)
            elif action == "leave":
                await s.leave(g.room_id, who)
            elif action == "remove":
                await s.remove(g.room_id, by=g.host, participant_id=who)
            elif action == "return":
                await s.return_to_lobby(g.room_id, by=g.host, participant_id=who)
            elif action == "deny":
                await s.deny(g.room_id, by=g.host, participant_id=who, message=None)
            elif action == "drop":
                await s.mark_reconnecting(g.room_id, who)
            elif action == "resume":
                await s.resume(g.room_id, who)
            elif action == "heartbeat":
                await s.heartbeat(g.room_id, who)
                await s.heartbeat(g.room_id, g.host)
            elif action == "sweep":
                await s.heartbeat(g.room_id, g.host)
                await s.sweep()
            elif action == "lock":
                await s.lock(g.room_id, by=g.host)
            else:
                await s.unlock(g.room_id, by=g.host)
            done += 1
        except VIOPError:
            refused += 1
        await assert_indexes_match(redis_client, store, g.room_id)
        after = await store.get(g.room_id)
        seen |= {p.state for p in after.participants}
        reconnects += sum(1 for p in after.participants if p.reconnecting_since is not None)
    assert done > 80 and refused > 20  # the walk really moved the room around
    assert seen >= {ParticipantState.WAITING, ParticipantState.IN_ROOM, ParticipantState.LEFT} and reconnects
    await s.end(g.room_id, by=g.host)
    await assert_indexes_match(redis_client, store, g.room_id)
