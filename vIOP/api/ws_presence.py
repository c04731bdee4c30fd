"""``WS /ws/presence``: the edge of the live presence stream (:mod:`vIOP.session.presence` holds its logic).

Admits the socket with a presence ticket, registers the stream, pumps the viewer's frames into it and
closes the socket with the code the stream chose.
"""

from __future__ import annotations

import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect

from vIOP import metrics
from vIOP.api.ws_guard import admit_socket, client_ip
from vIOP.auth.tickets import TicketPurpose
from vIOP.session.presence import PresenceStream
from vIOP.session.services import Services


async def _pump(websocket: WebSocket, stream: PresenceStream) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect" or not await stream.on_text(message.get("text")):
            return


async def presence_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    grant = await admit_socket(websocket, services, TicketPurpose.PRESENCE, "presence")
    if grant is None:
        return
    await websocket.accept()
    metrics.WS_CONNECTIONS.labels("presence").inc()
    metrics.WS_ACTIVE.labels("presence").inc()
    stream = PresenceStream(
        services, websocket, grant, ip=client_ip(websocket), user_agent=websocket.headers.get("user-agent")
    )
    streams = services.live.presence_streams
    streams.add(stream)
    try:
        await stream.open()
        await stream.serve(_pump(websocket, stream))
    except WebSocketDisconnect:
        pass
    finally:
        streams.discard(stream)
        with contextlib.suppress(Exception):
            await websocket.close(stream.close_code or 1000, stream.close_reason or None)
        metrics.WS_ACTIVE.labels("presence").dec()
