"""No plaintext PHI in Redis: a canary name and canary messages go through every room path, then every key
and value in Redis (and an RDB dump of it) is searched for them."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.rooms.support import HOST, knock, live_room, new_sealer, redis_backend
from vIOP.ids import ClientId
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.presence import Viewer
from vIOP.storage.embedded_redis import EmbeddedRedis

CANARY_NAME = "Zebediah Quillfeather-Canary"
CANARY_MESSAGE = "Okonkwo-canary lobby note: your counselor Wren is running late"
CANARY_DENIAL = "Denied-canary: Marisol, please call the clinic"
CANARIES = (CANARY_NAME, CANARY_MESSAGE, CANARY_DENIAL, "Quillfeather", "Okonkwo", "Marisol")


def forms(text: str) -> list[bytes]:
    return [text.encode(), text.encode("utf-16-le"), text.encode("utf-16-be"), text.lower().encode()]


def raw(value: Any) -> bytes:
    """All the bytes inside a reply, concatenated as they are (no repr escaping)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        return b"\n".join(raw(k) + b"\n" + raw(v) for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return b"\n".join(raw(v) for v in value)
    return str(value).encode()


async def everything_in(client: aioredis.Redis) -> list[tuple[bytes, Any]]:
    """Every key with its value read the way its type is read, plus its DUMP serialization."""
    found: list[tuple[bytes, Any]] = []
    async for key in client.scan_iter(count=1000):
        kind = (await client.type(key)).decode()
        value: Any
        if kind == "string":
            value = await client.get(key)
        elif kind == "hash":
            value = await client.hgetall(key)
        elif kind == "set":
            value = await client.smembers(key)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = await client.xrange(key)
        elif kind == "list":
            value = await client.lrange(key, 0, -1)
        else:
            raise AssertionError(f"unexpected key type {kind}")
        found.append((key, value))
        found.append((key, await client.dump(key)))
    return found


async def test_no_canary_in_any_redis_key_value_or_dump(
    redis_client: aioredis.Redis, redis_server: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    proc = redis_backend(redis_client, new_sealer(), ManualClock())
    s = proc.service
    sub = await proc.bus.subscribe()
    g = await live_room(s)
    named = await s.knock(g.room_id, subject=ClientId("cl_canary"), display_name=CANARY_NAME)
    assert named.participant is not None
    pid = named.participant.id
    await s.lobby_message(g.room_id, by=g.host, participant_id=pid, message=CANARY_MESSAGE)
    other = await knock(s, g.room_id, 2, name="Marisol")
    await s.deny(g.room_id, by=g.host, participant_id=other, message=CANARY_DENIAL)
    await s.admit(g.room_id, by=g.host, participant_id=pid)
    await s.join(g.room_id, pid)
    await s.heartbeat(g.room_id, pid)
    await s.mark_reconnecting(g.room_id, pid)
    # a second room that ends: ended rooms linger (sealed) for a while
    ended = await live_room(s)
    gone = await s.knock(ended.room_id, subject=ClientId("cl_canary2"), display_name=CANARY_NAME)
    assert gone.participant is not None
    await s.end(ended.room_id, by=ended.host)
    # the plaintext is really in play: the service and the bus hand it to their callers
    view = await s.snapshot(Viewer(HOST))
    assert CANARY_NAME in {seat.display_name for r in view.rooms for seat in r.seated}
    assert (await anext(sub)).kind == "admitted"
    await sub.close()

    contents = await everything_in(redis_client)
    assert {k.decode().split(":")[1] for k, _ in contents} >= {"room", "rooms", "presence", "events"}
    blob = b"\n".join(raw(v) for _, v in contents)
    await redis_client.save()
    rdb = (redis_server.directory / "dump.rdb").read_bytes()
    for canary in CANARIES:
        for form in forms(canary):
            assert form not in blob, canary
            assert form not in rdb, canary
            assert all(form not in key for key, _ in contents)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for canary in CANARIES:
        assert canary not in logged
