"""The protocols the room use cases run over. Redis and SQL implement them in ``vIOP/storage/``; the
in-memory twins in :mod:`vIOP.rooms.memory` implement them for fast tests, and the same contract tests run
against both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from vIOP.ids import ParticipantId, RoomId, SessionId
from vIOP.rooms.attendance import (
    AudioOnlyMark,
    BreakoutMark,
    CloseMark,
    Interval,
    OpenMark,
    SessionEndMark,
)
from vIOP.rooms.chat import ChatLine
from vIOP.rooms.events import Event, Resync
from vIOP.rooms.participant import Participant
from vIOP.rooms.room import Room, Transition

Step = Callable[[Room], Transition]
"""A pure use case. A store may call it more than once (after losing a race), so it must not have side
effects."""


@dataclass(frozen=True, slots=True)
class Reasserted:
    room_recreated: bool
    participants_restored: tuple[ParticipantId, ...]


class RoomStore(Protocol):
    """Live rooms, with their lobby and roster. Every change is one atomic step that also publishes its
    events (an outbox: the change and its events are stored together or not at all)."""

    async def create(self, room: Room) -> None:
        """Store a new room session. RoomAlreadyOpen if a session of this room has not ended."""
        ...

    async def get(self, room_id: RoomId) -> Room:
        """RoomNotFound when unknown (or long ended)."""
        ...

    async def apply(self, room_id: RoomId, step: Step) -> Transition:
        """Run ``step`` on the current room and store its result atomically, with a bumped version.
        Errors raised by ``step`` propagate and nothing is written. A step with no events writes nothing."""
        ...

    async def open_rooms(self) -> list[Room]:
        """Every room whose session has not ended."""
        ...

    async def reassert(self, room: Room, held: Sequence[Participant], at: float) -> Reasserted:
        """After the store lost its data: put back ``room`` (if absent) and the ``held`` participants
        (those absent), keeping lobby order. What is already stored is newer and wins."""
        ...


class HeartbeatResult(Enum):
    FRESH = "fresh"
    REVIVED = "revived"  # the participant was marked reconnecting: the caller should resume it


@dataclass(frozen=True, slots=True)
class Silent:
    room_id: RoomId
    participant_id: ParticipantId
    since: float  # the last heartbeat (or arrival)


class PresenceStore(Protocol):
    """Liveness of connections. The room store keeps its indexes in step with every change; this store
    records heartbeats and finds who went quiet."""

    async def heartbeat(self, room_id: RoomId, participant_id: ParticipantId, at: float) -> HeartbeatResult:
        """RoomNotFound for an unknown room, NotActive for a participant who left, was removed or denied."""
        ...

    async def silent(self, before: float, limit: int = 500) -> list[Silent]:
        """Active, not yet reconnecting participants whose last heartbeat is older than ``before``."""
        ...

    async def grace_over(self, before: float, limit: int = 500) -> list[Silent]:
        """Reconnecting participants whose reconnect began before ``before``."""
        ...


class Subscription(Protocol):
    """Events from every process, in order, from the moment of subscribing. A :class:`Resync` means
    events may have been missed: reload a snapshot, then go on."""

    def __aiter__(self) -> AsyncIterator[Event | Resync]: ...

    async def __anext__(self) -> Event | Resync: ...

    async def close(self) -> None: ...


class EventBus(Protocol):
    async def publish(self, events: Sequence[Event]) -> None: ...

    async def subscribe(self) -> Subscription:
        """Fixes the starting point before returning: load a snapshot after this call, then iterate."""
        ...


@dataclass(frozen=True, slots=True)
class AttendanceQuery:
    room_id: RoomId | None = None
    session_id: SessionId | None = None
    subject: str | None = None
    start: float | None = None  # intervals that overlap [start, end)
    end: float | None = None


class AttendanceStore(Protocol):
    """The durable attendance ledger (never only in Redis)."""

    async def open(self, mark: OpenMark, grace: float) -> None:
        """Open an interval, or reopen the subject's latest one in this session if it closed within
        ``grace`` (see :func:`vIOP.rooms.attendance.decide_open`). Atomic; repeating it changes nothing."""
        ...

    async def close(self, mark: CloseMark) -> None:
        """Close the subject's open interval in this session, if there is one, and any audio-only span of
        theirs that is still open."""
        ...

    async def end_session(self, mark: SessionEndMark) -> None:
        """Record the end of the room session (the first end wins); every audio-only span still open in
        it ends then."""
        ...

    async def audio_only(self, mark: AudioOnlyMark) -> None:
        """Start an audio-only span for the subject (``mark.reason``: one open span at a time; a new reason
        ends the old span and starts another) or end their open one (``mark.reason`` None). Repeating it
        changes nothing."""
        ...

    async def breakout(self, mark: BreakoutMark) -> None:
        """Start a breakout span for the client (``mark.started``; nothing if one is open) or end their open
        one. A close of the interval and the end of the session end an open span too. Repeating it changes
        nothing."""
        ...

    async def intervals(self, query: AttendanceQuery) -> list[Interval]:
        """The intervals ``query`` selects, each with its audio-only and breakout spans."""
        ...


# --- chat (issue 15) -------------------------------------------------------------------------------------


class ChatBus(Protocol):
    """Chat lines from every process, live only: a line published while a process is not listening (or
    while the bus is away) is not delivered there later, and nothing is kept."""

    async def publish(self, line: ChatLine) -> None:
        """Deliver ``line`` live, and keep it sealed in the room's record while the room is live."""
        ...

    async def transcript(self, room_id: RoomId) -> list[ChatLine]:
        """The room's kept lines, oldest first; empty when there are none or the room has ended."""
        ...

    def lines(self) -> AsyncIterator[ChatLine]:
        """Every line published from now on, for as long as the caller iterates (reconnecting as needed)."""
        ...
