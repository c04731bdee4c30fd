"""Slow-loris and oversized-input clients, over raw sockets: the server drops them within a bounded time and
keeps serving everyone else (a bystander pair pings throughout; plain HTTP keeps answering).

The server runs exactly as ``serve`` configures uvicorn (vIOP/server.py ``uvicorn_config``), with the
request deadline shortened from 10 s to 1.5 s and the heartbeat from 10 s to 1 s so the test stays short.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from tests.api import signal_support as ss
from tests.hostile.raw import RawConnection, read_ws_frame, upgrade_request, ws_frame
from tests.hostile.seats import TRANSPORT_MAX_BYTES, Bystanders
from tests.hostile.support import ServerLogs, captured_server_logs
from tests.support import LiveServer, run_live_server, test_settings
from vIOP.auth.tickets import TicketPurpose
from vIOP.http_protocol import MAX_HEADER_BYTES

DEADLINE = 1.5
HEARTBEAT = 1  # presence expiry 3 s: a silent socket is closed after 3 s (+ one sweep, at most 0.5 s)
SLACK = 5.0  # a busy shared machine
SLOW_CLIENTS = 40


@pytest.fixture
async def live(
    data_dir, redis_url, redis_client: aioredis.Redis
) -> AsyncIterator[tuple[LiveServer, ServerLogs]]:
    settings = test_settings(data_dir, redis_url, heartbeat_seconds=HEARTBEAT, presence_expiry_seconds=3)
    with captured_server_logs() as logs:
        async with run_live_server(settings, request_deadline=DEADLINE) as server:
            yield server, logs
    assert logs.faults() == [], logs.faults()[:10]


async def http_keeps_answering(base_url: str, stop: asyncio.Event, worst: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        while not stop.is_set():
            started = time.perf_counter()
            response = await http.get("/healthz")
            assert response.status_code == 200
            worst.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)


async def drip(conn: RawConnection, first: bytes, every: float = 0.2) -> None:
    """Send ``first``, then one more header byte every ``every`` seconds, until the server closes."""
    if not await conn.send(first):
        return
    while await conn.send(b"X"):
        await asyncio.sleep(every)


async def test_slow_loris_http_clients_are_dropped_and_others_are_served(
    live: tuple[LiveServer, ServerLogs],
) -> None:
    server, _ = live
    port = server.settings.port
    bystanders = await Bystanders.start(server)
    stop, latencies = asyncio.Event(), []
    answering = asyncio.create_task(http_keeps_answering(server.base_url, stop, latencies))
    conns = [await RawConnection.open(port) for _ in range(SLOW_CLIENTS)]
    silent = await RawConnection.open(port)  # connects and never sends a byte
    half_body = await RawConnection.open(port)
    started = time.monotonic()
    drippers = [
        asyncio.create_task(drip(c, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")) for c in conns
    ]
    await half_body.send(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 200\r\n\r\n{"username": "a'
    )
    try:
        outcomes = await asyncio.gather(
            *(c.closed_by_server(DEADLINE + SLACK) for c in [*conns, silent, half_body])
        )
    finally:
        stop.set()
        await asyncio.gather(answering, *drippers, return_exceptions=True)
        for c in [*conns, silent, half_body]:
            await c.close()
    took = time.monotonic() - started
    problems = await bystanders.finish()
    print(f"slow-loris: {SLOW_CLIENTS + 2} slow clients dropped within {took:.2f} s; {bystanders.summary()}")
    # Header drippers and the silent one get a 408; the half-sent body is simply closed.
    for _seconds, received in outcomes[:-1]:
        assert received.startswith(b"HTTP/1.1 408 "), received[:80]
    assert outcomes[-1][1] == b""
    assert max(seconds for seconds, _ in outcomes) < DEADLINE + SLACK
    assert problems == []
    assert answering.exception() is None
    assert latencies and max(latencies) < SLACK


async def test_header_bomb_gets_431_after_the_cap_not_the_whole_stream(
    live: tuple[LiveServer, ServerLogs],
) -> None:
    server, _ = live
    conn = await RawConnection.open(server.settings.port)
    await conn.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bomb: ")
    sent, chunk = 0, 16 * 1024
    received = b""
    for _ in range(1024):  # up to 16 MiB, but the server answers once it has read past its cap
        if not await conn.send(b"a" * chunk):
            break
        sent += chunk
        with contextlib.suppress(TimeoutError):
            # Give the server the time to read what was sent, so its close is a FIN, not a reset.
            received = await asyncio.wait_for(conn.reader.read(65536), 0.02)
            break
    _, rest = await conn.closed_by_server(10)
    await conn.close()
    received += rest
    assert received.startswith(b"HTTP/1.1 431 "), received[:100]
    assert b'"headers_too_large"' in received
    assert MAX_HEADER_BYTES <= sent <= MAX_HEADER_BYTES + 4 * chunk  # refused right after the cap
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_a_legitimate_request_with_body_and_keep_alive_is_untouched(
    live: tuple[LiveServer, ServerLogs],
) -> None:
    server, _ = live
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for _ in range(3):  # the same kept-alive connection, across the deadline
            response = await http.post(
                "/api/v1/auth/login", json={"username": "nobody", "password": "x" * 1000}
            )
            assert response.status_code in (401, 429)
            await asyncio.sleep(DEADLINE / 2)


async def signal_url(server: LiveServer) -> str:
    host = await ss.clinician(server, f"dr.slow.{secrets.token_hex(4)}")
    scope = await ss.room(server, host)
    issued = await ss.services(server).tickets.issue(
        host.principal, TicketPurpose.SIGNAL, scope, session=host.session
    )
    return f"/ws/signal?ticket={issued.ticket}"


async def test_unfinished_websocket_handshake_is_dropped(live: tuple[LiveServer, ServerLogs]) -> None:
    server, _ = live
    conn = await RawConnection.open(server.settings.port)
    request = upgrade_request(await signal_url(server), server.base_url)
    await conn.send(request[: len(request) // 2])  # half of the upgrade request, then nothing
    seconds, received = await conn.closed_by_server(DEADLINE + SLACK)
    await conn.close()
    assert received.startswith(b"HTTP/1.1 408 ")
    assert seconds < DEADLINE + SLACK


async def open_joined_socket(server: LiveServer) -> RawConnection:
    conn = await RawConnection.open(server.settings.port)
    await conn.send(upgrade_request(await signal_url(server), server.base_url))
    assert (await conn.read_http_head()).startswith(b"HTTP/1.1 101 ")
    await conn.send(ws_frame(b'{"type": "join", "id": 1}'))
    opcode, payload = await read_ws_frame(conn)
    assert opcode == 0x1 and b'"welcome"' in payload
    return conn


async def test_never_finished_frame_is_dropped_by_the_heartbeat_timeout(
    live: tuple[LiveServer, ServerLogs],
) -> None:
    server, _ = live
    bystanders = await Bystanders.start(server)
    conn = await open_joined_socket(server)
    # A frame header promising 60,000 bytes, then 100 of them, then silence.
    await conn.send(ws_frame(b"x" * 100, declared=60_000)[: 2 + 2 + 4 + 100])
    # Silent past the heartbeat timeout (3 s here, 30 s by default), the next sweep (<= 0.5 s) closes it
    # 1001; the client never answers the close, so the server gives up on the handshake after 10 s.
    limit = 3 + 0.5 + 10 + SLACK
    seconds, _ = await conn.closed_by_server(limit)
    await conn.close()
    problems = await bystanders.finish()
    print(f"never-finished frame dropped after {seconds:.1f} s; {bystanders.summary()}")
    assert seconds < limit
    assert problems == []


@pytest.mark.parametrize("declared", [70 * 1024, 200 * 1024, 2**62])
async def test_oversized_frames_close_1009_and_others_keep_going(
    live: tuple[LiveServer, ServerLogs], declared: int
) -> None:
    server, _ = live
    bystanders = await Bystanders.start(server)
    conns = [await open_joined_socket(server) for _ in range(5)]
    for conn in conns:
        if declared <= 200 * 1024:
            payload = b'{"type": "ping", "pad": "' + b"x" * (declared - 27) + b'"}'
            await conn.send(ws_frame(payload))
        else:  # a header promising 4 EiB: refused on the header alone
            await conn.send(ws_frame(b"", declared=declared))
    for conn in conns:
        frames = []
        try:
            while True:
                opcode, payload = await read_ws_frame(conn)
                frames.append((opcode, payload))
                if opcode == 0x8:
                    break
        except (ConnectionResetError, asyncio.IncompleteReadError):
            # Over uvicorn's own limit it closes with our bytes still unread: the kernel may turn that
            # close into a reset, and the 1009 frame is lost on the way (PROTOCOL.md, "Limits").
            assert declared > TRANSPORT_MAX_BYTES, frames
        else:
            assert int.from_bytes(frames[-1][1][:2], "big") == 1009, frames
        if declared <= TRANSPORT_MAX_BYTES:  # the codec saw it: the documented error came first
            assert any(b'"frame_too_large"' in p for op, p in frames if op == 0x1), frames
        await conn.close()
    problems = await bystanders.finish()
    assert problems == []
