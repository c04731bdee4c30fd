"""Presence snapshots for staff and clinicians: every open room, who waits and for how long, who is in
the room and since when, who is reconnecting. Pure views over :class:`Room` values."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vIOP.ids import ParticipantId, RoomId, SessionId, UserId
from vIOP.rooms.participant import ParticipantState, Role
from vIOP.rooms.room import Room, RoomKind, RoomState
from vIOP.rooms.waiting_room import LobbyEntry, lobby


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who asks: staff and administrators see every room; a clinician sees the rooms they host."""

    user_id: UserId
    sees_all_rooms: bool = False

    def can_see(self, room: Room) -> bool:
        return self.sees_all_rooms or self.user_id in room.host_ids


@dataclass(frozen=True, slots=True)
class SeatView:
    participant_id: ParticipantId
    role: Role
    display_name: str
    state: ParticipantState  # admitted (seat held, media not up yet) or in_room
    since: float  # joined_at when in the room, else admitted_at
    reconnecting_since: float | None
    muted: bool
    talk_requested_at: float | None = None  # issue 15: "I need to talk", pending


@dataclass(frozen=True, slots=True)
class RoomPresence:
    room_id: RoomId
    session_id: SessionId
    kind: RoomKind
    state: RoomState
    host_ids: tuple[UserId, ...]
    capacity: int
    waiting: tuple[LobbyEntry, ...]
    seated: tuple[SeatView, ...]

    @property
    def waiting_count(self) -> int:
        return len(self.waiting)

    @property
    def in_room_count(self) -> int:
        return sum(1 for s in self.seated if s.state is ParticipantState.IN_ROOM)

    @property
    def reconnecting_count(self) -> int:
        return sum(1 for s in self.seated if s.reconnecting_since is not None) + sum(
            1 for w in self.waiting if w.reconnecting
        )


@dataclass(frozen=True, slots=True)
class PresenceSnapshot:
    at: float
    rooms: tuple[RoomPresence, ...]


def room_presence(room: Room, now: float) -> RoomPresence:
    seated = tuple(
        SeatView(
            participant_id=p.id,
            role=p.role,
            display_name=p.display_name,
            state=p.state,
            since=p.joined_at if p.joined_at is not None else (p.admitted_at or p.knocked_at),
            reconnecting_since=p.reconnecting_since,
            muted=p.muted,
            talk_requested_at=p.talk_requested_at,
        )
        for p in room.participants
        if p.is_seated
    )
    return RoomPresence(
        room_id=room.id,
        session_id=room.session_id,
        kind=room.kind,
        state=room.state,
        host_ids=tuple(sorted(room.host_ids)),
        capacity=room.capacity,
        waiting=tuple(lobby(room, now)),
        seated=seated,
    )


def presence_snapshot(rooms: Iterable[Room], viewer: Viewer, now: float) -> PresenceSnapshot:
    visible = sorted(
        (r for r in rooms if r.state is not RoomState.ENDED and viewer.can_see(r)), key=lambda r: r.id
    )
    return PresenceSnapshot(at=now, rooms=tuple(room_presence(r, now) for r in visible))


@dataclass(frozen=True, slots=True)
class Liveness:
    """The liveness indexes a store keeps next to a room (derived, rebuilt from the room on every write):
    who is expected to heartbeat (with the time to count silence from) and who is reconnecting since when."""

    listening: dict[ParticipantId, float]
    reconnecting: dict[ParticipantId, float]


def liveness(room: Room, at: float) -> Liveness:
    listening: dict[ParticipantId, float] = {}
    reconnecting: dict[ParticipantId, float] = {}
    if room.state is not RoomState.ENDED:
        for p in room.active():
            if p.reconnecting_since is None:
                listening[p.id] = at
            else:
                reconnecting[p.id] = p.reconnecting_since
    return Liveness(listening, reconnecting)
