"""The room event bus on a Redis Stream: every process appends and every process reads, in one order.

Entries are sealed (events carry display names and lobby messages): one field ``e`` = Sealer(JSON event,
context = the stream key). A reader follows the stream from where it subscribed. About once a second
(and at once after a connection error) it compares the server's run id with the one it started on; after a
Redis restart it yields a :class:`Resync` (reload a snapshot) and carries on from the tail.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from vIOP.errors import VIOPError
from vIOP.rooms.events import EVENT_TYPES, Event, Resync
from vIOP.storage.sealing import Sealer

log = logging.getLogger(__name__)

_LOST_CONNECTION = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
_START = b"0-0"


class _Envelope(msgspec.Struct, frozen=True):
    t: str
    d: msgspec.Raw


class EventStream:
    """How events are written to and read from one stream key."""

    __slots__ = ("key", "maxlen", "sealer")

    def __init__(self, key: str, sealer: Sealer, maxlen: int = 10_000) -> None:
        self.key = key
        self.sealer = sealer
        self.maxlen = maxlen

    def fields(self, event: Event) -> dict[str, bytes]:
        plain = msgspec.json.encode({"t": event.kind, "d": event})
        return {"e": self.sealer.seal(plain, self.key.encode())}

    def decode(self, fields: dict[Any, Any]) -> Event:
        sealed = fields.get(b"e", fields.get("e"))
        if not isinstance(sealed, bytes):
            raise ValueError("stream entry without an event")
        envelope = msgspec.json.decode(self.sealer.unseal(sealed, self.key.encode()), type=_Envelope)
        cls = EVENT_TYPES.get(envelope.t)
        if cls is None:
            raise ValueError(f"unknown event type {envelope.t!r}")
        return msgspec.json.decode(envelope.d, type=cls)

    def append(self, pipe: Any, events: Sequence[Event]) -> None:
        """Queue the XADDs on ``pipe`` (a transaction of the caller's, so events go with their change)."""
        for event in events:
            pipe.xadd(self.key, self.fields(event), maxlen=self.maxlen, approximate=True)


class RedisEventBus:
    def __init__(
        self,
        client: aioredis.Redis,
        stream: EventStream,
        *,
        block_ms: int = 1000,
        retry_cap: float = 1.0,
        restart_check_interval: float = 1.0,
    ) -> None:
        self.client = client
        self.stream = stream
        self.block_ms = block_ms  # below the client's socket timeout (redis-py: 5 s)
        self.retry_cap = retry_cap
        self.restart_check_interval = restart_check_interval

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        async with self.client.pipeline(transaction=True) as pipe:
            self.stream.append(pipe, events)
            await pipe.execute()

    async def subscribe(self) -> RedisSubscription:
        return RedisSubscription(self, await self.server_run_id(), await self.tail())

    async def tail(self) -> bytes:
        """The id of the newest entry, or 0-0 for an empty stream."""
        newest = await self.client.xrevrange(self.stream.key, count=1)
        if not newest:
            return _START
        entry_id = newest[0][0]
        return entry_id if isinstance(entry_id, bytes) else str(entry_id).encode()

    async def server_run_id(self) -> str:
        """Changes whenever the Redis server restarts (redis-py reconnects silently, so errors alone do
        not reveal a restart)."""
        info = await self.client.info("server")
        return str(info.get("run_id", ""))


class RedisSubscription:
    """One reader of the stream. Reads in batches with a bounded block; reconnects with capped backoff;
    checks about once a second whether Redis restarted, and then yields Resync."""

    def __init__(self, bus: RedisEventBus, run_id: str, start: bytes) -> None:
        self._bus = bus
        self._run_id = run_id
        self._checked = time.monotonic()
        self._last = start
        self._buffer: collections.deque[Event | Resync] = collections.deque()
        self._closed = False
        self.skipped = 0  # entries that failed to unseal or decode (logged by id, never by content)

    def __aiter__(self) -> AsyncIterator[Event | Resync]:
        return self

    async def __anext__(self) -> Event | Resync:
        backoff = 0.05
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            try:
                await self._notice_restart()
                await self._read()
                backoff = 0.05
            except _LOST_CONNECTION:
                self._checked = 0.0  # check the server as soon as it answers again
                await asyncio.sleep(backoff)
                backoff = min(self._bus.retry_cap, backoff * 2)
        return self._buffer.popleft()

    async def close(self) -> None:
        self._closed = True

    async def _notice_restart(self) -> None:
        bus = self._bus
        if time.monotonic() - self._checked < bus.restart_check_interval:
            return
        run_id = await bus.server_run_id()
        self._checked = time.monotonic()
        if run_id != self._run_id:
            # A new server: what was in flight may be lost. Consumers reload a snapshot; carry on from the
            # tail so nothing older than that snapshot is replayed after it.
            self._run_id = run_id
            self._last = await bus.tail()
            self._buffer.append(Resync())

    async def _read(self) -> None:
        bus = self._bus
        reply = await bus.client.xread({bus.stream.key: self._last}, count=256, block=bus.block_ms)
        for entry_id, fields in _entries(reply):
            self._last = entry_id
            try:
                self._buffer.append(bus.stream.decode(fields))
            except (VIOPError, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.skipped += 1
                log.warning("skipped stream entry %s: %s", entry_id.decode(), type(exc).__name__)


def _entries(reply: Any) -> list[tuple[bytes, dict[Any, Any]]]:
    """XREAD's reply as (id, fields) pairs, for both RESP2 (list) and RESP3 (map) shapes."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    out: list[tuple[bytes, dict[Any, Any]]] = []
    for _name, entries in streams:
        for entry in entries or []:
            entry_id, fields = entry[0], entry[1]
            out.append((bytes(entry_id), fields if isinstance(fields, dict) else dict(fields)))
    return out
