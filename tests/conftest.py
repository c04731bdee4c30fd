"""Shared fixtures: a real redis-server per test session (never an in-process imitation of Redis)."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from vIOP.storage.embedded_redis import EmbeddedRedis

# aiortc decodes each receiver's media on a thread of its own, not a daemon, that ends when the receiver
# stops (its peer connection closes). One left running keeps the interpreter from exiting after the last
# test: a CI run printed its summary and hung until its time limit.
DECODER_THREADS = ("audio-decoder", "video-decoder")
DECODER_STOP_S = 5.0


def _decoder_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name in DECODER_THREADS and t.is_alive()}


@pytest.fixture(autouse=True)
def no_receiver_left_running() -> Iterator[None]:
    """Every aiortc peer connection a test opens is closed by its end (autouse: torn down after the
    test's own fixtures). A leak fails that test, and its threads are stopped so the run still ends."""
    before = _decoder_threads()
    yield
    deadline = time.monotonic() + DECODER_STOP_S
    leaked = _decoder_threads() - before
    for thread in leaked:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    leaked = {t for t in leaked if t.is_alive()}
    for thread in leaked:
        thread._args[1].put(None)  # type: ignore[attr-defined]  # decoder_worker(loop, input_q, ...): stop
    if leaked:
        pytest.fail(f"{len(leaked)} aiortc receiver(s) left running: a peer connection was not closed")


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
