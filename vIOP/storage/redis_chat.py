"""Chat lines between processes on Redis pub/sub, sealed: a line is never in Redis in plaintext.

Pub/sub, not the room event stream: a stream keeps its entries (up to its length cap, long after the room
ended), and chat is delivered live and kept nowhere. Each line is one ``PUBLISH {p}:chat <sealed>``; the
seal (AES-256-GCM, the key ring's Redis key that also seals the room records; context = the channel name)
covers everything, so ``MONITOR`` or a captured connection shows only ciphertext. Redis keeps nothing: a
process that is not subscribed at that moment (restarting, Redis away) misses the line, and the sender
gets no delivery guarantee beyond "published".

The room's record (issue 15: a host may save the transcript to the session record on purpose): before it
is published, each line is also appended to the room's list ``{p}:room:{{room}}:chat`` (one MULTI: RPUSH,
LTRIM to the newest ``CHAT_RECORD_LINES``, EXPIRE ``CHAT_RECORD_TTL_SECONDS``), sealed to that key's name.
The room's end deletes the list in the transaction that ends the room (``vIOP.storage.redis_rooms``); the
TTL only bounds a line that raced the end. Every kind of line is kept: room chat, and private and lobby
lines between a client and the hosts (part of the clinical record); client-to-client private chat does
not exist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from vIOP.ids import RoomId
from vIOP.rooms import limits
from vIOP.rooms.chat import ChatLine
from vIOP.storage.redis_rooms import RedisKeys
from vIOP.storage.sealing import DecryptionError, Sealer

log = logging.getLogger(__name__)

_LOST_CONNECTION = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class RedisChatBus:
    def __init__(
        self, client: aioredis.Redis, sealer: Sealer, *, prefix: str = "viop", retry_cap: float = 1.0
    ):
        self.client = client
        self.sealer = sealer
        self.channel = f"{prefix}:chat"
        self.keys = RedisKeys(prefix)
        self.retry_cap = retry_cap
        self.skipped = 0  # lines that failed to unseal or decode (logged by count, never by content)

    def seal(self, line: ChatLine) -> bytes:
        return self.sealer.seal(msgspec.json.encode(line), self.channel.encode())

    def open(self, blob: bytes) -> ChatLine:
        return msgspec.json.decode(self.sealer.unseal(blob, self.channel.encode()), type=ChatLine)

    async def publish(self, line: ChatLine) -> None:
        await self._record(line)
        await self.client.publish(self.channel, self.seal(line))

    async def _record(self, line: ChatLine) -> None:
        key = self.keys.chat(line.room_id)
        sealed = self.sealer.seal(msgspec.json.encode(line), key.encode())
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, sealed)
            pipe.ltrim(key, -limits.CHAT_RECORD_LINES, -1)
            pipe.expire(key, limits.CHAT_RECORD_TTL_SECONDS)
            await pipe.execute()

    async def transcript(self, room_id: RoomId) -> list[ChatLine]:
        """The room's kept lines, oldest first (empty: none, or the room has ended)."""
        key = self.keys.chat(room_id)
        blobs = await self.client.lrange(key, 0, -1)
        return [
            msgspec.json.decode(
                self.sealer.unseal(blob if isinstance(blob, bytes) else blob.encode(), key.encode()),
                type=ChatLine,
            )
            for blob in blobs
        ]

    async def lines(self) -> AsyncIterator[ChatLine]:
        backoff = 0.05
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    backoff = 0.05
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is None or message.get("type") != "message":
                            continue
                        data = message.get("data")
                        try:
                            if not isinstance(data, bytes):
                                raise ValueError("chat message without bytes")
                            line = self.open(data)
                        except (
                            DecryptionError,
                            ValueError,
                            msgspec.DecodeError,
                            msgspec.ValidationError,
                        ) as exc:
                            self.skipped += 1
                            log.warning("skipped a chat line: %s", type(exc).__name__)
                            continue
                        yield line
            except _LOST_CONNECTION:
                log.warning("chat bus unavailable; resubscribing")
                await asyncio.sleep(backoff)
                backoff = min(self.retry_cap, backoff * 2)
