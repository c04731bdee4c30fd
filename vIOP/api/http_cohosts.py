"""Co-hosts over HTTP (issue 15, docs/API.md "Co-hosts"): a host of a room adds another clinician as co-host,
or removes one.

The hosts of a room are one concept kept in two stores that every process reads: the room record in SQL
(its creator plus ``room_cohosts``: what tickets, listings and every permission check read) and the live room
in Redis (``Room.host_ids``: who may enter without knocking and act as host). Adding writes SQL first, then
the live room (undone in SQL if that fails); removing takes the co-host out of the live room first (they
leave it if present: their socket closes), then out of SQL.
"""

from __future__ import annotations

import contextlib
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import BEARER_SECURITY, authenticate, read_json, refusals
from vIOP.api.http_rooms import require_not_ended, room_for
from vIOP.api.openapi import Operation, Reply, documented_route, path_param, struct_response
from vIOP.auth.permissions import Action, Role
from vIOP.errors import BadRequest
from vIOP.ids import UserId
from vIOP.rooms.errors import AlreadyAHost, NotACohost, RoomNotFound
from vIOP.storage.audit import AuditEvent


class NotAClinician(BadRequest):
    """The named account does not exist, is disabled or is not a clinician (one answer for the three: the
    reply does not tell which usernames exist)."""

    code = "not_a_clinician"


class AddCohostBody(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Cohost(msgspec.Struct):
    """A co-host as the room's hosts see them: the account id and the name rooms show (never the username)."""

    room_id: str
    user_id: str
    display_name: str


async def add_cohost(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    record, live = await room_for(caller, request.path_params["room_id"], Action.ADD_COHOST)
    require_not_ended(record, live)
    body = await read_json(request, AddCohostBody)
    services = caller.services
    account = await services.authenticator.account_named(body.username)
    if account is None or account.disabled or account.role is not Role.CLINICIAN:
        raise NotAClinician("a co-host must be an active clinician account")
    user_id, by = UserId(account.id), UserId(caller.principal.subject)
    if user_id in record.host_ids:
        raise AlreadyAHost("that clinician already hosts this room")
    await services.room_directory.add_cohost(record.id, user_id, by=by, at=services.rooms.clock())
    try:
        await services.rooms.add_host(record.id, user_id=user_id, by=by)
    except AlreadyAHost:
        pass  # the live room has them already (an earlier attempt whose SQL write was undone): same result
    except BaseException:
        await services.room_directory.remove_cohost(record.id, user_id)
        raise
    await caller.audit(AuditEvent.COHOST_ADDED, "user", user_id)
    return struct_response(
        Cohost(room_id=record.id, user_id=user_id, display_name=account.display_name),
        status_code=201,
        headers={"Location": f"/api/v1/rooms/{record.id}/cohosts/{user_id}"},
    )


async def remove_cohost(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    record, live = await room_for(caller, request.path_params["room_id"], Action.REMOVE_COHOST)
    require_not_ended(record, live)
    user_id = UserId(request.path_params["user_id"])
    if user_id not in record.cohost_ids:
        raise NotACohost("that clinician is not a co-host of this room")
    services = caller.services
    # The live room may no longer list them (or be gone): the record is then what is left to change.
    with contextlib.suppress(NotACohost, RoomNotFound):
        await services.rooms.remove_host(
            record.id, user_id=user_id, owner=record.host_user_id, by=UserId(caller.principal.subject)
        )
    await services.room_directory.remove_cohost(record.id, user_id)
    await caller.audit(AuditEvent.COHOST_REMOVED, "user", user_id)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/rooms/{room_id}/cohosts",
            add_cohost,
            ["POST"],
            Operation(
                summary="Add a clinician (named by username) as co-host of a room that has not ended",
                operation_id="addCohost",
                security=BEARER_SECURITY,
                parameters=[path_param("room_id")],
                request=AddCohostBody,
                responses={
                    201: Reply("Added; they have every host control", Cohost),
                    **refusals(400, 401, 403, 404, 409, 413, 415),
                },
            ),
        ),
        documented_route(
            "/api/v1/rooms/{room_id}/cohosts/{user_id}",
            remove_cohost,
            ["DELETE"],
            Operation(
                summary="Remove a co-host (they leave the room if present); the room's creator stays host",
                operation_id="removeCohost",
                security=BEARER_SECURITY,
                parameters=[path_param("room_id"), path_param("user_id")],
                responses={204: Reply("Removed"), **refusals(401, 403, 404, 409)},
            ),
        ),
    ]
