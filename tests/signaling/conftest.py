"""A real uvicorn server on loopback running a miniature signaling endpoint built from the real parts.

The production endpoint (Origin, tickets, dispatch) belongs to the app; this one wires only the codec, the
connection registry and the close-code rules, so the Python client and the wire can be tested end to end.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from vIOP.errors import RateLimited
from vIOP.ids import ParticipantId, RoomId
from vIOP.signaling import messages as m
from vIOP.signaling.codec import DecodeFailure, binary_frame_failure, decode_client, error_reply
from vIOP.signaling.connections import ConnectionLimits, ConnectionRegistry
from vIOP.signaling.ratelimit import InboundVerdict, MessageRateLimit

ORIGIN = "http://127.0.0.1:8443"
TICKET = "tk_valid-test-ticket"
ROOM = RoomId("rm_e2e")


@dataclass
class MiniServer:
    url: str  # with a valid ticket
    base: str
    registry: ConnectionRegistry


async def _signal(websocket: WebSocket) -> None:
    registry: ConnectionRegistry = websocket.app.state.registry
    if websocket.headers.get("origin") != ORIGIN or websocket.query_params.get("ticket") != TICKET:
        await websocket.close(m.CloseCode.POLICY_VIOLATION)  # before accept: the handshake gets HTTP 403
        return
    await websocket.accept()
    connection = registry.open(websocket, ROOM)
    joined = 0
    while connection.state.value == "open":  # bounded by the socket's life
        event = await websocket.receive()
        if event["type"] == "websocket.disconnect":
            connection.lost(event.get("code", 1006))
            break
        verdict = connection.accept_inbound()
        if verdict is not InboundVerdict.ACCEPT:
            connection.send(error_reply(RateLimited("too many messages")))
            if verdict is InboundVerdict.CLOSE:
                connection.close(m.CloseCode.POLICY_VIOLATION, "message flood")
            continue
        text = event.get("text")
        result = binary_frame_failure() if text is None else decode_client(text)
        if isinstance(result, DecodeFailure):
            connection.send(result.reply())
            if result.close_code is not None:
                connection.close(result.close_code)
            continue
        if isinstance(result, m.Join):
            joined += 1
            participant_id = ParticipantId(f"pt_e2e{id(connection)}")
            registry.attach(connection, participant_id)
            connection.send(
                m.Welcome(
                    protocol_version=m.PROTOCOL_VERSION,
                    participant_id=participant_id,
                    room_id=ROOM,
                    role=m.Role.CLIENT,
                    resume_token="rt_" + "Q" * 43,
                    resume_grace_seconds=60,
                    heartbeat_seconds=10,
                    ice_servers=(),
                    resumed=False,
                    id=result.id,
                )
            )
            registry.broadcast(
                ROOM, m.HandRaised(participant_id=participant_id, up=False), exclude=participant_id
            )
        elif isinstance(result, m.Ping):
            connection.send(m.Pong(id=result.id))
        elif isinstance(result, m.Offer):
            connection.send(m.ServerAnswer(sdp=result.sdp, id=result.id))
        elif isinstance(result, m.Leave):
            connection.close(m.CloseCode.NORMAL, "left")
    await connection.wait_closed()


@pytest.fixture
async def mini_server() -> AsyncIterator[MiniServer]:
    limits = ConnectionLimits(inbound=MessageRateLimit(per_second=20, burst=30, strikes=5))
    registry = ConnectionRegistry(limits)
    app = Starlette(routes=[WebSocketRoute("/ws/signal", _signal)])
    app.state.registry = registry
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=4 * m.MAX_FRAME_BYTES,  # larger than the codec cap, so the codec answers oversize frames
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):  # bounded wait for startup
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        base = f"ws://127.0.0.1:{port}/ws/signal"
        yield MiniServer(url=f"{base}?ticket={TICKET}", base=base, registry=registry)
    finally:
        await registry.close_all()
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()
