"""``GET /api/v1/presence``: who is waiting where and for how long, who is in which room since when, who is
reconnecting. Staff and admins see every open room, clinicians the rooms they host; clients nothing.

The same view the presence WebSocket starts with, read from the live room store. Display names are shown
(hosts and staff need them to run the program); nothing clinical is. Every read is audited.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import BEARER_SECURITY, authenticate, iso, refusals, require_account
from vIOP.api.openapi import documented_route, json_body
from vIOP.auth.permissions import Action, Grant, authorize
from vIOP.ids import UserId
from vIOP.rooms.participant import ParticipantState
from vIOP.rooms.presence import PresenceSnapshot, RoomPresence, SeatView, Viewer
from vIOP.rooms.room import RoomKind, RoomState
from vIOP.rooms.waiting_room import LobbyEntry
from vIOP.storage.audit import Action as AuditAction


def _seconds(value: float) -> int:
    return max(0, int(value))


def _waiting(entry: LobbyEntry) -> dict[str, Any]:
    return {
        "participant_id": entry.participant_id,
        "display_name": entry.display_name,
        "position": entry.position,
        "waiting_since": iso(entry.waiting_since),
        "waited_seconds": _seconds(entry.waited_seconds),
        "reconnecting": entry.reconnecting,
    }


def _seated(seat: SeatView, now: float) -> dict[str, Any]:
    return {
        "participant_id": seat.participant_id,
        "role": seat.role.value,
        "display_name": seat.display_name,
        "state": seat.state.value,
        "since": iso(seat.since),
        "seconds": _seconds(now - seat.since),
        "reconnecting": seat.reconnecting_since is not None,
        "reconnecting_since": iso(seat.reconnecting_since),
        "muted": seat.muted,
    }


def _room(room: RoomPresence, titles: dict[str, str], now: float) -> dict[str, Any]:
    return {
        "room_id": room.room_id,
        "session_id": room.session_id,
        "title": titles.get(room.room_id),
        "kind": room.kind.value,
        "state": room.state.value,
        "hosts": list(room.host_ids),
        "capacity": room.capacity,
        "waiting_count": room.waiting_count,
        "in_room_count": room.in_room_count,
        "reconnecting_count": room.reconnecting_count,
        "waiting": [_waiting(entry) for entry in room.waiting],
        "seated": [_seated(seat, now) for seat in room.seated],
    }


def snapshot_document(snapshot: PresenceSnapshot, titles: dict[str, str]) -> dict[str, Any]:
    return {
        "at": iso(snapshot.at),
        "rooms": [_room(room, titles, snapshot.at) for room in snapshot.rooms],
    }


async def presence(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    claims = require_account(caller)
    services = caller.services
    room_id = request.query_params.get("room_id")
    directory = services.room_directory
    if room_id is not None:
        record = await directory.get(room_id)  # 404 before 403
        grant = authorize(caller.principal, Action.VIEW_PRESENCE, record.scope)
        records = [record]
    else:
        grant = authorize(caller.principal, Action.VIEW_PRESENCE)
        records = (
            await directory.all_rooms()
            if grant is Grant.ALL
            else await directory.hosted_by(UserId(claims.subject))
        )
    viewer = Viewer(user_id=claims.subject, sees_all_rooms=grant is Grant.ALL)
    snapshot = await services.rooms.snapshot(viewer)
    if room_id is not None:
        snapshot = PresenceSnapshot(snapshot.at, tuple(r for r in snapshot.rooms if r.room_id == room_id))
    titles: dict[str, str] = {record.id: record.title for record in records}
    await caller.audit(AuditAction.PRESENCE_VIEWED, "room", room_id or "all")
    return JSONResponse(snapshot_document(snapshot, titles))


_TIME: Final = {"type": "string", "format": "date-time"}
_MAYBE_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
_WAITING: Final = {
    "type": "object",
    "required": ["participant_id", "display_name", "position", "waiting_since", "waited_seconds"],
    "properties": {
        "participant_id": {"type": "string"},
        "display_name": {"type": "string"},
        "position": {"type": "integer", "minimum": 1},
        "waiting_since": _TIME,
        "waited_seconds": {"type": "integer", "minimum": 0},
        "reconnecting": {"type": "boolean"},
    },
}
_SEATED: Final = {
    "type": "object",
    "required": ["participant_id", "role", "display_name", "state", "since", "seconds", "reconnecting"],
    "properties": {
        "participant_id": {"type": "string"},
        "role": {"type": "string", "enum": ["host", "client"]},
        "display_name": {"type": "string"},
        "state": {
            "type": "string",
            "enum": [ParticipantState.ADMITTED.value, ParticipantState.IN_ROOM.value],
        },
        "since": _TIME,
        "seconds": {"type": "integer", "minimum": 0},
        "reconnecting": {"type": "boolean"},
        "reconnecting_since": _MAYBE_TIME,
        "muted": {"type": "boolean"},
    },
}
_ROOM: Final = {
    "type": "object",
    "required": ["room_id", "session_id", "kind", "state", "hosts", "capacity", "waiting", "seated"],
    "properties": {
        "room_id": {"type": "string"},
        "session_id": {"type": "string"},
        "title": {"type": ["string", "null"]},
        "kind": {"type": "string", "enum": [k.value for k in RoomKind]},
        "state": {"type": "string", "enum": [s.value for s in RoomState if s is not RoomState.ENDED]},
        "hosts": {"type": "array", "items": {"type": "string"}},
        "capacity": {"type": "integer"},
        "waiting_count": {"type": "integer"},
        "in_room_count": {"type": "integer"},
        "reconnecting_count": {"type": "integer"},
        "waiting": {"type": "array", "items": _WAITING},
        "seated": {"type": "array", "items": _SEATED},
    },
}
SNAPSHOT_SCHEMA: Final = {
    "type": "object",
    "required": ["at", "rooms"],
    "properties": {"at": _TIME, "rooms": {"type": "array", "items": _ROOM}},
}


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/presence",
            presence,
            ["GET"],
            {
                "get": {
                    "summary": "Presence snapshot: staff and admins every open room, clinicians their own",
                    "operationId": "presenceSnapshot",
                    "security": BEARER_SECURITY,
                    "parameters": [
                        {
                            "name": "room_id",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "only this room",
                        }
                    ],
                    "responses": {"200": json_body(SNAPSHOT_SCHEMA), **refusals(401, 403, 404)},
                }
            },
        ),
    ]
