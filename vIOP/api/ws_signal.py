"""``WS /ws/signal``: the Starlette edge of one participant's signaling socket in one room.

The endpoint admits the socket (``ws_guard``) and pumps its frames: each is rate-limited and decoded here,
then handed to the application's :class:`~vIOP.session.signal.SignalSession` in one call, which does what
the message means (docs/PROTOCOL.md).
"""

from __future__ import annotations

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from vIOP import metrics
from vIOP.api.ws_guard import admit_socket, client_ip
from vIOP.auth.tickets import TicketPurpose
from vIOP.errors import NotFound
from vIOP.session.services import Services
from vIOP.session.signal import SignalSession
from vIOP.signaling import messages as m
from vIOP.signaling.codec import DecodeFailure, binary_frame_failure, decode_client
from vIOP.signaling.connections import Connection, ConnectionState
from vIOP.signaling.ratelimit import InboundVerdict


async def signal_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    grant = await admit_socket(websocket, services, TicketPurpose.SIGNAL, "signal")
    if grant is None:
        return
    if grant.room_id is None:
        await websocket.close(1008)
        return
    try:
        scope = await services.room_directory.room_scope(grant.room_id)
    except NotFound:
        await websocket.close(1008)
        return
    await websocket.accept()
    metrics.WS_CONNECTIONS.labels("signal").inc()
    metrics.WS_ACTIVE.labels("signal").inc()
    try:
        conn = services.connections.open(websocket, scope.room_id)
        ip, user_agent = client_ip(websocket), websocket.headers.get("user-agent")
        session = SignalSession(services, conn, grant, scope, ip=ip, user_agent=user_agent)
        session.start()
        try:
            await _receive_loop(websocket, conn, session)
        finally:
            await session.close()
    finally:
        metrics.WS_ACTIVE.labels("signal").dec()


async def _receive_loop(websocket: WebSocket, conn: Connection, session: SignalSession) -> None:
    """The hot path: one plain await per frame. Once the server has closed the socket (leave, removal, the
    room's end, the join deadline), the ASGI server answers the next receive with a disconnect."""
    try:
        while conn.state is ConnectionState.OPEN:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                conn.lost(int(message.get("code", 1006)))
                return
            await _on_frame(conn, session, message)
    except WebSocketDisconnect as exc:
        conn.lost(exc.code)


async def _on_frame(conn: Connection, session: SignalSession, message: Message) -> None:
    verdict = conn.accept_inbound()
    if verdict is InboundVerdict.CLOSE:
        conn.send(m.ErrorMessage(code="rate_limited", message="too many messages"))
        conn.close(m.CloseCode.POLICY_VIOLATION, "message flood")
        return
    if verdict is InboundVerdict.REJECT:
        conn.send(m.ErrorMessage(code="rate_limited", message="too many messages; slow down"))
        return
    text = message.get("text")
    decoded = decode_client(text) if text is not None else binary_frame_failure()
    if isinstance(decoded, DecodeFailure):
        conn.send(decoded.reply())
        if decoded.close_code is not None:
            conn.close(decoded.close_code, decoded.error.code)
        return
    await session.handle(decoded)
