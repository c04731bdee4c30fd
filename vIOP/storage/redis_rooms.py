"""Live rooms, waiting rooms and presence on Redis.

Data (keys hold opaque ids only; ``{p}`` is the prefix, default ``viop``):

- ``{p}:room:{room}``          the Room aggregate (session, lobby, roster) as sealed JSON; context = the key
- ``{p}:room:{room}:active``   hash participant -> ``a`` (listening) | ``r`` (reconnecting), for heartbeats
- ``{p}:rooms``                set of rooms whose session has not ended
- ``{p}:presence``             zset ``room/participant`` -> last heartbeat, of listening participants
- ``{p}:reconnecting``         zset ``room/participant`` -> reconnecting since
- ``{p}:events``               the event stream (``vIOP/storage/redis_bus.py``)
- ``{p}:generation``           a random token; when it vanishes, Redis lost its data

Every change is one WATCH/MULTI/EXEC: read the room, run the pure step, write the room, its indexes and its
events together (optimistic; a lost race re-runs the step on the new state). Heartbeats are one Lua script.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from vIOP.errors import Unavailable
from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.errors import NotActive, RoomAlreadyOpen, RoomNotFound
from vIOP.rooms.events import Event
from vIOP.rooms.holdings import merge_held
from vIOP.rooms.participant import Participant
from vIOP.rooms.ports import HeartbeatResult, Reasserted, Silent, Step
from vIOP.rooms.presence import Liveness, liveness
from vIOP.rooms.room import Room, RoomState, Transition
from vIOP.storage.redis_bus import EventStream
from vIOP.storage.sealing import Sealer

log = logging.getLogger(__name__)

ENDED_ROOM_TTL = 6 * 3600  # an ended room answers "ended" (not "unknown") for a while, then goes


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _liveness_of(pid: ParticipantId, index: Liveness) -> tuple[str, float | None]:
    if pid in index.listening:
        return ("listening", None)  # the heartbeat time is the presence store's, not the room's
    if pid in index.reconnecting:
        return ("reconnecting", index.reconnecting[pid])
    return ("gone", None)


class RedisKeys:
    __slots__ = ("events", "generation", "prefix", "presence", "reconnecting", "rooms")

    def __init__(self, prefix: str = "viop") -> None:
        self.prefix = prefix
        self.rooms = f"{prefix}:rooms"
        self.presence = f"{prefix}:presence"
        self.reconnecting = f"{prefix}:reconnecting"
        self.events = f"{prefix}:events"
        self.generation = f"{prefix}:generation"

    def room(self, room_id: RoomId) -> str:
        return f"{self.prefix}:room:{room_id}"

    def active(self, room_id: RoomId) -> str:
        return f"{self.prefix}:room:{room_id}:active"

    @staticmethod
    def member(room_id: RoomId, participant_id: ParticipantId) -> str:
        return f"{room_id}/{participant_id}"

    @staticmethod
    def split(member: bytes | str) -> tuple[RoomId, ParticipantId]:
        text = member.decode() if isinstance(member, bytes) else member
        room_id, _, participant_id = text.partition("/")
        return RoomId(room_id), ParticipantId(participant_id)


class RoomCodec:
    """Room <-> sealed bytes bound to the room's key."""

    __slots__ = ("_sealer",)

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer

    def seal(self, key: str, room: Room) -> bytes:
        return self._sealer.seal(msgspec.json.encode(room), key.encode())

    def open(self, key: str, blob: bytes | str) -> Room:
        return msgspec.json.decode(self._sealer.unseal(_bytes(blob), key.encode()), type=Room)


class RedisRoomStore:
    def __init__(
        self,
        client: aioredis.Redis,
        sealer: Sealer,
        *,
        keys: RedisKeys | None = None,
        max_attempts: int = 200,
    ) -> None:
        self.client = client
        self.keys = keys or RedisKeys()
        self.codec = RoomCodec(sealer)
        self.stream = EventStream(self.keys.events, sealer)
        self.max_attempts = max_attempts
        self.lost_races = 0  # transactions re-run after another writer changed the room first

    async def create(self, room: Room) -> None:
        def step(current: Room | None) -> Room:
            if current is not None and current.state is not RoomState.ENDED:
                raise RoomAlreadyOpen("a session of this room is still open")
            return room

        await self._transact(room.id, step, at=room.opened_at, rebuild_index=True)

    async def get(self, room_id: RoomId) -> Room:
        key = self.keys.room(room_id)
        blob = await self.client.get(key)
        if blob is None:
            raise RoomNotFound("no such room")
        return self.codec.open(key, blob)

    async def apply(self, room_id: RoomId, step: Step) -> Transition:
        outcome: list[Transition] = []

        def run(current: Room | None) -> Room | None:
            if current is None:
                raise RoomNotFound("no such room")
            result = step(current)
            outcome[:] = [result]
            if not result.events:
                return None
            return dataclasses.replace(result.room, version=current.version + 1)

        stored = await self._transact(room_id, run, events=lambda: outcome[0].events)
        result = outcome[0]
        return result if stored is None else Transition(stored, result.events, result.participant)

    async def open_rooms(self) -> list[Room]:
        members: set[Any] = await self.client.smembers(self.keys.rooms)
        ids = sorted(_bytes(m).decode() for m in members)
        if not ids:
            return []
        keys = [self.keys.room(RoomId(i)) for i in ids]
        blobs = await self.client.mget(keys)
        rooms = [self.codec.open(k, b) for k, b in zip(keys, blobs, strict=True) if b is not None]
        return [r for r in rooms if r.state is not RoomState.ENDED]

    async def reassert(self, room: Room, held: Sequence[Participant], at: float) -> Reasserted:
        report: list[Reasserted] = []

        def merge(current: Room | None) -> Room | None:
            merged, restored = merge_held(current, room, held)
            report[:] = [Reasserted(current is None, restored)]
            if current is not None and not restored:
                return None
            return dataclasses.replace(merged, version=max(merged.version, room.version) + 1)

        await self._transact(room.id, merge, at=at, rebuild_index=True)
        return report[0]

    async def _transact(
        self,
        room_id: RoomId,
        decide: Callable[[Room | None], Room | None],
        *,
        at: float | None = None,
        events: Callable[[], Sequence[Event]] = tuple,
        rebuild_index: bool = False,
    ) -> Room | None:
        """WATCH the room, let ``decide`` map the current room to the one to store (None: store nothing),
        write it with its indexes and events in MULTI/EXEC; on a lost race, run ``decide`` again."""
        key = self.keys.room(room_id)
        for attempt in range(self.max_attempts):
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    blob = await pipe.get(key)
                    current = None if blob is None else self.codec.open(key, blob)
                    after = decide(current)
                    if after is None:
                        return None
                    happened = events()
                    when = at if at is not None else max(e.at for e in happened)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    self._write(pipe, after, when, None if rebuild_index else current)
                    self.stream.append(pipe, happened)
                    await pipe.execute()
                    return after
                except WatchError:
                    self.lost_races += 1
                    # Someone changed the room first. A little jitter spreads out a crowd of retries.
                    await asyncio.sleep(random.uniform(0, min(0.01, 0.0005 * 2**attempt)))  # noqa: S311
        raise Unavailable("the room is too busy right now; try again")

    def _write(self, pipe: Any, room: Room, at: float, before: Room | None) -> None:
        """Queue the room and its indexes. With ``before`` (the state the indexes match) only what changed
        is touched, which keeps a transaction small in a big room; without it everything is rewritten."""
        key = self.keys.room(room.id)
        ended = room.state is RoomState.ENDED
        pipe.set(key, self.codec.seal(key, room), ex=ENDED_ROOM_TTL if ended else None)
        new = liveness(room, at)
        if before is None:
            pipe.delete(self.keys.active(room.id))
            for p in room.participants:
                self._index(pipe, room.id, p.id, new)
        else:
            old = liveness(before, at)
            for pid in {*old.listening, *old.reconnecting, *new.listening, *new.reconnecting}:
                if _liveness_of(pid, old) != _liveness_of(pid, new):
                    self._index(pipe, room.id, pid, new)
        if ended:
            pipe.srem(self.keys.rooms, room.id)
        else:
            pipe.sadd(self.keys.rooms, room.id)

    def _index(self, pipe: Any, room_id: RoomId, pid: ParticipantId, index: Liveness) -> None:
        active, member = self.keys.active(room_id), self.keys.member(room_id, pid)
        if pid in index.listening:
            pipe.hset(active, pid, "a")
            pipe.zadd(self.keys.presence, {member: index.listening[pid]}, nx=True)
            pipe.zrem(self.keys.reconnecting, member)
        elif pid in index.reconnecting:
            pipe.hset(active, pid, "r")
            pipe.zrem(self.keys.presence, member)
            pipe.zadd(self.keys.reconnecting, {member: index.reconnecting[pid]})
        else:
            pipe.hdel(active, pid)
            pipe.zrem(self.keys.presence, member)
            pipe.zrem(self.keys.reconnecting, member)


_HEARTBEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[2], ARGV[1])
if not state then return 0 end
if state == 'r' then return 2 end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 1
"""


class RedisPresenceStore:
    def __init__(self, client: aioredis.Redis, *, keys: RedisKeys | None = None) -> None:
        self.client = client
        self.keys = keys or RedisKeys()
        self._heartbeat = client.register_script(_HEARTBEAT)

    async def heartbeat(self, room_id: RoomId, participant_id: ParticipantId, at: float) -> HeartbeatResult:
        k = self.keys
        answer = await self._heartbeat(
            keys=[k.room(room_id), k.active(room_id), k.presence],
            args=[participant_id, k.member(room_id, participant_id), repr(at)],
        )
        if answer == -1:
            raise RoomNotFound("no such room")
        if answer == 0:
            raise NotActive("the participant is not waiting or in the room")
        return HeartbeatResult.REVIVED if answer == 2 else HeartbeatResult.FRESH

    async def silent(self, before: float, limit: int = 500) -> list[Silent]:
        return await self._older(self.keys.presence, before, limit)

    async def grace_over(self, before: float, limit: int = 500) -> list[Silent]:
        return await self._older(self.keys.reconnecting, before, limit)

    async def _older(self, key: str, before: float, limit: int) -> list[Silent]:
        rows: list[Any] = await self.client.zrangebyscore(
            key, "-inf", f"({before!r}", start=0, num=limit, withscores=True
        )
        found = []
        for member, score in rows:
            room_id, participant_id = self.keys.split(member)
            found.append(Silent(room_id, participant_id, float(score)))
        return found


class StoreGeneration:
    """Notices that Redis lost its data: a random token that only a data loss removes."""

    def __init__(self, client: aioredis.Redis, *, keys: RedisKeys | None = None) -> None:
        self.client = client
        self.key = (keys or RedisKeys()).generation
        self.seen: bytes | None = None

    async def lost_since_last_check(self) -> bool:
        await self.client.set(self.key, secrets.token_hex(16), nx=True)
        answer = await self.client.get(self.key)
        current = None if answer is None else _bytes(answer)
        lost = self.seen is not None and current != self.seen
        self.seen = current
        return lost
