"""Chat lines between processes on Redis pub/sub, sealed: a line is never in Redis in plaintext.

Pub/sub, not the room event stream: a stream keeps its entries (up to its length cap, long after the room
ended), and chat is delivered live and kept nowhere. Each line is one ``PUBLISH {p}:chat <sealed>``; the
seal (AES-256-GCM, the key ring's Redis key that also seals the room records; context = the channel name)
covers everything, so ``MONITOR`` or a captured connection shows only ciphertext. Redis keeps nothing: a
process that is not subscribed at that moment (restarting, Redis away) misses the line, and the sender
gets no delivery guarantee beyond "published".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from vIOP.rooms.chat import ChatLine
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
        self.retry_cap = retry_cap
        self.skipped = 0  # lines that failed to unseal or decode (logged by count, never by content)

    def seal(self, line: ChatLine) -> bytes:
        return self.sealer.seal(msgspec.json.encode(line), self.channel.encode())

    def open(self, blob: bytes) -> ChatLine:
        return msgspec.json.decode(self.sealer.unseal(blob, self.channel.encode()), type=ChatLine)

    async def publish(self, line: ChatLine) -> None:
        await self.client.publish(self.channel, self.seal(line))

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
