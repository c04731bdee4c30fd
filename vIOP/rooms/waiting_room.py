"""Lobby rules: knock, host entry, admit, admit all, deny, lobby messages, return to lobby, positions.

The lobby is FIFO by knock: a participant returned to the lobby keeps the place of their original knock.
Every function is pure: ``Room -> Transition``; a refusal raises and changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from vIOP.ids import ParticipantId, UserId
from vIOP.rooms.errors import (
    AlreadyPresent,
    IllegalTransition,
    InvalidRoomInput,
    NotAHost,
    RoomFull,
    RoomLocked,
)
from vIOP.rooms.events import (
    Admitted,
    Denied,
    Event,
    Knocked,
    LeaveReason,
    Left,
    LobbyMessage,
    PositionChanged,
    ReturnedToLobby,
)
from vIOP.rooms.participant import (
    Participant,
    ParticipantState,
    Role,
    clean_display_name,
    clean_message,
)
from vIOP.rooms.room import Room, RoomKind, RoomState, Transition


@dataclass(frozen=True, slots=True)
class LobbyEntry:
    """What a host sees of one waiting client."""

    participant_id: ParticipantId
    display_name: str
    position: int
    waiting_since: float
    waited_seconds: float
    reconnecting: bool
    returning_after_removal: bool = False
    talk_requested_at: float | None = None  # issue 15: hosts and staff only


def waiting_in_order(room: Room) -> list[Participant]:
    return sorted(room.in_state(ParticipantState.WAITING), key=lambda p: p.knock_seq)


def positions(room: Room) -> dict[ParticipantId, int]:
    """1-based lobby position of every waiting participant."""
    return {p.id: i for i, p in enumerate(waiting_in_order(room), start=1)}


def lobby(room: Room, now: float) -> list[LobbyEntry]:
    return [
        LobbyEntry(
            participant_id=p.id,
            display_name=p.display_name,
            position=i,
            waiting_since=_waiting_since(p),
            waited_seconds=max(0.0, now - _waiting_since(p)),
            reconnecting=p.reconnecting_since is not None,
            returning_after_removal=p.returning_after_removal,
            talk_requested_at=p.talk_requested_at,
        )
        for i, p in enumerate(waiting_in_order(room), start=1)
    ]


def settle(
    before: Room, after: Room, events: Sequence[Event], at: float, participant: Participant | None = None
) -> Transition:
    """The transition from ``before`` to ``after``, plus a PositionChanged for every waiting participant
    whose place moved (those who just arrived in the lobby already carry their position)."""
    old, new = positions(before), positions(after)
    moved = [
        PositionChanged(room_id=after.id, participant_id=pid, at=at, position=pos)
        for pid, pos in new.items()
        if pid in old and old[pid] != pos
    ]
    return Transition(after, (*events, *moved), participant)


def _require_unique_subject(room: Room, subject: str) -> None:
    if any(p.subject == subject for p in room.active()):
        raise AlreadyPresent("already knocking, waiting or in this room")


def knock(
    room: Room,
    *,
    participant_id: ParticipantId,
    subject: str,
    display_name: str,
    at: float,
    replace_reconnecting: bool = False,
) -> Transition:
    """A client asks to come in: they join the back of the lobby. With ``replace_reconnecting``, a seat
    or lobby place of the same client whose connection is gone (reconnecting) is let go first, as if its
    grace had run out: whoever comes back without that seat's resume token knocks like anyone else."""
    room.require_not_ended()
    if room.state is RoomState.LOCKED:
        raise RoomLocked("the room is locked")
    name = clean_display_name(display_name)
    if subject in room.host_ids:
        raise InvalidRoomInput("hosts enter directly; they do not knock")
    if any(p.id == participant_id for p in room.participants):
        raise AlreadyPresent("participant id already used in this room")
    before, released = room, []
    stale = room.active_of(subject)
    if replace_reconnecting and stale is not None and stale.reconnecting_since is not None:
        gone = stale.moved_to(ParticipantState.LEFT, at)
        released.append(
            Left(
                room_id=room.id, participant_id=stale.id, at=at, reason=LeaveReason.TIMEOUT,
                present_until=stale.reconnecting_since,
            )
        )  # fmt: skip
        room = room.with_participant(gone)
    _require_unique_subject(room, subject)
    returning = any(p.subject == subject and p.state is ParticipantState.REMOVED for p in room.participants)
    knocking = Participant(
        id=participant_id,
        room_id=room.id,
        subject=subject,
        role=Role.CLIENT,
        display_name=name,
        knock_seq=room.next_knock_seq,
        knocked_at=at,
        returning_after_removal=returning,
    )
    waiting = knocking.moved_to(ParticipantState.WAITING, at)
    after = dataclasses.replace(room, next_knock_seq=room.next_knock_seq + 1).with_participant(waiting)
    event = Knocked(
        room_id=room.id,
        participant_id=participant_id,
        at=at,
        display_name=name,
        position=positions(after)[waiting.id],
        returning_after_removal=returning,
    )
    if released:
        return settle(before, after, [*released, event], at, participant=waiting)
    return Transition(after, (event,), waiting)


def host_enter(
    room: Room, *, participant_id: ParticipantId, user_id: UserId, display_name: str, at: float
) -> Transition:
    """A host of the room bypasses the lobby (also when the room is locked)."""
    room.require_not_ended()
    if user_id not in room.host_ids:
        raise NotAHost("only the room's hosts enter without knocking")
    name = clean_display_name(display_name)
    _require_unique_subject(room, user_id)
    if any(p.id == participant_id for p in room.participants):
        raise AlreadyPresent("participant id already used in this room")
    host = Participant(
        id=participant_id, room_id=room.id, subject=user_id, role=Role.HOST, display_name=name, knocked_at=at
    ).moved_to(ParticipantState.ADMITTED, at)
    return Transition(
        dataclasses.replace(room.with_participant(host), hostless_since=None),
        (Admitted(room_id=room.id, participant_id=host.id, at=at, by=None),),
        host,
    )


def _waiting_client(room: Room, participant_id: ParticipantId) -> Participant:
    target = room.participant(participant_id)
    if target.state is not ParticipantState.WAITING:
        raise IllegalTransition(f"the participant is {target.state.value}, not waiting")
    return target


def admit(room: Room, *, by: ParticipantId, participant_id: ParticipantId, at: float) -> Transition:
    room.require_host(by)
    if room.state is RoomState.LOCKED:
        raise RoomLocked("unlock the room to admit")
    target = _waiting_client(room, participant_id)
    if room.seats_free < 1:
        raise RoomFull(f"all {room.capacity} seats are taken")
    admitted = target.moved_to(ParticipantState.ADMITTED, at)
    after = room.with_participant(admitted)
    return settle(
        room,
        after,
        [Admitted(room_id=room.id, participant_id=target.id, at=at, by=by)],
        at,
        participant=admitted,
    )


def admit_all(room: Room, *, by: ParticipantId, at: float) -> Transition:
    """Admit from the front of the lobby up to the free seats. In an individual room, one client per call:
    the clinician admits more one by one."""
    room.require_host(by)
    if room.state is RoomState.LOCKED:
        raise RoomLocked("unlock the room to admit")
    waiting = waiting_in_order(room)
    if not waiting:
        return Transition(room)
    if room.seats_free < 1:
        raise RoomFull(f"all {room.capacity} seats are taken")
    batch = room.seats_free if room.kind is RoomKind.GROUP else 1
    after, events = room, []
    for target in waiting[:batch]:
        after = after.with_participant(target.moved_to(ParticipantState.ADMITTED, at))
        events.append(Admitted(room_id=room.id, participant_id=target.id, at=at, by=by))
    return settle(room, after, events, at)


def deny(
    room: Room, *, by: ParticipantId, participant_id: ParticipantId, message: str | None, at: float
) -> Transition:
    room.require_host(by)
    text = clean_message(message) if message is not None else None
    target = _waiting_client(room, participant_id)
    denied = dataclasses.replace(target.moved_to(ParticipantState.DENIED, at), lobby_message=text)
    event = Denied(room_id=room.id, participant_id=target.id, at=at, by=by, message=text)
    return settle(room, room.with_participant(denied), [event], at, participant=denied)


def lobby_message(
    room: Room, *, by: ParticipantId, participant_id: ParticipantId, message: str, at: float
) -> Transition:
    """A host writes to one waiting client (who must be waiting in this room)."""
    room.require_host(by)
    text = clean_message(message)
    target = dataclasses.replace(_waiting_client(room, participant_id), lobby_message=text)
    event = LobbyMessage(room_id=room.id, participant_id=target.id, at=at, by=by, message=text)
    return Transition(room.with_participant(target), (event,), target)


def return_to_lobby(room: Room, *, by: ParticipantId, participant_id: ParticipantId, at: float) -> Transition:
    room.require_host(by)
    target = room.participant(participant_id)
    if target.role is Role.HOST:
        raise InvalidRoomInput("hosts cannot be sent to the lobby")
    back = target.moved_to(ParticipantState.WAITING, at)
    after = room.with_participant(back)
    event = ReturnedToLobby(
        room_id=room.id, participant_id=back.id, at=at, by=by, position=positions(after)[back.id]
    )
    return settle(room, after, [event], at, participant=back)


def _waiting_since(p: Participant) -> float:
    return p.waiting_since if p.waiting_since is not None else p.knocked_at
