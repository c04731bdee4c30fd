"""Signaling between a socket's node and a room's media node, on Redis pub/sub, sealed.

Each node subscribes to its own channel ``{p}:media-signal:<node id>``; a node that needs another node's
relay (an ``offer`` for a room whose media is there) publishes to that node's channel, and the media node
publishes the replies (answers, server offers, media events) to the socket node's channel. The payload is
opaque here (the session layer encodes it); the seal (AES-256-GCM, the key ring's Redis key, context = the
channel name) covers all of it, so SDP, display names or ids never appear in Redis in plaintext.

Pub/sub, not a stream: these messages matter only while both sockets are live, and Redis keeps nothing. A
node that is not subscribed at that moment misses the message; the socket node answers an ``offer`` that
got no reply within its timeout with ``unavailable`` and the client retries (docs/SCALING.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from vIOP.storage.sealing import DecryptionError, Sealer

log = logging.getLogger(__name__)

_LOST_CONNECTION = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class RedisMediaSignalChannel:
    """This node's inbox and every other node's outbox for media signaling."""

    def __init__(
        self,
        client: aioredis.Redis,
        sealer: Sealer,
        node_id: str,
        *,
        prefix: str = "viop",
        retry_cap: float = 1.0,
    ) -> None:
        self.client = client
        self.sealer = sealer
        self.node_id = node_id
        self.prefix = prefix
        self.retry_cap = retry_cap
        self.subscribed = asyncio.Event()  # set once this node's channel is subscribed (tests, start-up)
        self.skipped = 0  # messages that failed to unseal (logged by count, never by content)

    def channel(self, node_id: str) -> str:
        return f"{self.prefix}:media-signal:{node_id}"

    async def publish(self, node_id: str, payload: bytes) -> int:
        """Send ``payload`` to ``node_id``; returns how many subscribers got it (0: that node is not
        listening, so nobody will answer)."""
        channel = self.channel(node_id)
        receivers = await self.client.publish(channel, self.sealer.seal(payload, channel.encode()))
        return int(receivers)

    async def listening(self, node_ids: list[str]) -> set[str]:
        """Which of ``node_ids`` have their inbox subscribed now (one PUBSUB NUMSUB for all)."""
        if not node_ids:
            return set()
        counts = await self.client.pubsub_numsub(*(self.channel(node_id) for node_id in node_ids))
        prefix = len(self.channel(""))
        return {_channel_text(channel)[prefix:] for channel, count in counts if int(count) > 0}

    async def inbox(self) -> AsyncIterator[bytes]:
        """Every payload sent to this node, unsealed, for the life of the caller; resubscribes by itself
        after a lost connection (a Redis restart or failover)."""
        channel = self.channel(self.node_id)
        context = channel.encode()
        backoff = 0.05
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(channel)
                    self.subscribed.set()
                    backoff = 0.05
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is None or message.get("type") != "message":
                            continue
                        data = message.get("data")
                        try:
                            if not isinstance(data, bytes):
                                raise ValueError("media signal without bytes")
                            payload = self.sealer.unseal(data, context)
                        except (DecryptionError, ValueError) as exc:
                            self.skipped += 1
                            log.warning("skipped a media signal: %s", type(exc).__name__)
                            continue
                        yield payload
            except _LOST_CONNECTION:
                self.subscribed.clear()
                log.warning("media signal channel unavailable; resubscribing")
                await asyncio.sleep(backoff)
                backoff = min(self.retry_cap, backoff * 2)


def _channel_text(channel: bytes | str) -> str:
    return channel.decode() if isinstance(channel, bytes) else channel
