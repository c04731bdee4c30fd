from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from vIOP.errors import StartupError
from vIOP.storage.embedded_redis import EmbeddedRedis


def test_starts_on_unix_socket_with_aof_and_stops(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r")
    server.start()
    pid = server.pid
    assert pid is not None
    client = redis.Redis.from_url(server.url)
    client.set("k", "v")
    assert client.config_get("appendonly")["appendonly"] == "yes"
    client.close()
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_binary_is_a_clear_startup_error(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r", binary=str(tmp_path / "no-such-redis-server"))
    with pytest.raises(StartupError, match="cannot run redis-server"):
        server.start()


def test_unusable_folder_is_a_clear_startup_error(tmp_path: Path) -> None:
    # A plain file where the folder should be: fails even for root, unlike a chmod-ed folder.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    server = EmbeddedRedis(blocker / "inner")
    with pytest.raises(StartupError, match="cannot create the Redis folder"):
        server.start()
