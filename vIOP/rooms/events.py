"""Domain events: what happened in a room, for whom. The signaling layer turns them into wire messages.

Every event carries the room id and the time it happened; a :class:`ParticipantEvent` also names the
participant it concerns. Events hold display names and messages (PHI): the bus seals them in transit.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from vIOP.ids import ParticipantId, RoomId, SessionId, UserId
from vIOP.rooms.participant import Role


class MuteKind(StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


class LeaveReason(StrEnum):
    LEFT = "left"  # the participant left (or gave up waiting)
    TIMEOUT = "timeout"  # reconnect grace expired
    ENDED = "ended"  # the room ended


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomEvent:
    kind: ClassVar[str] = ""
    room_id: RoomId
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantEvent(RoomEvent):
    participant_id: ParticipantId


@dataclass(frozen=True, slots=True, kw_only=True)
class Knocked(ParticipantEvent):
    kind: ClassVar[str] = "knocked"
    display_name: str
    position: int
    returning_after_removal: bool = False  # a host removed this client earlier in this session


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionChanged(ParticipantEvent):
    kind: ClassVar[str] = "position_changed"
    position: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted(ParticipantEvent):
    kind: ClassVar[str] = "admitted"
    by: ParticipantId | None  # None: a host let in by right


@dataclass(frozen=True, slots=True, kw_only=True)
class Denied(ParticipantEvent):
    kind: ClassVar[str] = "denied"
    by: ParticipantId
    message: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LobbyMessage(ParticipantEvent):
    kind: ClassVar[str] = "lobby_message"
    by: ParticipantId
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnedToLobby(ParticipantEvent):
    kind: ClassVar[str] = "returned_to_lobby"
    by: ParticipantId
    position: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Joined(ParticipantEvent):
    kind: ClassVar[str] = "joined"
    role: Role
    display_name: str
    muted: bool = False  # a host's mutes it comes back with (after a return to the lobby)
    video_muted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Left(ParticipantEvent):
    kind: ClassVar[str] = "left"
    reason: LeaveReason
    present_until: float  # for attendance: the start of the silence when the grace expired


@dataclass(frozen=True, slots=True, kw_only=True)
class Removed(ParticipantEvent):
    kind: ClassVar[str] = "removed"
    by: ParticipantId
    message: str | None = None  # the host's words to the removed client (PHI: sealed on the bus)


@dataclass(frozen=True, slots=True, kw_only=True)
class Muted(ParticipantEvent):
    kind: ClassVar[str] = "muted"
    by: ParticipantId
    muted: bool
    media: MuteKind = MuteKind.AUDIO


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnecting(ParticipantEvent):
    kind: ClassVar[str] = "reconnecting"


@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed(ParticipantEvent):
    kind: ClassVar[str] = "resumed"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomStarted(RoomEvent):
    kind: ClassVar[str] = "room_started"
    session_id: SessionId


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomLocked(RoomEvent):
    kind: ClassVar[str] = "room_locked"
    by: ParticipantId


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomUnlocked(RoomEvent):
    kind: ClassVar[str] = "room_unlocked"
    by: ParticipantId


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomEnded(RoomEvent):
    kind: ClassVar[str] = "room_ended"
    by: ParticipantId | None


# --- chat (issue 15) -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatPolicyChanged(RoomEvent):
    """A host turned client-to-client (room) chat on or off. Chat lines themselves are no room events:
    they are not stored (``vIOP.rooms.chat``)."""

    kind: ClassVar[str] = "chat_policy_changed"
    by: ParticipantId
    clients_may_chat: bool


# --- end chat --------------------------------------------------------------------------------------------
# --- co-hosts (issue 15): ids only ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HostAdded(RoomEvent):
    kind: ClassVar[str] = "host_added"
    user_id: UserId
    by: UserId | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRemoved(RoomEvent):
    kind: ClassVar[str] = "host_removed"
    user_id: UserId
    by: UserId | None


# --- "I need to talk" (issue 15): ids only; delivered to the room's hosts and staff, never to other clients ---


@dataclass(frozen=True, slots=True, kw_only=True)
class TalkRequested(ParticipantEvent):
    kind: ClassVar[str] = "talk_requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class TalkAcknowledged(ParticipantEvent):
    kind: ClassVar[str] = "talk_acknowledged"
    by: ParticipantId


# --- private breakout (issue 15): ids only -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakoutStarted(ParticipantEvent):
    """``participant_id`` (a client) is in a private breakout with ``clinician`` (a host)."""

    kind: ClassVar[str] = "breakout_started"
    clinician: ParticipantId
    by: ParticipantId


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakoutEnded(ParticipantEvent):
    """``participant_id``'s breakout with ``clinician`` is over (``by`` None: one of them left the room)."""

    kind: ClassVar[str] = "breakout_ended"
    clinician: ParticipantId
    by: ParticipantId | None


Event = (
    Knocked
    | PositionChanged
    | Admitted
    | Denied
    | LobbyMessage
    | ReturnedToLobby
    | Joined
    | Left
    | Removed
    | Muted
    | Reconnecting
    | Resumed
    | RoomStarted
    | RoomLocked
    | RoomUnlocked
    | RoomEnded
    | ChatPolicyChanged
    | HostAdded
    | HostRemoved
    | TalkRequested
    | TalkAcknowledged
    | BreakoutStarted
    | BreakoutEnded
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        Knocked,
        PositionChanged,
        Admitted,
        Denied,
        LobbyMessage,
        ReturnedToLobby,
        Joined,
        Left,
        Removed,
        Muted,
        Reconnecting,
        Resumed,
        RoomStarted,
        RoomLocked,
        RoomUnlocked,
        RoomEnded,
        ChatPolicyChanged,
        HostAdded,
        HostRemoved,
        TalkRequested,
        TalkAcknowledged,
        BreakoutStarted,
        BreakoutEnded,
    )
}


@dataclass(frozen=True, slots=True)
class Resync:
    """Not a room event: the bus may have missed events (e.g. Redis restarted); reload a snapshot."""

    kind: ClassVar[str] = "resync"
