"""The gate in front of every WebSocket: Origin allowlist, then a single-use ticket, both before accept.

Starlette's CORS middleware passes WebSocket scopes through untouched, so the Origin check is ours. A
refusal closes the handshake with 1008 (uvicorn answers the upgrade with 403); nothing about the reason is
disclosed to the client, the audit log and metrics get it. A node shutting down answers 503 instead, so a
proxy can send the same upgrade to another node.
"""

from __future__ import annotations

import logging

from starlette.responses import Response
from starlette.websockets import WebSocket

from vIOP import metrics
from vIOP.auth.tickets import TicketGrant, TicketPurpose, TicketRejected
from vIOP.errors import error_body
from vIOP.session.services import Services
from vIOP.storage.audit import AuditEvent, Outcome

log = logging.getLogger("vIOP.ws")

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


def origin_allowed(websocket: WebSocket, allowed: tuple[str, ...]) -> bool:
    origin = websocket.headers.get("origin")
    return origin is not None and origin.rstrip("/") in allowed


async def refuse_while_draining(websocket: WebSocket) -> None:
    """Answer the upgrade with HTTP 503 and the API's error body: a proxy in front of several nodes (nginx's
    ``proxy_next_upstream http_503``) then tries another node with the same request, ticket unspent. A
    server without the ASGI denial-response extension closes the handshake instead (the client retries)."""
    if "websocket.http.response" not in websocket.scope.get("extensions", {}):
        await websocket.close(TRY_AGAIN_LATER)
        return
    body = error_body("unavailable", "this node is shutting down: retry")
    await websocket.send_denial_response(Response(body, status_code=503, media_type="application/json"))


def client_ip(websocket: WebSocket) -> str | None:
    return websocket.client.host if websocket.client else None


async def admit_socket(
    websocket: WebSocket, services: Services, purpose: TicketPurpose, endpoint: str
) -> TicketGrant | None:
    """The ticket's grant, or None after refusing the handshake (1008)."""
    reason: str | None = None
    grant: TicketGrant | None = None
    if services.draining:
        await refuse_while_draining(websocket)
        metrics.WS_REFUSED.labels(endpoint, "503").inc()
        return None
    if not origin_allowed(websocket, services.settings.effective_allowed_origins):
        reason = "bad_origin"
    else:
        try:
            grant = await services.tickets.redeem(websocket.query_params.get("ticket", ""), purpose)
        except TicketRejected as exc:
            reason = exc.reason.value
    if grant is None:
        metrics.WS_REFUSED.labels(endpoint, str(POLICY_VIOLATION)).inc()
        log.info("websocket refused", extra={"kind": endpoint, "reason": reason})
        try:
            await services.audit_outbox.write(
                None,
                "anonymous",
                AuditEvent.TICKET_REJECTED,
                "socket",
                None,
                Outcome.DENIED,
                client_ip(websocket),
                websocket.headers.get("user-agent"),
            )
        except Exception:
            log.exception("audit write failed")
        await websocket.close(POLICY_VIOLATION)
        return None
    return grant
