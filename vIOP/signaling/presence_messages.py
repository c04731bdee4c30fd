"""The presence stream's wire messages (``WS /ws/presence``): what a staff, admin or clinician page receives.

Beside :mod:`vIOP.signaling.messages` so that the JS protocol generator (:mod:`vIOP.signaling.js_protocol`)
can emit their type tags; filled from the domain's ``RoomPresence`` by :mod:`vIOP.session.presence`.
"""

from __future__ import annotations

import msgspec


class LobbyView(msgspec.Struct, frozen=True):
    participant_id: str
    display_name: str
    waiting_since: float
    waited_seconds: int
    reconnecting: bool
    talk_requested_since: float | None = None  # issue 15: "I need to talk", pending


class SeatPresence(msgspec.Struct, frozen=True):
    participant_id: str
    display_name: str
    role: str
    state: str
    since: float
    reconnecting_since: float | None
    talk_requested_since: float | None = None  # issue 15: "I need to talk", pending


class ExpectedClient(msgspec.Struct, frozen=True):
    """Issue 16: one client a track occurrence expects (enrolled), and where they are now."""

    client_id: str
    display_name: str  # "" when the client's name is gone (crypto-shredded)
    status: str  # expected | waiting | present | left | no_show (vIOP.program.noshow.Attendance)
    week_minutes: float | None = None  # attended this program week so far (None: not counted)
    week_minutes_missing: float | None = None  # short of the 9 hours (540 minutes); 0 when met


class OccurrenceView(msgspec.Struct, frozen=True):
    """Issue 16: the track occurrence a room was opened for: who it expects, and when absence is a no-show."""

    track_id: str
    occurrence_id: str
    starts_at: float
    ends_at: float
    no_show_at: float  # starts_at + VIOP_NO_SHOW_MINUTES
    expected: tuple[ExpectedClient, ...]
    today: str | None = None  # YYYY-MM-DD in the track's time zone (the week's hours are as of then)
    week_start: str | None = None  # YYYY-MM-DD, Monday of the program week
    week_end: str | None = None  # YYYY-MM-DD, the day the week's 9 hours are due by


class RoomView(msgspec.Struct, frozen=True):
    room_id: str
    kind: str
    state: str
    host_ids: tuple[str, ...]
    capacity: int
    waiting_count: int
    in_room_count: int
    reconnecting_count: int
    waiting: tuple[LobbyView, ...]
    seated: tuple[SeatPresence, ...]
    occurrence: OccurrenceView | None = None  # issue 16: set for a track occurrence's room


class PresenceSnapshot(msgspec.Struct, frozen=True, tag="presence_snapshot", tag_field="type"):
    at: float
    rooms: tuple[RoomView, ...]


class PresenceEvent(msgspec.Struct, frozen=True, tag="presence_event", tag_field="type"):
    event: str
    room_id: str
    at: float
    participant_id: str | None = None


class PresenceRoom(msgspec.Struct, frozen=True, tag="presence_room", tag_field="type"):
    at: float
    room: RoomView


class PresenceRoomGone(msgspec.Struct, frozen=True, tag="presence_room_gone", tag_field="type"):
    room_id: str
    at: float


class PresencePong(msgspec.Struct, frozen=True, tag="pong", tag_field="type"):
    pass


# What the server sends on the presence stream, and the one thing a client sends (``{"type": "ping"}``).
PRESENCE_SERVER_MESSAGE_TYPES: tuple[type[msgspec.Struct], ...] = (
    PresenceSnapshot,
    PresenceEvent,
    PresenceRoom,
    PresenceRoomGone,
    PresencePong,
)
PRESENCE_PING = "ping"
