"""``GET /api/v1/presence``: who is waiting where and for how long, who is in which room since when, who is
reconnecting. Staff and admins see every open room, clinicians the rooms they host; clients nothing.

The same view the presence WebSocket starts with, read from the live room store. Display names are shown
(hosts and staff need them to run the program); nothing clinical is. Every read is audited.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import BEARER_SECURITY, authenticate, iso, refusals, require_account
from vIOP.api.openapi import IsoTime, Operation, Param, Reply, documented_route, struct_response
from vIOP.auth.permissions import Action, Grant, authorize
from vIOP.ids import UserId
from vIOP.rooms.participant import ParticipantState, Role
from vIOP.rooms.presence import PresenceSnapshot, RoomPresence, SeatView, Viewer
from vIOP.rooms.room import RoomKind, RoomState
from vIOP.rooms.waiting_room import LobbyEntry
from vIOP.storage.audit import AuditEvent


def _seconds(value: float) -> int:
    return max(0, int(value))


def _only(*values: str) -> msgspec.Meta:
    """Narrows an enum field's documented values to those this view can hold."""
    return msgspec.Meta(extra_json_schema={"enum": list(values)})


_OPEN_STATES: Final = tuple(s for s in RoomState if s is not RoomState.ENDED)


class WaitingView(msgspec.Struct):
    participant_id: str
    display_name: str
    position: Annotated[int, msgspec.Meta(ge=1)]
    waiting_since: IsoTime
    waited_seconds: Annotated[int, msgspec.Meta(ge=0)]
    reconnecting: bool
    talk_requested_since: IsoTime | None = None  # issue 15: "I need to talk", waiting for a host


class SeatedView(msgspec.Struct):
    participant_id: str
    role: Role
    display_name: str
    state: Annotated[ParticipantState, _only(ParticipantState.ADMITTED, ParticipantState.IN_ROOM)]
    since: IsoTime
    seconds: Annotated[int, msgspec.Meta(ge=0)]
    reconnecting: bool
    reconnecting_since: IsoTime | None
    muted: bool
    talk_requested_since: IsoTime | None = None  # issue 15: "I need to talk", waiting for a host


class RoomPresenceView(msgspec.Struct):
    room_id: str
    session_id: str
    title: str | None
    kind: RoomKind
    state: Annotated[RoomState, _only(*_OPEN_STATES)]
    hosts: list[str]
    capacity: int
    waiting_count: int
    in_room_count: int
    reconnecting_count: int
    waiting: list[WaitingView]
    seated: list[SeatedView]


class PresenceSnapshotView(msgspec.Struct):
    at: IsoTime
    rooms: list[RoomPresenceView]


def _waiting(entry: LobbyEntry) -> WaitingView:
    return WaitingView(
        participant_id=entry.participant_id,
        display_name=entry.display_name,
        position=entry.position,
        waiting_since=iso(entry.waiting_since),
        waited_seconds=_seconds(entry.waited_seconds),
        reconnecting=entry.reconnecting,
        talk_requested_since=iso(entry.talk_requested_at),
    )


def _seated(seat: SeatView, now: float) -> SeatedView:
    return SeatedView(
        participant_id=seat.participant_id,
        role=seat.role,
        display_name=seat.display_name,
        state=seat.state,
        since=iso(seat.since),
        seconds=_seconds(now - seat.since),
        reconnecting=seat.reconnecting_since is not None,
        reconnecting_since=iso(seat.reconnecting_since),
        muted=seat.muted,
        talk_requested_since=iso(seat.talk_requested_at),
    )


def _room(room: RoomPresence, titles: dict[str, str], now: float) -> RoomPresenceView:
    return RoomPresenceView(
        room_id=room.room_id,
        session_id=room.session_id,
        title=titles.get(room.room_id),
        kind=room.kind,
        state=room.state,
        hosts=list[str](room.host_ids),
        capacity=room.capacity,
        waiting_count=room.waiting_count,
        in_room_count=room.in_room_count,
        reconnecting_count=room.reconnecting_count,
        waiting=[_waiting(entry) for entry in room.waiting],
        seated=[_seated(seat, now) for seat in room.seated],
    )


def snapshot_document(snapshot: PresenceSnapshot, titles: dict[str, str]) -> PresenceSnapshotView:
    return PresenceSnapshotView(
        at=iso(snapshot.at), rooms=[_room(room, titles, snapshot.at) for room in snapshot.rooms]
    )


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
    await caller.audit(AuditEvent.PRESENCE_VIEWED, "room", room_id or "all")
    return struct_response(snapshot_document(snapshot, titles))


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/presence",
            presence,
            ["GET"],
            Operation(
                summary="Presence snapshot: staff and admins every open room, clinicians their own",
                operation_id="presenceSnapshot",
                security=BEARER_SECURITY,
                parameters=[Param("room_id", "query", description="only this room")],
                responses={200: Reply(body=PresenceSnapshotView), **refusals(401, 403, 404)},
            ),
        ),
    ]
