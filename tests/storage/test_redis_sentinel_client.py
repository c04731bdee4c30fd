"""The servers' Redis client over real sentinels (``redis_client(settings)``): passwords on the master and
on the sentinels, and the same client following a failover to the promoted replica."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from bench.harness import SentinelGroup
from vIOP.settings import load_settings
from vIOP.storage.redis_client import operator_redis, redis_client


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    sentinels = SentinelGroup(tmp_path, password="master-secret", sentinel_password="sentinel-secret")
    try:
        sentinels.start()
        yield sentinels
    finally:
        sentinels.stop()


async def test_the_client_follows_the_master_across_a_failover(group: SentinelGroup) -> None:
    settings = load_settings(environ={f"VIOP_{k.upper()}": v for k, v in group.settings().items()})
    client = redis_client(settings)
    try:
        await client.set("viop:test:before", b"1")
        old_master, replica = group.data_ports
        assert (await client.info("server"))["tcp_port"] == old_master
        # The write reached the replica before the master dies (here replication is what is tested).
        await client.wait(1, 5000)
        group.kill(old_master)
        deadline = time.monotonic() + 30
        port = None
        while time.monotonic() < deadline:  # bounded poll: the sentinels need ~1 s to agree, then promote
            try:
                port = (await client.info("server"))["tcp_port"]
                if port == replica:
                    break
            except (RedisError, OSError):
                pass
            await asyncio.sleep(0.1)
        assert port == replica
        assert await client.get("viop:test:before") == b"1"
        await client.set("viop:test:after", b"2")  # the promoted replica takes writes
        assert await client.get("viop:test:after") == b"2"
    finally:
        await client.aclose()


@pytest.mark.parametrize("wrong", ["redis_password", "redis_sentinel_password"])
async def test_a_wrong_password_is_an_error_not_a_hang(group: SentinelGroup, wrong: str) -> None:
    values = {**group.settings(), wrong: "not-the-password"}
    client = redis_client(load_settings(environ={f"VIOP_{k.upper()}": v for k, v in values.items()}))
    try:
        with pytest.raises(RedisError):
            await asyncio.wait_for(client.ping(), 10)
    finally:
        await client.aclose()


async def test_operator_commands_reach_the_sentinels_master(group: SentinelGroup, tmp_path: Path) -> None:
    values = {**group.settings(), "data_dir": str(tmp_path / "var")}
    settings = load_settings(environ={f"VIOP_{k.upper()}": v for k, v in values.items()})
    async with operator_redis(settings) as client:
        await client.set("viop:test:operator", b"1")
        assert (await client.info("server"))["tcp_port"] == group.data_ports[0]
    assert not (tmp_path / "var" / "redis").exists()  # no embedded Redis was started instead
