"""Rooms and invites over HTTP (docs/API.md): create, list and read rooms; create and revoke invites.

A room has a durable record in SQL (``room_directory``: kind, encrypted title, host) and, while a session
is open, live state in Redis (``services.rooms``). Reads merge the two through the room-view use cases
(``vIOP.session.rooms_view``): the live state wins, and a read never writes.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
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
from vIOP.api.openapi import IsoTime, Operation, Reply, documented_route, path_param, struct_response
from vIOP.auth.invites import InvitePolicy, InviteRejected
from vIOP.auth.permissions import Action, Grant, Role, RoomScope, authorize, grant_for
from vIOP.auth.room_records import RoomRecord
from vIOP.errors import BadRequest, Conflict
from vIOP.ids import InviteId, UserId, new_room_id
from vIOP.rooms.limits import MAX_DISPLAY_NAME_CHARS, MAX_ROOM_CAPACITY, MAX_ROOM_TITLE_CHARS
from vIOP.rooms.room import DEFAULT_CAPACITY, Room, RoomKind, RoomState
from vIOP.session.revocation import revoke_invite_sessions
from vIOP.session.rooms_view import is_ended, live_room, open_rooms_of
from vIOP.session.services import Services
from vIOP.storage.audit import AuditEvent, Outcome

INVITE_EXCHANGED: Final = "invite.exchanged"  # audit action
_ENDED: Final = RoomState.ENDED.value
_INVISIBLE: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


_POLICY: Final = InvitePolicy()


# Text is checked after trimming (check_title, check_display_name) and the invite's numbers by the invite
# policy, so those bounds are documented on the field rather than enforced by the decoder.
def _documented(**schema: object) -> msgspec.Meta:
    return msgspec.Meta(extra_json_schema=schema)


class CreateRoomBody(msgspec.Struct, forbid_unknown_fields=True):
    kind: RoomKind
    title: Annotated[str, _documented(minLength=1, maxLength=MAX_ROOM_TITLE_CHARS)]
    capacity: Annotated[int, msgspec.Meta(ge=1, le=MAX_ROOM_CAPACITY)] | None = None


class ExchangeInviteBody(msgspec.Struct, forbid_unknown_fields=True):
    invite_token: Annotated[str, msgspec.Meta(max_length=128)]


class CreateInviteBody(msgspec.Struct, forbid_unknown_fields=True):
    display_name: Annotated[str, _documented(minLength=1, maxLength=MAX_DISPLAY_NAME_CHARS)]
    expires_in: (
        Annotated[int, _documented(minimum=_POLICY.min_expires_in, maximum=_POLICY.max_expires_in)] | None
    ) = None
    max_uses: Annotated[int, _documented(minimum=1, maximum=_POLICY.max_uses_limit)] | None = None


class RoomView(msgspec.Struct):
    """A room as admins, staff and clinicians see it (docs/API.md, POST /api/v1/rooms)."""

    id: str
    kind: RoomKind
    title: str
    capacity: Annotated[int, msgspec.Meta(ge=1, le=MAX_ROOM_CAPACITY)]
    state: RoomState
    hosts: list[str]
    created_at: IsoTime
    ended_at: IsoTime | None


class ClientRoomView(msgspec.Struct):
    """What a client's waiting-room page needs, and nothing more."""

    id: str
    kind: RoomKind
    title: str
    state: RoomState


class RoomList(msgspec.Struct):
    rooms: list[RoomView]


class CreatedInvite(msgspec.Struct):
    id: str
    invite_token: str
    join_url: str
    room_id: str
    client_id: str
    expires_at: IsoTime
    max_uses: int | None


class ExchangedInvite(msgspec.Struct):
    device_token: str
    room_id: str
    expires_at: IsoTime


def check_title(raw: str) -> str:
    title = unicodedata.normalize("NFC", raw).strip()
    if not 1 <= len(title) <= MAX_ROOM_TITLE_CHARS:
        raise BadRequest(f"a title has 1 to {MAX_ROOM_TITLE_CHARS} characters")
    if any(unicodedata.category(ch) in _INVISIBLE for ch in title):
        raise BadRequest("a title cannot contain control or invisible characters")
    return title


# --- merged view of a room --------------------------------------------------------------------------------


def room_object(record: RoomRecord, live: Room | None) -> RoomView:
    """The room as admins, staff and clinicians see it (docs/API.md, POST /api/v1/rooms)."""
    if live is None:
        state, hosts, capacity, ended_at = (
            record.state,
            sorted(record.host_ids),
            record.capacity,
            record.ended_at,
        )
        ended: float | datetime | None = ended_at
    else:
        state, hosts, capacity = live.state.value, sorted(live.host_ids), live.capacity
        ended = live.ended_at if live.ended_at is not None else record.ended_at
    return RoomView(
        id=record.id,
        kind=RoomKind(record.kind),
        title=record.title,
        capacity=capacity,
        state=RoomState(state),
        hosts=list[str](hosts),
        created_at=iso(record.created_at),
        ended_at=iso(ended),
    )


def client_room_object(record: RoomRecord, live: Room | None) -> ClientRoomView:
    """What a client's waiting-room page needs, and nothing more."""
    return ClientRoomView(
        id=record.id,
        kind=RoomKind(record.kind),
        title=record.title,
        state=live.state if live is not None else RoomState(record.state),
    )


async def room_for(caller: Caller, room_id: str, action: Action) -> tuple[RoomRecord, Room | None]:
    """404 before 403 (docs/API.md): the record, then the permission, then the live state."""
    record = await caller.services.room_directory.get(room_id)
    authorize(caller.principal, action, record.scope)
    return record, await live_room(caller.services, record)


def require_not_ended(record: RoomRecord, live: Room | None) -> None:
    if is_ended(record, live):
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
    await caller.audit(AuditEvent.ROOM_CREATED, "room", record.id)
    return struct_response(
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
    listed = [room_object(record, live) for record, live in await open_rooms_of(caller.services, records)]
    await caller.audit(AuditEvent.ROOM_VIEWED, "room", "all")  # a listing: titles are PHI under Part 2
    return struct_response(RoomList(rooms=listed))


async def get_room(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    record, live = await room_for(caller, request.path_params["room_id"], Action.VIEW_ROOM)
    await caller.audit(AuditEvent.ROOM_VIEWED, "room", record.id)
    if caller.is_client:
        return struct_response(client_room_object(record, live))
    return struct_response(room_object(record, live))


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
    await caller.audit(AuditEvent.INVITE_CREATED, "invite", invite.id)
    join_url = f"{public_origin(services)}/join#invite={created.token}&room={invite.room_id}"
    return struct_response(
        CreatedInvite(
            id=invite.id,
            invite_token=created.token,
            join_url=join_url,
            room_id=invite.room_id,
            client_id=invite.client_id,
            expires_at=iso(invite.expires_at),
            max_uses=invite.max_uses,
        ),
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
            None, "anonymous", AuditEvent.TOKEN_REJECTED, "invite", None, Outcome.DENIED, address
        )
        raise refused from None
    invite = exchanged.invite
    await services.audit_outbox.write(
        invite.client_id, Role.CLIENT.value, INVITE_EXCHANGED, "invite", invite.id, Outcome.SUCCESS, address
    )
    return struct_response(
        ExchangedInvite(
            device_token=exchanged.device_token, room_id=invite.room_id, expires_at=iso(invite.expires_at)
        )
    )


async def revoke_invite(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    invite = await caller.services.invites.revoke(
        caller.principal, InviteId(request.path_params["invite_id"])
    )
    await caller.audit(AuditEvent.INVITE_REVOKED, "invite", invite.id)
    await revoke_invite_sessions(caller.services, invite.room_id, invite.client_id)
    return Response(status_code=204)


# --- OpenAPI ----------------------------------------------------------------------------------------------


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/rooms",
            _rooms_collection,
            ["GET", "POST"],
            {
                "post": Operation(
                    summary="Create a room; the caller (a clinician) becomes its host",
                    operation_id="createRoom",
                    security=BEARER_SECURITY,
                    request=CreateRoomBody,
                    responses={201: Reply("Created", RoomView), **refusals(400, 401, 403, 413, 415)},
                ),
                "get": Operation(
                    summary="List rooms: a clinician's own, every open room for admin and staff",
                    operation_id="listRooms",
                    security=BEARER_SECURITY,
                    responses={200: Reply(body=RoomList), **refusals(401, 403)},
                ),
            },
        ),
        documented_route(
            "/api/v1/rooms/{room_id}",
            get_room,
            ["GET"],
            Operation(
                summary="Read one room (clients with their invite token: the waiting-room view)",
                operation_id="getRoom",
                security=BEARER_SECURITY,
                parameters=[path_param("room_id")],
                responses={200: Reply(body=(RoomView, ClientRoomView)), **refusals(401, 403, 404)},
            ),
        ),
        documented_route(
            "/api/v1/rooms/{room_id}/invites",
            create_invite,
            ["POST"],
            Operation(
                summary="Create an invite link for one new client of this room",
                operation_id="createInvite",
                security=BEARER_SECURITY,
                parameters=[path_param("room_id")],
                request=CreateInviteBody,
                responses={
                    201: Reply("Created; the token is shown only this once", CreatedInvite),
                    **refusals(400, 401, 403, 404, 409, 413, 415),
                },
            ),
        ),
        documented_route(
            "/api/v1/invites/exchange",
            exchange_invite,
            ["POST"],
            Operation(
                summary="Exchange an invite link's token, once, for this device's client credential",
                operation_id="exchangeInvite",
                security=[],
                request=ExchangeInviteBody,
                responses={
                    200: Reply("The device credential, shown only this once", ExchangedInvite),
                    **refusals(400, 401, 413, 415),
                },
            ),
        ),
        documented_route(
            "/api/v1/invites/{invite_id}",
            revoke_invite,
            ["DELETE"],
            Operation(
                summary="Revoke an invite (idempotent)",
                operation_id="revokeInvite",
                security=BEARER_SECURITY,
                parameters=[path_param("invite_id")],
                responses={204: Reply("Revoked"), **refusals(401, 403, 404)},
            ),
        ),
    ]


async def _rooms_collection(request: Request) -> Response:
    if request.method == "POST":
        return await create_room(request)
    return await list_rooms(request)
