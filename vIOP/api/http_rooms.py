"""Rooms and invites over HTTP (docs/API.md): create, list and read rooms; create and revoke invites.

A room has a durable record in SQL (``room_directory``: kind, encrypted title, host) and, while a session
is open, live state in Redis (``services.rooms``). Reads merge the two: the live state wins, and a room the
live store reports ended is marked ended in SQL too (so listings stop showing it).
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import (
    BEARER_SECURITY,
    Caller,
    authenticate,
    client_address,
    iso,
    read_json,
    refusals,
    require_account,
)
from vIOP.api.context import services_of
from vIOP.api.openapi import documented_route, json_body
from vIOP.auth.invites import InviteRejected
from vIOP.auth.permissions import Action, Grant, Role, RoomScope, authorize, grant_for
from vIOP.errors import BadRequest, Conflict
from vIOP.ids import InviteId, UserId, new_room_id
from vIOP.rooms.errors import RoomNotFound
from vIOP.rooms.room import DEFAULT_CAPACITY, MAX_CAPACITY, Room, RoomKind, RoomState
from vIOP.session.revocation import revoke_invite_sessions
from vIOP.session.services import Services
from vIOP.storage.audit import Action as AuditAction
from vIOP.storage.audit import Outcome
from vIOP.storage.rooms_sql import RoomRecord

MAX_TITLE_CHARS: Final = 120
INVITE_EXCHANGED: Final = "invite.exchanged"  # audit action
_ENDED: Final = RoomState.ENDED.value
_INVISIBLE: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


class CreateRoomBody(msgspec.Struct, forbid_unknown_fields=True):
    kind: RoomKind
    title: str
    capacity: Annotated[int, msgspec.Meta(ge=1, le=MAX_CAPACITY)] | None = None


class ExchangeInviteBody(msgspec.Struct, forbid_unknown_fields=True):
    invite_token: Annotated[str, msgspec.Meta(max_length=128)]


class CreateInviteBody(msgspec.Struct, forbid_unknown_fields=True):
    display_name: str
    expires_in: int | None = None
    max_uses: int | None = None


def check_title(raw: str) -> str:
    title = unicodedata.normalize("NFC", raw).strip()
    if not 1 <= len(title) <= MAX_TITLE_CHARS:
        raise BadRequest(f"a title has 1 to {MAX_TITLE_CHARS} characters")
    if any(unicodedata.category(ch) in _INVISIBLE for ch in title):
        raise BadRequest("a title cannot contain control or invisible characters")
    return title


# --- merged view of a room --------------------------------------------------------------------------------


async def live_room(services: Services, record: RoomRecord) -> Room | None:
    """The live session of ``record`` from Redis, or None (never opened here, long ended, or lost)."""
    if record.state == _ENDED:
        return None
    try:
        room = await services.rooms.room(record.id)
    except RoomNotFound:
        return None
    if room.state is RoomState.ENDED:
        # The session ended on a socket: make the durable record say so too (idempotent).
        await services.room_directory.set_state(record.id, _ENDED, ended_at=room.ended_at)
    return room


def room_object(record: RoomRecord, live: Room | None) -> dict[str, Any]:
    """The room as admins, staff and clinicians see it (docs/API.md, POST /api/v1/rooms)."""
    if live is None:
        state, hosts, capacity, ended_at = (
            record.state,
            [record.host_user_id],
            record.capacity,
            record.ended_at,
        )
        ended: float | datetime | None = ended_at
    else:
        state, hosts, capacity = live.state.value, sorted(live.host_ids), live.capacity
        ended = live.ended_at if live.ended_at is not None else record.ended_at
    return {
        "id": record.id,
        "kind": record.kind,
        "title": record.title,
        "capacity": capacity,
        "state": state,
        "hosts": hosts,
        "created_at": iso(record.created_at),
        "ended_at": iso(ended),
    }


def client_room_object(record: RoomRecord, live: Room | None) -> dict[str, Any]:
    """What a client's waiting-room page needs, and nothing more."""
    return {
        "id": record.id,
        "kind": record.kind,
        "title": record.title,
        "state": live.state.value if live is not None else record.state,
    }


async def room_for(caller: Caller, room_id: str, action: Action) -> tuple[RoomRecord, Room | None]:
    """404 before 403 (docs/API.md): the record, then the permission, then the live state."""
    record = await caller.services.room_directory.get(room_id)
    authorize(caller.principal, action, record.scope)
    return record, await live_room(caller.services, record)


def require_not_ended(record: RoomRecord, live: Room | None) -> None:
    state = live.state.value if live is not None else record.state
    if state == _ENDED:
        raise Conflict("the room has ended")


async def caller_room(
    caller: Caller, action: Action, room_id: str | None, *, required: bool, reject_ended: bool
) -> RoomScope | None:
    """The room a ticket or credential is for: a client's is their invite's (naming another is 403); an
    account names it (400 when ``required`` and absent). Checked 404, then 403, then 409 if ended."""
    principal = caller.principal
    if caller.is_client:
        if room_id is not None and room_id != principal.room_id:
            raise caller.refused("this invite is for another room", action, room_id)
        room_id = principal.room_id
    if room_id is None:
        if required:
            raise BadRequest("room_id is required")
        return None
    record, live = await room_for(caller, room_id, action)
    if reject_ended:
        require_not_ended(record, live)
    return record.scope


def public_origin(services: Services) -> str:
    return services.settings.origin


# --- endpoints --------------------------------------------------------------------------------------------


async def create_room(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    authorize(caller.principal, Action.CREATE_ROOM)
    body = await read_json(request, CreateRoomBody)
    title = check_title(body.title)
    services = caller.services
    user_id = UserId(caller.principal.subject)
    now = services.rooms.clock()
    record = RoomRecord(
        id=new_room_id(),
        kind=body.kind.value,
        title=title,
        capacity=body.capacity if body.capacity is not None else DEFAULT_CAPACITY[body.kind],
        host_user_id=user_id,
        state=RoomState.OPEN.value,
        created_at=datetime.fromtimestamp(int(now), UTC),
        ended_at=None,
    )
    await services.room_directory.add(record)
    try:
        live = await services.rooms.open_room(
            record.id, kind=body.kind, host_ids=frozenset({user_id}), capacity=record.capacity
        )
    except BaseException:
        # No live session behind it: the record must not be listed as an open room.
        await services.room_directory.set_state(record.id, _ENDED, ended_at=now)
        raise
    await caller.audit(AuditAction.ROOM_CREATED, "room", record.id)
    return JSONResponse(
        room_object(record, live), status_code=201, headers={"Location": f"/api/v1/rooms/{record.id}"}
    )


async def list_rooms(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    principal = caller.principal
    grant = grant_for(principal.role, Action.VIEW_ROOM)
    if principal.role is Role.CLIENT or grant is Grant.NONE:
        raise caller.refused(f"the {principal.role.value} role does not allow: list rooms", Action.VIEW_ROOM)
    directory = caller.services.room_directory
    if grant is Grant.ALL:
        records = await directory.all_rooms()
    else:
        records = await directory.hosted_by(UserId(principal.subject))
    open_now = {room.id: room for room in await caller.services.rooms.rooms.open_rooms()}
    listed = []
    for record in records:
        live = open_now.get(record.id)
        if live is None:
            live = await live_room(caller.services, record)
        if live is None or live.state is not RoomState.ENDED:
            listed.append(room_object(record, live))
    await caller.audit(AuditAction.ROOM_VIEWED, "room", "all")  # a listing: titles are PHI under Part 2
    return JSONResponse({"rooms": listed})


async def get_room(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    record, live = await room_for(caller, request.path_params["room_id"], Action.VIEW_ROOM)
    await caller.audit(AuditAction.ROOM_VIEWED, "room", record.id)
    if caller.is_client:
        return JSONResponse(client_room_object(record, live))
    return JSONResponse(room_object(record, live))


async def create_invite(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    record, live = await room_for(caller, request.path_params["room_id"], Action.CREATE_INVITE)
    require_not_ended(record, live)
    body = await read_json(request, CreateInviteBody)
    services = caller.services
    created = await services.invites.create(
        caller.principal, record.scope, body.display_name, body.expires_in, body.max_uses
    )
    invite = created.invite
    await caller.audit(AuditAction.INVITE_CREATED, "invite", invite.id)
    join_url = f"{public_origin(services)}/join#invite={created.token}&room={invite.room_id}"
    return JSONResponse(
        {
            "id": invite.id,
            "invite_token": created.token,
            "join_url": join_url,
            "room_id": invite.room_id,
            "client_id": invite.client_id,
            "expires_at": iso(invite.expires_at),
            "max_uses": invite.max_uses,
        },
        status_code=201,
        headers={"Location": f"/api/v1/invites/{invite.id}"},
    )


async def exchange_invite(request: Request) -> Response:
    """Trade an invite link's token, once, for this device's credential (``vdev_...``). The token comes in
    the body, never in a URL: browsers keep every URL they visit in their history, and a link that has been
    exchanged is worth nothing there (``invite_already_used``)."""
    services = services_of(request)
    address = client_address(request)
    body = await read_json(request, ExchangeInviteBody)
    try:
        exchanged = await services.invites.exchange(body.invite_token)
    except InviteRejected as refused:
        await services.audit_outbox.write(
            None, "anonymous", AuditAction.TOKEN_REJECTED, "invite", None, Outcome.DENIED, address
        )
        raise refused from None
    invite = exchanged.invite
    await services.audit_outbox.write(
        invite.client_id, Role.CLIENT.value, INVITE_EXCHANGED, "invite", invite.id, Outcome.SUCCESS, address
    )
    return JSONResponse(
        {
            "device_token": exchanged.device_token,
            "room_id": invite.room_id,
            "expires_at": iso(invite.expires_at),
        }
    )


async def revoke_invite(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    invite = await caller.services.invites.revoke(
        caller.principal, InviteId(request.path_params["invite_id"])
    )
    await caller.audit(AuditAction.INVITE_REVOKED, "invite", invite.id)
    await revoke_invite_sessions(caller.services, invite.room_id, invite.client_id)
    return Response(status_code=204)


# --- OpenAPI ----------------------------------------------------------------------------------------------

_ID = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
ROOM_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["id", "kind", "title", "capacity", "state", "hosts", "created_at", "ended_at"],
    "properties": {
        "id": _ID,
        "kind": {"type": "string", "enum": [k.value for k in RoomKind]},
        "title": {"type": "string"},
        "capacity": {"type": "integer", "minimum": 1, "maximum": MAX_CAPACITY},
        "state": {"type": "string", "enum": [s.value for s in RoomState]},
        "hosts": {"type": "array", "items": _ID},
        "created_at": _TIME,
        "ended_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
CLIENT_ROOM_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["id", "kind", "title", "state"],
    "properties": {k: ROOM_SCHEMA["properties"][k] for k in ("id", "kind", "title", "state")},
}
_CREATE_ROOM_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "title"],
    "properties": {
        "kind": {"type": "string", "enum": [k.value for k in RoomKind]},
        "title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE_CHARS},
        "capacity": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_CAPACITY},
    },
}
_CREATE_INVITE_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["display_name"],
    "properties": {
        "display_name": {"type": "string", "minLength": 1, "maxLength": 64},
        "expires_in": {"type": ["integer", "null"], "minimum": 60, "maximum": 30 * 24 * 3600},
        "max_uses": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000},
    },
}
_INVITE = {
    "type": "object",
    "required": ["id", "invite_token", "join_url", "room_id", "client_id", "expires_at", "max_uses"],
    "properties": {
        "id": _ID,
        "invite_token": {"type": "string"},
        "join_url": {"type": "string"},
        "room_id": _ID,
        "client_id": _ID,
        "expires_at": _TIME,
        "max_uses": {"type": ["integer", "null"]},
    },
}
_EXCHANGE_BODY: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["invite_token"],
    "properties": {"invite_token": {"type": "string", "maxLength": 128}},
}
_EXCHANGED: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["device_token", "room_id", "expires_at"],
    "properties": {"device_token": {"type": "string"}, "room_id": _ID, "expires_at": _TIME},
}
_ROOM_ID_PARAM = {"name": "room_id", "in": "path", "required": True, "schema": _ID}
_INVITE_ID_PARAM = {"name": "invite_id", "in": "path", "required": True, "schema": _ID}


def _request_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/rooms",
            _rooms_collection,
            ["GET", "POST"],
            {
                "post": {
                    "summary": "Create a room; the caller (a clinician) becomes its host",
                    "operationId": "createRoom",
                    "security": BEARER_SECURITY,
                    "requestBody": _request_body(_CREATE_ROOM_BODY),
                    "responses": {
                        "201": json_body(ROOM_SCHEMA, "Created"),
                        **refusals(400, 401, 403, 413, 415),
                    },
                },
                "get": {
                    "summary": "List rooms: a clinician's own, every open room for admin and staff",
                    "operationId": "listRooms",
                    "security": BEARER_SECURITY,
                    "responses": {
                        "200": json_body(
                            {
                                "type": "object",
                                "required": ["rooms"],
                                "properties": {"rooms": {"type": "array", "items": ROOM_SCHEMA}},
                            }
                        ),
                        **refusals(401, 403),
                    },
                },
            },
        ),
        documented_route(
            "/api/v1/rooms/{room_id}",
            get_room,
            ["GET"],
            {
                "get": {
                    "summary": "Read one room (clients with their invite token: the waiting-room view)",
                    "operationId": "getRoom",
                    "security": BEARER_SECURITY,
                    "parameters": [_ROOM_ID_PARAM],
                    "responses": {
                        "200": json_body({"anyOf": [ROOM_SCHEMA, CLIENT_ROOM_SCHEMA]}),
                        **refusals(401, 403, 404),
                    },
                }
            },
        ),
        documented_route(
            "/api/v1/rooms/{room_id}/invites",
            create_invite,
            ["POST"],
            {
                "post": {
                    "summary": "Create an invite link for one new client of this room",
                    "operationId": "createInvite",
                    "security": BEARER_SECURITY,
                    "parameters": [_ROOM_ID_PARAM],
                    "requestBody": _request_body(_CREATE_INVITE_BODY),
                    "responses": {
                        "201": json_body(_INVITE, "Created; the token is shown only this once"),
                        **refusals(400, 401, 403, 404, 409, 413, 415),
                    },
                }
            },
        ),
        documented_route(
            "/api/v1/invites/exchange",
            exchange_invite,
            ["POST"],
            {
                "post": {
                    "summary": "Exchange an invite link's token, once, for this device's client credential",
                    "operationId": "exchangeInvite",
                    "security": [],
                    "requestBody": _request_body(_EXCHANGE_BODY),
                    "responses": {
                        "200": json_body(_EXCHANGED, "The device credential, shown only this once"),
                        **refusals(400, 401, 413, 415),
                    },
                }
            },
        ),
        documented_route(
            "/api/v1/invites/{invite_id}",
            revoke_invite,
            ["DELETE"],
            {
                "delete": {
                    "summary": "Revoke an invite (idempotent)",
                    "operationId": "revokeInvite",
                    "security": BEARER_SECURITY,
                    "parameters": [_INVITE_ID_PARAM],
                    "responses": {"204": {"description": "Revoked"}, **refusals(401, 403, 404)},
                }
            },
        ),
    ]


async def _rooms_collection(request: Request) -> Response:
    if request.method == "POST":
        return await create_room(request)
    return await list_rooms(request)
