"""Live rooms, waiting rooms and presence on Redis.

Data (keys hold opaque ids only; ``{p}`` is the prefix, default ``viop``; ``{{room}}`` is a Redis Cluster
hash tag: every key of one room hashes to the room's slot):

- ``{p}:room:{{room}}``          the Room aggregate (session, lobby, roster) as sealed JSON; sealing context =
                                 ``{p}:room:{room}`` (the key's name before hash tags, so stored rooms stay
                                 readable; keys of that older form are renamed once, :func:`migrate_room_keys`)
- ``{p}:room:{{room}}:active``   hash participant -> ``a`` (listening) | ``r`` (reconnecting), for heartbeats
- ``{p}:room:{{room}}:chat``     list of the room's chat lines while it is live, each sealed (context = the key's
                                 name); written by ``vIOP.storage.redis_chat``, deleted with the room's end
- ``{p}:rooms``                set of rooms whose session has not ended
- ``{p}:presence``             zset ``room/participant`` -> last heartbeat, of listening participants
- ``{p}:reconnecting``         zset ``room/participant`` -> reconnecting since
- ``{p}:events``               the event stream (``vIOP/storage/redis_bus.py``)
- ``{p}:generation``           a random token; when it vanishes, Redis lost its data

Every change is one WATCH/MULTI/EXEC: read the room, run the pure step, write the room, its indexes and its
events together (optimistic; a lost race re-runs the step on the new state). A heartbeat is one pipelined
round trip without a script. No transaction or command touches two rooms (docs/REDIS_HA.md, "Keyspace").
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
from redis.exceptions import ResponseError, WatchError

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
        return f"{self.prefix}:room:{{{room_id}}}"

    def active(self, room_id: RoomId) -> str:
        return f"{self.prefix}:room:{{{room_id}}}:active"

    def chat(self, room_id: RoomId) -> str:
        """The room's chat record (sealed lines), for a host's transcript save (issue 15)."""
        return f"{self.prefix}:room:{{{room_id}}}:chat"

    def room_context(self, room_id: RoomId) -> str:
        """What the room's record is sealed to: its key's name from before hash tags (stored rooms stay
        readable across the rename)."""
        return f"{self.prefix}:room:{room_id}"

    def untagged(self) -> str:
        """SCAN pattern of room keys in their form before hash tags (``{p}:room:ROOM[:active]``)."""
        return f"{self.prefix}:room:[^{{]*"

    @staticmethod
    def member(room_id: RoomId, participant_id: ParticipantId) -> str:
        return f"{room_id}/{participant_id}"

    @staticmethod
    def split(member: bytes | str) -> tuple[RoomId, ParticipantId]:
        text = member.decode() if isinstance(member, bytes) else member
        room_id, _, participant_id = text.partition("/")
        return RoomId(room_id), ParticipantId(participant_id)


async def migrate_room_keys(client: aioredis.Redis, keys: RedisKeys) -> int:
    """Rename room keys of the form before hash tags (``viop:room:R``, ``viop:room:R:active``) to
    ``viop:room:{R}`` and ``viop:room:{R}:active``; TTLs go with them and the sealed records stay readable
    (sealed to ``room_context``, which is the old name). Idempotent and safe to run from several processes at
    once; a key already present under its new name wins. Returns how many keys were renamed."""
    renamed = 0
    async for raw in client.scan_iter(match=keys.untagged(), count=500):
        old = _bytes(raw).decode()
        rest = old[len(keys.prefix) + len(":room:") :]
        room_id, _, suffix = rest.partition(":")
        if suffix not in ("", "active"):
            continue  # not a room key of ours
        new = keys.active(RoomId(room_id)) if suffix == "active" else keys.room(RoomId(room_id))
        try:
            moved = await client.renamenx(old, new)
        except ResponseError:  # another process renamed it first
            continue
        if moved:
            renamed += 1
        else:
            await client.delete(old)  # the new name was written since: it is the current one
    if renamed:
        log.info("renamed %d room keys to their hash-tagged names", renamed)
    return renamed


class RoomCodec:
    """Room <-> sealed bytes bound to the room's sealing context (``RedisKeys.room_context``)."""

    __slots__ = ("_sealer",)

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer

    def seal(self, context: str, room: Room) -> bytes:
        return self._sealer.seal(msgspec.json.encode(room), context.encode())

    def open(self, context: str, blob: bytes | str) -> Room:
        return msgspec.json.decode(self._sealer.unseal(_bytes(blob), context.encode()), type=Room)


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
        self._migrated = False

    async def _migrate_once(self) -> None:
        """Room keys written before hash tags get their new names, once per process, before first use."""
        if not self._migrated:
            await migrate_room_keys(self.client, self.keys)
            self._migrated = True

    async def create(self, room: Room) -> None:
        def step(current: Room | None) -> Room:
            if current is not None and current.state is not RoomState.ENDED:
                raise RoomAlreadyOpen("a session of this room is still open")
            return room

        await self._transact(room.id, step, at=room.opened_at, rebuild_index=True)

    async def get(self, room_id: RoomId) -> Room:
        await self._migrate_once()
        blob = await self.client.get(self.keys.room(room_id))
        if blob is None:
            raise RoomNotFound("no such room")
        return self.codec.open(self.keys.room_context(room_id), blob)

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
        await self._migrate_once()
        members: set[Any] = await self.client.smembers(self.keys.rooms)
        ids = [RoomId(i) for i in sorted(_bytes(m).decode() for m in members)]
        if not ids:
            return []
        # One GET per room in one pipeline (an MGET of several rooms would span their slots).
        async with self.client.pipeline(transaction=False) as pipe:
            for room_id in ids:
                pipe.get(self.keys.room(room_id))
            blobs = await pipe.execute()
        rooms = [
            self.codec.open(self.keys.room_context(i), b)
            for i, b in zip(ids, blobs, strict=True)
            if b is not None
        ]
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
        await self._migrate_once()
        key, context = self.keys.room(room_id), self.keys.room_context(room_id)
        for attempt in range(self.max_attempts):
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    blob = await pipe.get(key)
                    current = None if blob is None else self.codec.open(context, blob)
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
        pipe.set(
            key, self.codec.seal(self.keys.room_context(room.id), room), ex=ENDED_ROOM_TTL if ended else None
        )
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
            pipe.delete(self.keys.chat(room.id))  # chat is kept only while the room is live
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


class RedisPresenceStore:
    def __init__(self, client: aioredis.Redis, *, keys: RedisKeys | None = None) -> None:
        self.client = client
        self.keys = keys or RedisKeys()

    async def heartbeat(self, room_id: RoomId, participant_id: ParticipantId, at: float) -> HeartbeatResult:
        """One round trip, no script and no transaction (so no command spans two slots): does the room
        exist, is the participant listening (``a``) or reconnecting (``r``), and ``ZADD XX`` of the beat
        into the shared presence index. XX is what makes this safe without a script: a listening
        participant is always in the index (the room's transactions write both together), and one who
        stopped listening was removed from it, so a beat never puts back someone who left or is
        reconnecting. The reads need no transaction either: a room key is never deleted while its room
        lives, and the state read is the state at that moment, as before."""
        k = self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(k.room(room_id))
            pipe.hget(k.active(room_id), participant_id)
            pipe.zadd(k.presence, {k.member(room_id, participant_id): at}, xx=True)
            exists, state, _ = await pipe.execute()
        if not exists:
            raise RoomNotFound("no such room")
        if state is None:
            raise NotActive("the participant is not waiting or in the room")
        return HeartbeatResult.REVIVED if _bytes(state) == b"r" else HeartbeatResult.FRESH

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
