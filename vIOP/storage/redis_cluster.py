"""The cluster's node registry and room leases on Redis (ports: :mod:`vIOP.cluster.ports`).

Keys (ids only: node ids, opaque random room ids, the node's own media address; no PHI). Each record is
ONE key carrying a hash tag, and every script touches that one key, so the keyspace stays
Redis-Cluster-safe:

- ``viop:node:{node:<id>}``   hash ``r`` = the node record (JSON), ``s`` = state (``draining`` is sticky
                              for the process it was put on: ``i`` = that process's incarnation),
                              ``e`` = expiry (epoch s, the node's clock); the key's own TTL is the node TTL,
                              so a node whose heartbeat lapses is gone even for readers without a clock
- ``viop:nodes``              set of node ids (an index for listing; entries whose key is gone are dropped)
- ``viop:lease:{<id>}``       hash ``n`` = holder node id ('' once released), ``t`` = fencing token, ``e`` =
                              expiry (epoch s); kept ``LEASE_KEEP_SECONDS`` after its last change so the
                              next grant's token is larger than every one given before it

Every lease change is one Lua script on that key: compare (holder, token, expiry) and set, atomically.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis

from vIOP.cluster.leases import RoomLease
from vIOP.cluster.nodes import Node, NodeState
from vIOP.ids import RoomId

NODE_INDEX: Final = "viop:nodes"
# A room lease key outlives its last grant by this long: the token sequence survives a room's quiet spells.
LEASE_KEEP_SECONDS: Final = 24 * 3600


def node_key(node_id: str) -> str:
    return f"viop:node:{{node:{node_id}}}"


def lease_key(room_id: RoomId) -> str:
    return f"viop:lease:{{{room_id}}}"  # the room's own hash tag: one slot per room


async def clock_skew(client: aioredis.Redis, clock: Callable[[], float]) -> float:
    """How far ``clock`` is ahead of the Redis server's clock, in seconds (negative: behind). Leases carry
    absolute expiry times from each node's clock, so nodes must agree on the time within a lease."""
    before = clock()
    seconds, micros = await client.time()
    after = clock()
    return (before + after) / 2 - (seconds + micros / 1e6)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# KEYS[1] node key; ARGV: record JSON, state, expiry, ttl ms. Returns the state in force.
_ANNOUNCE = """
local state = ARGV[2]
if redis.call('HGET', KEYS[1], 's') == 'draining' and redis.call('HGET', KEYS[1], 'i') == ARGV[5] then
  state = 'draining'
end
redis.call('HSET', KEYS[1], 'r', ARGV[1], 's', state, 'e', ARGV[3], 'i', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return state
"""

# KEYS[1] node key; ARGV: state, now. 1 when set, 0 when no live node.
_SET_STATE = """
local expires = redis.call('HGET', KEYS[1], 'e')
if not expires or tonumber(expires) <= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[1])
return 1
"""


class RedisNodeRegistry:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._announce = client.register_script(_ANNOUNCE)
        self._set_state = client.register_script(_SET_STATE)

    async def announce(self, node: Node, ttl: float) -> NodeState:
        record = msgspec.json.encode(node)
        state = await self._announce(
            keys=[node_key(node.id)],
            args=[
                record,
                node.state.value,
                repr(node.expires_at),
                max(1, math.ceil(ttl * 1000)),
                node.incarnation,
            ],
        )
        await self.client.sadd(NODE_INDEX, node.id)
        return NodeState(_text(state))

    async def nodes(self, now: float) -> list[Node]:
        members: set[Any] = await self.client.smembers(NODE_INDEX)
        ids = sorted(_text(m) for m in members)
        found, gone = [], []
        for node_id in ids:
            node = await self._read(node_id)
            if node is None:
                gone.append(node_id)
            elif node.alive(now):
                found.append(node)
        if gone:
            await self.client.srem(NODE_INDEX, *gone)
        return found

    async def get(self, node_id: str, now: float) -> Node | None:
        node = await self._read(node_id)
        return node if node is not None and node.alive(now) else None

    async def _read(self, node_id: str) -> Node | None:
        fields: list[Any] = await self.client.hmget(node_key(node_id), ["r", "s"])
        record, state = fields
        if record is None or state is None:
            return None
        # The state field wins over the record's: an operator's drain lands there between heartbeats.
        return dataclasses.replace(msgspec.json.decode(record, type=Node), state=NodeState(_text(state)))

    async def set_state(self, node_id: str, state: NodeState, now: float) -> bool:
        done = await self._set_state(keys=[node_key(node_id)], args=[state.value, repr(now)])
        return bool(done)

    async def remove(self, node_id: str) -> None:
        await self.client.delete(node_key(node_id))
        await self.client.srem(NODE_INDEX, node_id)


# A lease script's answer: {holder, token, expiry} of the lease in force afterwards ('' holder: none).
# KEYS[1] lease key; ARGV: node, now, ttl, keep seconds.
_ACQUIRE = """
local lease = redis.call('HMGET', KEYS[1], 'n', 't', 'e')
local holder, token, expires = lease[1] or '', tonumber(lease[2] or '0'), tonumber(lease[3] or '0')
local now = tonumber(ARGV[2])
if holder ~= '' and now < expires then return {holder, tostring(token), tostring(expires)} end
token = token + 1
expires = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'n', ARGV[1], 't', token, 'e', tostring(expires))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {ARGV[1], tostring(token), tostring(expires)}
"""

# KEYS[1]; ARGV: stale holder, stale token, node, now, ttl, keep. Grants when the stale lease is still the
# one in force (expired or not) or when none is live.
_TAKE_OVER = """
local lease = redis.call('HMGET', KEYS[1], 'n', 't', 'e')
local holder, token, expires = lease[1] or '', tonumber(lease[2] or '0'), tonumber(lease[3] or '0')
local now = tonumber(ARGV[4])
local stale = holder == ARGV[1] and token == tonumber(ARGV[2])
if holder ~= '' and now < expires and not stale then
  return {holder, tostring(token), tostring(expires)}
end
token = token + 1
expires = now + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'n', ARGV[3], 't', token, 'e', tostring(expires))
redis.call('EXPIRE', KEYS[1], ARGV[6])
return {ARGV[3], tostring(token), tostring(expires)}
"""

# KEYS[1]; ARGV: node, token, now, ttl, keep. The new expiry, or false when the lease is not in force.
_RENEW = """
local lease = redis.call('HMGET', KEYS[1], 'n', 't', 'e')
if lease[1] ~= ARGV[1] or tonumber(lease[2]) ~= tonumber(ARGV[2]) then return false end
local now = tonumber(ARGV[3])
if now >= tonumber(lease[3]) then return false end
local expires = tostring(now + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'e', expires)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return expires
"""

# KEYS[1]; ARGV: node, token. 1 when released; the token stays for the next grant to count on.
_RELEASE = """
local lease = redis.call('HMGET', KEYS[1], 'n', 't')
if lease[1] ~= ARGV[1] or tonumber(lease[2]) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'n', '', 'e', '0')
return 1
"""


class RedisRoomLeases:
    def __init__(self, client: aioredis.Redis, *, keep_seconds: int = LEASE_KEEP_SECONDS) -> None:
        self.client = client
        self.keep_seconds = keep_seconds
        self._acquire = client.register_script(_ACQUIRE)
        self._take_over = client.register_script(_TAKE_OVER)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @staticmethod
    def _lease(room_id: RoomId, answer: list[Any]) -> RoomLease:
        holder, token, expires = (_text(v) for v in answer)
        return RoomLease(room_id, holder, int(token), float(expires))

    async def acquire(self, room_id: RoomId, node_id: str, now: float, ttl: float) -> RoomLease:
        answer = await self._acquire(
            keys=[lease_key(room_id)], args=[node_id, repr(now), repr(ttl), self.keep_seconds]
        )
        return self._lease(room_id, answer)

    async def renew(self, lease: RoomLease, now: float, ttl: float) -> RoomLease | None:
        expires = await self._renew(
            keys=[lease_key(lease.room_id)],
            args=[lease.node_id, lease.token, repr(now), repr(ttl), self.keep_seconds],
        )
        if expires is None:
            return None
        return dataclasses.replace(lease, expires_at=float(_text(expires)))

    async def release(self, lease: RoomLease) -> bool:
        done = await self._release(keys=[lease_key(lease.room_id)], args=[lease.node_id, lease.token])
        return bool(done)

    async def take_over(self, stale: RoomLease, node_id: str, now: float, ttl: float) -> RoomLease:
        answer = await self._take_over(
            keys=[lease_key(stale.room_id)],
            args=[stale.node_id, stale.token, node_id, repr(now), repr(ttl), self.keep_seconds],
        )
        return self._lease(stale.room_id, answer)

    async def current(self, room_id: RoomId) -> RoomLease | None:
        fields: list[Any] = await self.client.hmget(lease_key(room_id), ["n", "t", "e"])
        holder, token, expires = fields
        if holder is None or not _text(holder):
            return None
        return RoomLease(room_id, _text(holder), int(_text(token)), float(_text(expires)))
