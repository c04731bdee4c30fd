"""The private "I need to talk" signal (issue 15): a client asks for a clinician (a distress or check-in
request). Only the room's hosts and the staff presence dashboard see it, never other clients; it stays until
a host acknowledges it. It lives with the participant (``Participant.talk_requested_at``: an id and a time,
nothing else), so it survives a reconnect, a host's page reload and a process change like the rest of the
room. Pure functions ``Room -> Transition``; a refusal raises and changes nothing.
"""

from __future__ import annotations

import dataclasses

from vIOP.ids import ParticipantId
from vIOP.rooms.errors import IllegalTransition, InvalidRoomInput
from vIOP.rooms.events import TalkAcknowledged, TalkRequested
from vIOP.rooms.participant import Role
from vIOP.rooms.room import Room, Transition


class NoTalkRequest(IllegalTransition):
    """Acknowledging a participant who has no pending request."""

    code = "no_talk_request"


def request_talk(room: Room, *, participant_id: ParticipantId, at: float) -> Transition:
    """A client (waiting or seated) asks to talk; asking again while pending changes nothing."""
    room.require_not_ended()
    asker = room.participant(participant_id)
    if asker.role is not Role.CLIENT:
        raise InvalidRoomInput("only a client asks to talk")
    if not asker.is_active:
        raise IllegalTransition(f"the participant is {asker.state.value}")
    if asker.talk_requested_at is not None:
        return Transition(room, (), asker)
    changed = dataclasses.replace(asker, talk_requested_at=at)
    event = TalkRequested(room_id=room.id, participant_id=asker.id, at=at)
    return Transition(room.with_participant(changed), (event,), changed)


def acknowledge_talk(
    room: Room, *, by: ParticipantId, participant_id: ParticipantId, at: float
) -> Transition:
    """A host has seen the request: it is cleared for every host and staff view, and the client is told."""
    room.require_host(by)
    asker = room.participant(participant_id)
    if asker.talk_requested_at is None:
        raise NoTalkRequest("that participant has no request to talk waiting")
    changed = dataclasses.replace(asker, talk_requested_at=None)
    event = TalkAcknowledged(room_id=room.id, participant_id=asker.id, at=at, by=by)
    return Transition(room.with_participant(changed), (event,), changed)
