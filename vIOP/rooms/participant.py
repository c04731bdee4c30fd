"""A participant's life in one room: role, state machine and the record the stores keep.

Display names and lobby messages live here in plaintext; stores seal the whole record before it leaves
the process (see ``vIOP/storage/redis_rooms.py``).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.errors import IllegalTransition, InvalidRoomInput
from vIOP.rooms.limits import MAX_DISPLAY_NAME_CHARS, MAX_MESSAGE_CHARS


class Role(StrEnum):
    HOST = "host"  # a clinician of the room: bypasses the waiting room, runs the room
    CLIENT = "client"


class ParticipantState(StrEnum):
    KNOCKING = "knocking"  # the origin of every participant; a knock moves it on in the same step
    WAITING = "waiting"  # in the lobby
    ADMITTED = "admitted"  # holds a seat, not yet in the room (media not up)
    IN_ROOM = "in_room"
    LEFT = "left"
    REMOVED = "removed"
    DENIED = "denied"


ACTIVE_STATES = frozenset(
    {ParticipantState.KNOCKING, ParticipantState.WAITING, ParticipantState.ADMITTED, ParticipantState.IN_ROOM}
)
SEATED_STATES = frozenset({ParticipantState.ADMITTED, ParticipantState.IN_ROOM})

_S = ParticipantState
TRANSITIONS: dict[ParticipantState, frozenset[ParticipantState]] = {
    _S.KNOCKING: frozenset({_S.WAITING, _S.ADMITTED, _S.DENIED, _S.LEFT}),
    _S.WAITING: frozenset({_S.ADMITTED, _S.DENIED, _S.LEFT}),
    _S.ADMITTED: frozenset({_S.IN_ROOM, _S.WAITING, _S.LEFT, _S.REMOVED}),
    _S.IN_ROOM: frozenset({_S.WAITING, _S.LEFT, _S.REMOVED}),
    _S.LEFT: frozenset(),
    _S.REMOVED: frozenset(),
    _S.DENIED: frozenset(),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Participant:
    id: ParticipantId
    room_id: RoomId
    subject: str  # the opaque ClientId (clients) or UserId (hosts) behind this participant
    role: Role
    display_name: str
    state: ParticipantState = ParticipantState.KNOCKING
    knock_seq: int = 0  # lobby order: FIFO by knock, kept when returned to the lobby
    knocked_at: float
    waiting_since: float | None = None
    admitted_at: float | None = None
    joined_at: float | None = None  # start of the current stay in the room
    ended_at: float | None = None  # when it reached left / removed / denied
    reconnecting_since: float | None = None
    muted: bool = False  # a host's audio mute
    video_muted: bool = False  # a host's video mute: both outlive a reconnect and a return to the lobby
    returning_after_removal: bool = False  # knocked again after a host removed them in this session
    lobby_message: str | None = None  # the latest message from a host while waiting, or the denial
    talk_requested_at: float | None = None  # issue 15: "I need to talk", pending until a host acknowledges
    # Issue 15: in a private breakout with this participant (the client's clinician, or the clinician's
    # client); both sides carry it. None: with the group. See vIOP/rooms/breakout.py.
    breakout_with: ParticipantId | None = None

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def is_seated(self) -> bool:
        return self.state in SEATED_STATES

    def moved_to(self, state: ParticipantState, at: float) -> Participant:
        """This participant in ``state``; IllegalTransition when the table does not allow it."""
        if state not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"a participant who is {self.state.value} cannot become {state.value}")
        changes: dict[str, object] = {"state": state}
        if state is ParticipantState.WAITING:
            changes |= {"waiting_since": at, "admitted_at": None, "joined_at": None}
        elif state is ParticipantState.ADMITTED:
            changes |= {"admitted_at": at, "waiting_since": None, "lobby_message": None}
        elif state is ParticipantState.IN_ROOM:
            changes["joined_at"] = at
        else:
            changes |= {"ended_at": at, "reconnecting_since": None}
        if state not in SEATED_STATES:
            changes["breakout_with"] = None  # out of the room: out of any breakout (the partner is settled)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def clean_display_name(name: str) -> str:
    """The name as shown, or InvalidRoomInput: 1 to MAX_DISPLAY_NAME_CHARS printable characters, trimmed."""
    text = unicodedata.normalize("NFC", name).strip()
    if not text or len(text) > MAX_DISPLAY_NAME_CHARS or not _printable(text):
        raise InvalidRoomInput(f"a display name needs 1 to {MAX_DISPLAY_NAME_CHARS} printable characters")
    return text


def clean_message(message: str) -> str:
    text = unicodedata.normalize("NFC", message).strip()
    if not text or len(text) > MAX_MESSAGE_CHARS or not _printable(text.replace("\n", " ")):
        raise InvalidRoomInput(f"a message needs 1 to {MAX_MESSAGE_CHARS} printable characters")
    return text


def _printable(text: str) -> bool:
    return all(unicodedata.category(ch)[0] != "C" for ch in text)
