"""Private breakout (issue 15): a host moves one client out of the group into a private 1:1 conversation with
a clinician (a host of the room: the one who starts it, or a co-host they name), and back.

The breakout is a sub-group inside the same room, not a second room: the client keeps their seat, their
socket, their peer connection and their attendance interval (one program session; the breakout is a span
within the stay, ``vIOP.rooms.attendance``). Both sides carry :attr:`Participant.breakout_with` (the
other's participant id); everyone else in the room is "the group". What the group learns is only that the
two "stepped out" (no reason); their media and room chat go to each other only (the relay and the chat
delivery filter by :func:`group_of`).

A breakout ends when a host ends it, or when either side stops being in the room (left after the reconnect
grace, removed, returned to the lobby, the room ended): :func:`settled` runs after every step and ends a
breakout whose other side is gone, so no path can leave half of one behind.

Pure functions ``Room -> Transition``; a refusal raises and changes nothing. Ids only in the events.
"""

from __future__ import annotations

import dataclasses

from vIOP.ids import ParticipantId
from vIOP.rooms.errors import IllegalTransition, InvalidRoomInput
from vIOP.rooms.events import BreakoutEnded, BreakoutStarted, Event, TalkAcknowledged
from vIOP.rooms.participant import Participant, Role
from vIOP.rooms.room import Room, Transition


class AlreadyInBreakout(IllegalTransition):
    """The client or the clinician is in a breakout already (one at a time each)."""

    code = "already_in_breakout"


class NotInBreakout(IllegalTransition):
    """Ending a breakout for someone who is not in one."""

    code = "not_in_breakout"


class NotSeatedInRoom(IllegalTransition):
    """The breakout's client (or clinician) is not in the room proper."""

    code = "not_in_room"


class NotAClinician(InvalidRoomInput):
    """The breakout's clinician is not a host of this room (or the client named is not a client)."""

    code = "not_a_clinician"


def group_of(p: Participant) -> ParticipantId | None:
    """Which media and chat group ``p`` is in: None for the room's group, else the breakout's key (its
    client's participant id, the same for both sides)."""
    if p.breakout_with is None:
        return None
    return p.id if p.role is Role.CLIENT else p.breakout_with


def start_breakout(
    room: Room,
    *,
    by: ParticipantId,
    participant_id: ParticipantId,
    clinician_id: ParticipantId | None = None,
    at: float,
) -> Transition:
    """``by`` (a host present) moves the client ``participant_id`` into a breakout with ``clinician_id``
    (default: ``by``). A pending request to talk from the client is acknowledged with it."""
    room.require_host(by)
    client = room.participant(participant_id)
    if client.role is not Role.CLIENT:
        raise NotAClinician("only a client can be moved into a breakout")
    if not client.is_seated:  # admitted (media not up yet) or in the room
        raise NotSeatedInRoom(f"the participant is {client.state.value}, not seated in the room")
    clinician = room.participant(clinician_id if clinician_id is not None else by)
    if clinician.role is not Role.HOST:
        raise NotAClinician("the breakout's clinician must be a host of this room")
    if not clinician.is_seated:
        raise NotSeatedInRoom("the breakout's clinician is not in the room")
    if client.breakout_with is not None or clinician.breakout_with is not None:
        raise AlreadyInBreakout("that client or clinician is in a breakout already")
    after = room.with_participant(
        dataclasses.replace(client, breakout_with=clinician.id, talk_requested_at=None)
    )
    after = after.with_participant(dataclasses.replace(clinician, breakout_with=client.id))
    events: list[Event] = [
        BreakoutStarted(room_id=room.id, participant_id=client.id, at=at, clinician=clinician.id, by=by)
    ]
    if client.talk_requested_at is not None:  # "Talk privately" answers the request to talk
        events.append(TalkAcknowledged(room_id=room.id, participant_id=client.id, at=at, by=by))
    return Transition(after, tuple(events), after.participant(client.id))


def end_breakout(room: Room, *, by: ParticipantId, participant_id: ParticipantId, at: float) -> Transition:
    """``by`` (a host present) brings the breakout of ``participant_id`` (its client or its clinician) back
    to the group: no knock, no new seat."""
    room.require_host(by)
    either = room.participant(participant_id)
    if either.breakout_with is None:
        raise NotInBreakout("that participant is not in a breakout")
    client, clinician = _sides(room, either)
    after = room.with_participant(dataclasses.replace(client, breakout_with=None))
    after = after.with_participant(dataclasses.replace(clinician, breakout_with=None))
    event = BreakoutEnded(room_id=room.id, participant_id=client.id, at=at, clinician=clinician.id, by=by)
    return Transition(after, (event,), after.participant(client.id))


def _sides(room: Room, either: Participant) -> tuple[Participant, Participant]:
    assert either.breakout_with is not None
    other = room.participant(either.breakout_with)
    return (either, other) if either.role is Role.CLIENT else (other, either)


def settled(t: Transition, at: float) -> Transition:
    """``t`` with every breakout whose other side is no longer in it ended (``BreakoutEnded`` by None). A
    participant leaving the room clears their own side (:meth:`Participant.moved_to`); this clears the
    other one."""
    room = t.room
    ids = {p.id: p for p in room.participants}
    events: list[Event] = []
    for p in room.participants:
        partner = ids.get(p.breakout_with) if p.breakout_with is not None else None
        if p.breakout_with is None or (partner is not None and partner.breakout_with == p.id):
            continue
        room = room.with_participant(dataclasses.replace(p, breakout_with=None))
        client, clinician = (p.id, p.breakout_with) if p.role is Role.CLIENT else (p.breakout_with, p.id)
        events.append(
            BreakoutEnded(room_id=room.id, participant_id=client, at=at, clinician=clinician, by=None)
        )
    if not events:
        return t
    acted = room.participant(t.participant.id) if t.participant is not None else None
    return Transition(room, (*t.events, *events), acted)
