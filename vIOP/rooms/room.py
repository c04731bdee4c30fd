"""The Room aggregate: kind, capacity, hosts, its state machine and the participants of the current session.

One Room value is one consistent state. Every use case is a pure function ``Room -> Transition`` (see
``waiting_room.py`` and ``in_room.py``); stores apply it atomically and retry it on a lost race.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from vIOP.ids import ParticipantId, RoomId, SessionId, UserId
from vIOP.rooms.errors import (
    IllegalTransition,
    InvalidRoomInput,
    NotAHost,
    ParticipantNotFound,
    RoomAlreadyEnded,
)
from vIOP.rooms.events import Event
from vIOP.rooms.limits import MAX_ROOM_CAPACITY
from vIOP.rooms.participant import Participant, ParticipantState, Role


class RoomKind(StrEnum):
    GROUP = "group"
    INDIVIDUAL = "individual"


class RoomState(StrEnum):
    OPEN = "open"  # created; clients may knock, no host has entered the room yet
    LIVE = "live"
    LOCKED = "locked"  # no new knocks and no admissions; hosts and reconnects still come in
    ENDED = "ended"


ROOM_TRANSITIONS: dict[RoomState, frozenset[RoomState]] = {
    RoomState.OPEN: frozenset({RoomState.LIVE, RoomState.ENDED}),
    RoomState.LIVE: frozenset({RoomState.LOCKED, RoomState.ENDED}),
    RoomState.LOCKED: frozenset({RoomState.LIVE, RoomState.ENDED}),
    RoomState.ENDED: frozenset(),
}

DEFAULT_CAPACITY = {RoomKind.GROUP: 15, RoomKind.INDIVIDUAL: 4}
MAX_HOSTS = 8
# Departed participants (left or denied) a room keeps, newest first: enough for a late socket close or
# resume to find who it was; the attendance ledger has their intervals. Without a bound, every knock/leave
# cycle grew the stored room for the rest of the session. Removed participants are never pruned: a removed
# person who knocks again must be recognised as returning.
MAX_DEPARTED_KEPT = 20
PRUNABLE_STATES = frozenset({ParticipantState.LEFT, ParticipantState.DENIED})


@dataclass(frozen=True, slots=True, kw_only=True)
class Room:
    id: RoomId
    session_id: SessionId
    kind: RoomKind
    capacity: int  # client seats (admitted + in the room); hosts do not take seats
    host_ids: frozenset[UserId]
    state: RoomState = RoomState.OPEN
    opened_at: float
    started_at: float | None = None
    ended_at: float | None = None
    next_knock_seq: int = 1
    # Clients may chat to everyone in the room (hosts may turn it off; private chat with the hosts stays).
    clients_may_chat: bool = True
    # Since when a started room has had no host present (the last one left without ending it): the room
    # ends once this is older than the host-absence grace (vIOP/rooms/cohosts.py).
    hostless_since: float | None = None
    version: int = 0  # bumped by every stored change: the newest copy of a room wins
    participants: tuple[Participant, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.capacity <= MAX_ROOM_CAPACITY:
            raise InvalidRoomInput(f"capacity must be between 1 and {MAX_ROOM_CAPACITY}")
        if not 1 <= len(self.host_ids) <= MAX_HOSTS:
            raise InvalidRoomInput(f"a room needs 1 to {MAX_HOSTS} hosts")

    # --- reading ---------------------------------------------------------------------------------

    def participant(self, participant_id: ParticipantId) -> Participant:
        for p in self.participants:
            if p.id == participant_id:
                return p
        raise ParticipantNotFound("no such participant in this room")

    def active(self) -> Iterator[Participant]:
        return (p for p in self.participants if p.is_active)

    def active_of(self, subject: str) -> Participant | None:
        """The active participant of a client or clinician (at most one per room)."""
        return next((p for p in self.participants if p.subject == subject and p.is_active), None)

    def in_state(self, state: ParticipantState) -> list[Participant]:
        return [p for p in self.participants if p.state is state]

    @property
    def seats_taken(self) -> int:
        return sum(1 for p in self.participants if p.is_seated and p.role is Role.CLIENT)

    @property
    def seats_free(self) -> int:
        return max(0, self.capacity - self.seats_taken)

    # --- changing --------------------------------------------------------------------------------

    def with_participant(self, participant: Participant) -> Room:
        """This room with ``participant`` added, or replacing the one with the same id."""
        others = tuple(p for p in self.participants if p.id != participant.id)
        if len(others) == len(self.participants):
            return dataclasses.replace(self, participants=(*self.participants, participant))
        ordered = tuple(participant if p.id == participant.id else p for p in self.participants)
        return dataclasses.replace(self, participants=ordered)

    def without_old_departures(self, keep: int = MAX_DEPARTED_KEPT) -> Room:
        """This room with only the ``keep`` most recently departed (left or denied) participants.

        Use cases run on the pruned room (``RoomService`` prunes before every step), so whoever departs in a
        step is still in that step's room, for its events and attendance marks, and goes later.
        """
        departed = [p for p in self.participants if p.state in PRUNABLE_STATES]
        if len(departed) <= keep:
            return self
        by_age = sorted(departed, key=lambda p: p.ended_at if p.ended_at is not None else 0.0)
        dropped = {p.id for p in by_age[: len(departed) - keep]}
        return dataclasses.replace(
            self, participants=tuple(p for p in self.participants if p.id not in dropped)
        )

    def moved_to(self, state: RoomState, at: float) -> Room:
        if state not in ROOM_TRANSITIONS[self.state]:
            if self.state is RoomState.ENDED:
                raise RoomAlreadyEnded("the room has ended")
            raise IllegalTransition(f"a room that is {self.state.value} cannot become {state.value}")
        changes: dict[str, object] = {"state": state}
        if state is RoomState.LIVE and self.started_at is None:
            changes["started_at"] = at
        if state is RoomState.ENDED:
            changes["ended_at"] = at
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def require_not_ended(self) -> None:
        if self.state is RoomState.ENDED:
            raise RoomAlreadyEnded("the room has ended")

    def require_host(self, by: ParticipantId) -> Participant:
        """The acting host: a HOST participant of this room who holds a seat or is in the room."""
        self.require_not_ended()
        try:
            host = self.participant(by)
        except ParticipantNotFound:
            raise NotAHost("only a host present in this room can do that") from None
        if host.role is not Role.HOST or not host.is_seated:
            raise NotAHost("only a host present in this room can do that")
        return host


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of one use case: the room after it and what happened, in order."""

    room: Room
    events: tuple[Event, ...] = ()
    participant: Participant | None = None  # the participant acted upon, when there is one

    @property
    def changed(self) -> bool:
        return bool(self.events)
