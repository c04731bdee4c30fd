"""``POST /api/v1/signal-tickets``: trade the bearer credential for a single-use WebSocket ticket.

Every check runs before an invite use is counted (docs/API.md): credential (401), body (400/413/415), the
role may ask for this purpose at all (403), the room exists (404), the caller belongs to it (403), it has
not ended (409, signal only); only then does a client's ``signal`` ticket spend one use of the invite.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import (
    BEARER_SECURITY,
    authenticate,
    bearer_credential,
    read_json,
    refusals,
    require_role,
)
from vIOP.api.http_rooms import caller_room
from vIOP.api.openapi import Operation, Reply, documented_route, struct_response
from vIOP.auth.tickets import ISSUE_ACTION, TicketPurpose
from vIOP.session.services import Services
from vIOP.storage.audit import AuditEvent

_WS_PATH: Final = {TicketPurpose.SIGNAL: "/ws/signal", TicketPurpose.PRESENCE: "/ws/presence"}


class TicketBody(msgspec.Struct, forbid_unknown_fields=True):
    room_id: str | None = None
    purpose: TicketPurpose = TicketPurpose.SIGNAL


class IssuedTicket(msgspec.Struct):
    ticket: str
    expires_in: int
    room_id: str | None
    ws_url: str


def ws_url(services: Services, purpose: TicketPurpose, ticket: str) -> str:
    origin = urlsplit(services.settings.origin)
    scheme = "wss" if origin.scheme == "https" else "ws"
    return f"{scheme}://{origin.netloc}{_WS_PATH[purpose]}?ticket={ticket}"


async def issue_ticket(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    # First, so a flood from one credential costs one Redis round trip per request and spends nothing.
    await caller.services.ticket_rate.spend(caller.principal.subject)
    body = await read_json(request, TicketBody, empty=TicketBody())
    purpose = body.purpose
    require_role(caller.principal, ISSUE_ACTION[purpose])
    scope = await caller_room(
        caller,
        ISSUE_ACTION[purpose],
        body.room_id,
        required=purpose is TicketPurpose.SIGNAL,
        reject_ended=purpose is TicketPurpose.SIGNAL,
    )
    services = caller.services
    if caller.is_client:
        # The last check: a refused request above never spends a use of the invite.
        await caller.consume_invite(bearer_credential(request))
    issued = await services.tickets.issue(
        caller.principal, purpose, scope, session=caller.session, session_ends_at=caller.session_ends_at
    )
    room_id = scope.room_id if scope is not None else None
    await caller.audit(AuditEvent.TICKET_ISSUED, "room", room_id or "all")
    return struct_response(
        IssuedTicket(
            ticket=issued.ticket,
            expires_in=issued.expires_in,
            room_id=room_id,
            ws_url=ws_url(services, purpose, issued.ticket),
        )
    )


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/signal-tickets",
            issue_ticket,
            ["POST"],
            Operation(
                summary="Trade the bearer credential (access or invite token) for a WebSocket ticket",
                operation_id="issueSignalTicket",
                security=BEARER_SECURITY,
                request=TicketBody,
                request_required=False,
                responses={
                    200: Reply("A single-use ticket, valid 30 seconds", IssuedTicket),
                    **refusals(400, 401, 403, 404, 409, 413, 415, 429),
                },
            ),
        ),
    ]
