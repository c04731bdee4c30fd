"""Opening Redis: the servers' pooled client and the operator commands' short-lived one.

The one place that builds a redis-py client, and the one place outside :mod:`vIOP.app` that names the
client type for the layers above (``RedisClient``, ``RedisError``): they hold a client to hand to the stores
here, and never send it commands themselves.

Redis is reached one of three ways (``vIOP.settings``): ``VIOP_REDIS_URL``; Redis Sentinel
(``VIOP_REDIS_SENTINELS`` + ``VIOP_REDIS_SENTINEL_MASTER``), where every new connection asks the sentinels
for the current master, so after a failover the client reconnects to the promoted replica by itself; or,
with neither, the embedded redis-server in the data folder.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError

from vIOP.settings import Settings, split_host_port
from vIOP.storage.embedded_redis import EmbeddedRedis

RedisClient = aioredis.Redis

__all__ = ["RedisClient", "RedisError", "operator_redis", "redis_client"]

_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 5}
# A blocking pool: at the limit a caller waits (up to 2 s) for a connection instead of failing at once
# (redis-py's default pool raised MaxConnectionsError past 100 under 1,000 sockets).
_POOL: dict[str, Any] = {"max_connections": 256, "timeout": 2, "health_check_interval": 15, **_TIMEOUTS}


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's master-following connections in the blocking pool the servers use."""


class _SentinelMaster(aioredis.Redis):
    """The master's client; closing it also closes its connections to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if isinstance(manager, Sentinel):
            await manager.aclose()


def redis_client(
    settings: Settings, embedded_url: str | None = None, *, pooled: bool = True
) -> aioredis.Redis:
    """The client for the configured Redis: the sentinels' current master, else ``VIOP_REDIS_URL``, else
    ``embedded_url`` (the embedded server's socket). ``pooled``: the servers' blocking pool; without it a
    plain client for a short-lived command."""
    if settings.redis_sentinels:
        assert settings.redis_sentinel_master is not None  # settings check this
        sentinel = Sentinel(
            [split_host_port(address) for address in settings.redis_sentinels],
            sentinel_kwargs={"password": settings.redis_sentinel_password, **_TIMEOUTS},
        )
        return sentinel.master_for(  # type: ignore[no-any-return]
            settings.redis_sentinel_master,
            redis_class=_SentinelMaster,
            connection_pool_class=_BlockingSentinelPool if pooled else SentinelConnectionPool,
            password=settings.redis_password,
            **(_POOL if pooled else _TIMEOUTS),
        )
    url = settings.redis_url or embedded_url
    if url is None:
        raise ValueError("no Redis configured and no embedded Redis running")
    if not pooled:
        return aioredis.from_url(url, **_TIMEOUTS)
    return aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(url, **_POOL))


@asynccontextmanager
async def operator_redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """The Redis the servers use: ``VIOP_REDIS_URL`` or the sentinels' master, else the embedded one in the
    data folder (started here for a moment when no server is running, so what a command writes is there
    when one starts)."""
    embedded = EmbeddedRedis(settings.data_dir / "redis") if settings.embedded_redis else None
    client = redis_client(settings, embedded.url if embedded is not None else None, pooled=False)
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
            client = redis_client(settings, embedded.url, pooled=False)
        yield client
    finally:
        await client.aclose()
        if started and embedded is not None:
            await embedded.astop()
