"""Rooms stored before room keys carried hash tags (``viop:room:R``, ``viop:room:R:active``) are renamed to
``viop:room:{R}`` and ``viop:room:{R}:active`` once, and read as they were (their sealing context is
unchanged), on a real Redis."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from tests.rooms.support import knock, live_room, new_sealer, redis_backend
from vIOP.ids import RoomId
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.room import RoomState
from vIOP.storage.redis_rooms import RedisKeys, RedisRoomStore, migrate_room_keys


async def _as_before_hash_tags(client: aioredis.Redis, room_id: RoomId) -> None:
    """Move a room's keys to the names the previous version wrote. The bytes are what it wrote: it sealed
    the record to its key's name, which is ``room_context``."""
    keys = RedisKeys()
    await client.rename(keys.room(room_id), keys.room_context(room_id))
    if await client.exists(keys.active(room_id)):  # an ended room has none
        await client.rename(keys.active(room_id), f"{keys.room_context(room_id)}:active")


async def test_rooms_from_before_hash_tags_are_renamed_and_read(redis_client: aioredis.Redis) -> None:
    sealer, clock, keys = new_sealer(), ManualClock(), RedisKeys()
    writer = redis_backend(redis_client, sealer, clock)
    live = await live_room(writer.service)
    waiting = await knock(writer.service, live.room_id, 1)
    ended = await live_room(writer.service)
    await writer.service.end(ended.room_id, by=ended.host)
    before = {r: await writer.rooms.get(r) for r in (live.room_id, ended.room_id)}
    for room_id in before:
        await _as_before_hash_tags(redis_client, room_id)
    ended_ttl = await redis_client.ttl(keys.room_context(ended.room_id))
    assert ended_ttl > 0

    # Two processes start at once, each renaming what it finds first.
    first, second = (redis_backend(redis_client, sealer, clock) for _ in range(2))
    assert isinstance(first.rooms, RedisRoomStore) and isinstance(second.rooms, RedisRoomStore)
    renamed = await asyncio.gather(
        migrate_room_keys(redis_client, keys), migrate_room_keys(redis_client, keys)
    )
    assert sum(renamed) == 3  # two rooms, and the active hash of the live one (the ended one has none)
    for room_id, room in before.items():
        assert await first.rooms.get(room_id) == room
        assert await redis_client.exists(keys.room_context(room_id)) == 0
    assert 0 < await redis_client.ttl(keys.room(ended.room_id)) <= ended_ttl  # an ended room still expires
    assert [r.id for r in await second.rooms.open_rooms()] == [live.room_id]
    assert (await second.rooms.get(ended.room_id)).state is RoomState.ENDED
    # The live room carries on: a heartbeat finds the waiting client, and the host admits them.
    await second.service.heartbeat(live.room_id, waiting)
    admitted = await second.service.admit(live.room_id, by=live.host, participant_id=waiting)
    assert admitted.events


async def test_a_store_renames_old_keys_before_its_first_read(redis_client: aioredis.Redis) -> None:
    sealer, clock = new_sealer(), ManualClock()
    writer = redis_backend(redis_client, sealer, clock)
    live = await live_room(writer.service)
    room = await writer.rooms.get(live.room_id)
    await _as_before_hash_tags(redis_client, live.room_id)
    fresh = redis_backend(redis_client, sealer, clock)  # a process started after the upgrade
    assert await fresh.rooms.get(live.room_id) == room
    assert await redis_client.exists(RedisKeys().active(live.room_id)) == 1


async def test_a_newer_key_wins_over_a_leftover_old_one(redis_client: aioredis.Redis) -> None:
    sealer, clock, keys = new_sealer(), ManualClock(), RedisKeys()
    writer = redis_backend(redis_client, sealer, clock)
    live = await live_room(writer.service)
    newer = await writer.rooms.get(live.room_id)
    await redis_client.set(keys.room_context(live.room_id), b"stale bytes of an older version")
    assert await migrate_room_keys(redis_client, keys) == 0
    assert await redis_client.exists(keys.room_context(live.room_id)) == 0
    assert await writer.rooms.get(live.room_id) == newer
