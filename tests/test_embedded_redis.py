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


def test_redis_data_files_are_private(tmp_path: Path) -> None:
    """Issue 11, finding 7: AOF/RDB files were 0644. Now the folder is 0700 and every file 0600, also files
    an older version left behind."""
    folder = tmp_path / "r"
    folder.mkdir(mode=0o755)
    old_dump = folder / "dump.rdb"
    old_dump.write_bytes(b"")
    old_dump.chmod(0o644)
    server = EmbeddedRedis(folder)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        client.save()  # an RDB file too
        client.bgrewriteaof()
        client.close()
    finally:
        server.stop()
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_socket()]
    assert any("aof" in p.name for p in files)
    modes = {p.relative_to(folder).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {"0o600"}, modes
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
