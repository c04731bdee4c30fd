"""``GET /api/v1/turn-credentials``: short-lived TURN REST credentials (coturn ``use-auth-secret``) for a
participant: a clinician (access token) in a room they host, or a client (invite token) in their room.

The credentials expire with the configured TTL or the end of the caller's sign-in (token ``exp``, invite
expiry), whichever comes first. The TURN username is ``<expiry>:<user or client id>``: opaque, so the TURN
server's logs hold no PHI. A server without a TURN secret answers 404 with a clear message.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import BEARER_SECURITY, authenticate, iso, refusals, require_role
from vIOP.api.http_rooms import caller_room
from vIOP.api.openapi import IsoTime, Operation, Param, Reply, documented_route, struct_response
from vIOP.auth.permissions import Action
from vIOP.errors import NotFound
from vIOP.ids import ParticipantId
from vIOP.storage.audit import AuditEvent


class TurnNotConfigured(NotFound):
    def __init__(self) -> None:
        super().__init__("TURN is not configured on this server: connect without a relay (STUN/host only)")


class TurnCredentials(msgspec.Struct):
    """An RTCIceServer entry, plus its expiry."""

    urls: list[str]
    username: str
    credential: str
    ttl: Annotated[int, msgspec.Meta(ge=1)]
    expires_at: IsoTime


async def turn_credentials(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_role(caller.principal, Action.GET_TURN_CREDENTIALS)
    services = caller.services
    ice = services.ice
    if not ice.turn_secret or not ice.turn_urls:
        raise TurnNotConfigured()
    scope = await caller_room(
        caller,
        Action.GET_TURN_CREDENTIALS,
        request.query_params.get("room_id") or None,
        required=True,
        reject_ended=True,
    )
    # BadRequest("the session has ended") if the sign-in ends within this second: a 400, never a 500.
    credentials = ice.turn_credentials(
        ParticipantId(caller.principal.subject),
        now=services.rooms.clock(),
        session_ends_at=caller.session_ends_at,
    )
    assert scope is not None  # required=True
    await caller.audit(AuditEvent.TURN_ISSUED, "room", scope.room_id)
    return struct_response(
        TurnCredentials(
            urls=list(credentials.urls),
            username=credentials.username,
            credential=credentials.password,
            ttl=credentials.ttl_seconds,
            expires_at=iso(credentials.expires_at),
        )
    )


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/turn-credentials",
            turn_credentials,
            ["GET"],
            Operation(
                summary="Ephemeral TURN credentials for a participant, no longer-lived than the session",
                operation_id="turnCredentials",
                security=BEARER_SECURITY,
                parameters=[
                    Param(
                        "room_id",
                        "query",
                        description="the room; required with an access token, implied by an invite",
                    )
                ],
                responses={
                    200: Reply("An RTCIceServer entry, plus its expiry", TurnCredentials),
                    **refusals(400, 401, 403, 404, 409),
                },
            ),
        ),
    ]
