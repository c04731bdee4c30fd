"""Shared fixtures: a real redis-server per test session (never an in-process imitation of Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from vIOP.storage.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
async def redis_client(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    """A client on a freshly flushed database: each test starts from an empty Redis."""
    client = aioredis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.flushall()
    await client.aclose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


from tests.support import LiveServer, run_live_server, test_settings  # noqa: E402


@pytest.fixture
def live_server_factory(data_dir: Path, redis_url: str, redis_client: aioredis.Redis) -> Callable[..., Any]:
    """``async with live_server_factory(**setting_overrides) as live: ...`` (``clock=``: the server's
    injected clock, epoch seconds)."""

    def factory(clock: Callable[[], float] | None = None, **overrides: Any) -> Any:
        return run_live_server(test_settings(data_dir, redis_url, **overrides), clock=clock)

    return factory


@pytest.fixture
async def live_server(live_server_factory: Callable[..., Any]) -> AsyncIterator[LiveServer]:
    async with live_server_factory() as live:
        yield live
