"""Opening Redis: the servers' pooled client and the operator commands' short-lived one.

The one place outside :mod:`vIOP.app` that names the redis-py client type for the layers above
(``RedisClient``, ``RedisError``): they hold a client to hand to the stores here, and never send it
commands themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from vIOP.settings import Settings
from vIOP.storage.embedded_redis import EmbeddedRedis

RedisClient = aioredis.Redis

__all__ = ["RedisClient", "RedisError", "operator_redis", "redis_client"]


def redis_client(url: str) -> aioredis.Redis:
    """A blocking pool: at the limit a caller waits (up to 2 s) for a connection instead of failing at
    once (redis-py's default pool raised MaxConnectionsError past 100 under 1,000 sockets)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=256,
        timeout=2,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=15,
    )
    return aioredis.Redis.from_pool(pool)


@asynccontextmanager
async def operator_redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """The Redis the servers use: ``VIOP_REDIS_URL``, else the embedded one in the data folder (started
    here for a moment when no server is running, so what a command writes is there when one starts)."""
    embedded = EmbeddedRedis(settings.data_dir / "redis") if settings.redis_url is None else None
    url = settings.redis_url or (embedded.url if embedded is not None else "")
    client = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    started = False
    try:
        try:
            await client.ping()
        except (RedisError, OSError):
            if embedded is None:
                raise
            await client.aclose()
            await embedded.astart()
            started = True
            client = aioredis.from_url(embedded.url, socket_connect_timeout=2, socket_timeout=5)
        yield client
    finally:
        await client.aclose()
        if started and embedded is not None:
            await embedded.astop()
