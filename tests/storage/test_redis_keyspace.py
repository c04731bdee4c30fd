"""The keyspace a whole session writes, read from a real redis-server: every key of a room carries the
room's hash tag, and no script, transaction or multi-key command touches two rooms (docs/REDIS_HA.md,
"Keyspace").

A real ``vIOP serve`` process runs a session (sign-ins, tickets, knocks, admissions, heartbeats, a lobby
message, a leave, a room ended) against a redis-server on a loopback TCP port, while Redis's own
``MONITOR`` records every command each connection sent. Which arguments of a command are keys is asked of
the server (``COMMAND GETKEYS``), and slots are computed with redis-py's ``key_slot``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from bench.fault_world import Shape, accounts, open_world
from bench.harness import ServerProcess, free_port, wait_until
from vIOP.signaling import messages as m
from vIOP.storage.embedded_redis import find_redis_server

_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_LINE = re.compile(rb"^[\d.]+ \[\d+ ([^\]]+)\] (.*)$")
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b", b'"': b'"', b"\\": b"\\"}
# The one room transaction writes its room and these shared indexes together; they are named in
# docs/REDIS_HA.md with what running on Redis Cluster would still need.
SHARED_ROOM_INDEXES = {b"viop:rooms", b"viop:presence", b"viop:reconnecting", b"viop:events"}


def _unquote(quoted: bytes) -> bytes:
    """One MONITOR argument (written by Redis's sdscatrepr) back to its bytes."""
    out, i = bytearray(), 0
    while i < len(quoted):
        if quoted[i : i + 1] == b"\\":
            nxt = quoted[i + 1 : i + 2]
            if nxt == b"x":
                out += bytes([int(quoted[i + 2 : i + 4], 16)])
                i += 4
                continue
            out += _ESCAPES.get(nxt, nxt)
            i += 2
            continue
        out += quoted[i : i + 1]
        i += 1
    return bytes(out)


@dataclass(frozen=True)
class Command:
    client: bytes  # "127.0.0.1:PORT" of the connection, or "lua" for a script's own calls
    args: tuple[bytes, ...]

    @property
    def name(self) -> str:
        return self.args[0].decode().upper()


@pytest.fixture
def tcp_redis(tmp_path: Path) -> Iterator[int]:
    """A redis-server on a loopback TCP port (MONITOR tells connections apart by their port)."""
    port = free_port()
    process = subprocess.Popen(
        [
            find_redis_server(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: _pings(port), timeout=10), "redis-server did not start"
        yield port
    finally:
        process.kill()
        process.wait()


def _pings(port: int) -> bool:
    import redis

    with contextlib.suppress(redis.RedisError), redis.Redis(port=port, socket_timeout=1) as client:
        return bool(client.ping())
    return False


@contextlib.asynccontextmanager
async def monitored(port: int) -> AsyncIterator[list[Command]]:
    """Every command the server executes while inside, in order."""
    client = aioredis.Redis(port=port)
    connection = await client.connection_pool.get_connection()
    await connection.send_command("MONITOR")
    assert await connection.read_response() in (b"OK", "OK")
    seen: list[Command] = []

    async def record() -> None:
        while True:
            line = await connection.read_response(disable_decoding=True)
            found = _LINE.match(line)
            if found:
                who, rest = found.groups()
                seen.append(Command(who, tuple(_unquote(a) for a in _ARG.findall(rest))))

    task = asyncio.create_task(record())
    try:
        yield seen
    finally:
        await asyncio.sleep(0.5)  # the last lines are on their way
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await connection.disconnect()
        await client.aclose()


async def _keys(client: aioredis.Redis, command: Command) -> list[bytes]:
    """The command's keys, as the server itself reads them (none for keyless commands)."""
    if command.name in ("MULTI", "EXEC", "DISCARD", "UNWATCH"):
        return []
    try:
        found = await client.command_getkeys(*command.args)
    except aioredis.ResponseError:  # "The command has no key arguments" (PING, INFO, SCRIPT ...)
        return []
    return [k if isinstance(k, bytes) else str(k).encode() for k in found]


async def _run_session(port: int, tmp: Path) -> list[str]:
    shape = Shape(rooms=2, seated=2, waiting=2, media=False)
    server = ServerProcess(
        tmp / "var",
        redis_url=f"redis://127.0.0.1:{port}/0",
        settings={"heartbeat_seconds": "2", "presence_expiry_seconds": "6"},
    )
    server.create_accounts(accounts(shape))
    server.start()
    try:
        world = await open_world(server, shape)
        try:
            first, second = world.rooms
            waiting = first.waiting[0]
            await first.host.client.send(
                m.LobbyMessage(participant_id=waiting.participant_id, message="soon")
            )
            await waiting.client.wait_message(m.Waiting, within=10, where=lambda w: w.message == "soon")
            await first.host.client.send(m.Admit(participant_id=waiting.participant_id))
            await waiting.client.wait_message(m.Admitted, within=10)
            await first.seated[0].stop(leave=True)
            # A heartbeat of everyone still there (written at most once per interval: poll, bounded).
            since = time.monotonic()
            staying = [p for p in world.people if p is not first.seated[0]]
            assert await asyncio.to_thread(
                wait_until, lambda: all(p.first_ok_beat_after(since + 1.1) for p in staying), 15
            )
            await second.host.client.send(m.End())
            await second.seated[0].client.wait_message(m.RoomEnded, within=10)
            return [r.room_id for r in world.rooms]
        finally:
            await world.stop()
    finally:
        server.stop()


def _room_of(key: bytes, rooms: list[str]) -> str | None:
    text = key.decode(errors="replace")
    return next((r for r in rooms if r in text), None)


def _tag(key: bytes) -> bytes | None:
    start = key.find(b"{")
    end = key.find(b"}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else None


async def test_every_room_key_carries_its_rooms_tag_and_nothing_spans_two_rooms(
    tcp_redis: int, tmp_path: Path
) -> None:
    async with monitored(tcp_redis) as commands:
        rooms = await _run_session(tcp_redis, tmp_path)
    client = aioredis.Redis(port=tcp_redis)
    try:
        stored = [k async for k in client.scan_iter(count=1000)]
        # Each command once, with its keys; MULTI..EXEC blocks and scripts as groups.
        groups: list[tuple[str, list[bytes]]] = []
        open_blocks: dict[bytes, list[bytes]] = {}
        written: set[bytes] = set(stored)
        for command in commands:
            if command.client == b"lua":
                continue  # a script's own calls: its KEYS are on its EVAL line
            keys = await _keys(client, command)
            written.update(keys)
            if command.name == "MULTI":
                open_blocks[command.client] = []
            elif command.name == "EXEC":
                groups.append(("MULTI/EXEC", open_blocks.pop(command.client, [])))
            elif command.client in open_blocks:
                open_blocks[command.client] += keys
            elif command.name in ("EVAL", "EVALSHA") or len(set(keys)) > 1:
                groups.append((command.name, keys))
    finally:
        await client.aclose()

    assert len(commands) > 200 and any(name == "MULTI/EXEC" for name, _ in groups)  # the session ran
    room_keys = {k for k in written if _room_of(k, rooms)}
    assert {_room_of(k, rooms) for k in room_keys} == set(rooms)
    # One hash tag per room: every key naming a room hashes on exactly that room's id.
    untagged = sorted(k for k in room_keys if _tag(k) != _room_of(k, rooms).encode())  # type: ignore[union-attr]
    assert untagged == []
    for name, keys in groups:
        touched = {_room_of(k, rooms) for k in keys} - {None}
        assert len(touched) <= 1, (name, keys)  # no multi-room script, transaction or command
        own = {k for k in keys if _room_of(k, rooms)}
        assert len({key_slot(k) for k in own}) <= 1, (name, keys)  # a room's keys share its slot
        if name in ("EVAL", "EVALSHA") and own:
            assert len({key_slot(k) for k in keys}) == 1, (name, keys)  # a room's scripts: one slot
        # Besides its room, a room's transaction touches only the named shared indexes.
        if own:
            assert set(keys) - own <= SHARED_ROOM_INDEXES, (name, keys)
