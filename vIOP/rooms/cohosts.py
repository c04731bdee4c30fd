"""Co-hosts (issue 15): a room run by more than one clinician, and what happens when the last one leaves.

"The hosts of a room" is one concept: :attr:`Room.host_ids` in the live room, the room record's host plus its
co-hosts in SQL (``vIOP.auth.room_records``). Every host has every host control. When the last host present
leaves a started room without ending it, the room stays open for its clients for a grace period
(:attr:`Room.hostless_since` counts it), then the sweeper ends it
(:func:`vIOP.rooms.in_room.end_if_hostless`).

Pure functions ``Room -> Transition``; a refusal raises and changes nothing. Ids only in the events.
"""

from __future__ import annotations

import dataclasses

from vIOP.ids import UserId
from vIOP.rooms.errors import AlreadyAHost, NotACohost, TooManyHosts
from vIOP.rooms.events import Event, HostAdded, HostRemoved, LeaveReason, Left
from vIOP.rooms.participant import ParticipantState, Role
from vIOP.rooms.room import MAX_HOSTS, Room, RoomState, Transition

STARTED_STATES = frozenset({RoomState.LIVE, RoomState.LOCKED})


def has_host_present(room: Room) -> bool:
    """A host holds a seat or is in the room (one whose connection dropped still counts, within its own
    reconnect grace)."""
    return any(p.role is Role.HOST and p.is_active for p in room.participants)


def noting_hosts(room: Room, at: float) -> Room:
    """``room`` with :attr:`Room.hostless_since` kept true: set when a started room has just lost its last
    host, cleared when one is back. Every step that can change who is present ends with it."""
    if has_host_present(room) or room.state not in STARTED_STATES:
        return room if room.hostless_since is None else dataclasses.replace(room, hostless_since=None)
    if room.hostless_since is not None:
        return room
    return dataclasses.replace(room, hostless_since=at)


def add_host(room: Room, *, user_id: UserId, by: UserId | None, at: float) -> Transition:
    """``user_id`` (a clinician account: the caller checks that) becomes a host of the live room."""
    room.require_not_ended()
    if user_id in room.host_ids:
        raise AlreadyAHost("that clinician already hosts this room")
    if len(room.host_ids) >= MAX_HOSTS:
        raise TooManyHosts(f"a room has at most {MAX_HOSTS} hosts")
    after = dataclasses.replace(room, host_ids=room.host_ids | {user_id})
    return Transition(after, (HostAdded(room_id=room.id, at=at, user_id=user_id, by=by),))


def remove_host(room: Room, *, user_id: UserId, owner: UserId, by: UserId | None, at: float) -> Transition:
    """``user_id`` stops being a co-host; if present, they leave the room. ``owner`` (the record's host, who
    created the room) is not a co-host and cannot be removed."""
    room.require_not_ended()
    if user_id == owner or user_id not in room.host_ids:
        raise NotACohost("that clinician is not a co-host of this room")
    after = dataclasses.replace(room, host_ids=room.host_ids - {user_id})
    events: list[Event] = []
    present = room.active_of(user_id)
    if present is not None:
        after = after.with_participant(present.moved_to(ParticipantState.LEFT, at))
        events.append(
            Left(room_id=room.id, participant_id=present.id, at=at, reason=LeaveReason.LEFT, present_until=at)
        )
    events.append(HostRemoved(room_id=room.id, at=at, user_id=user_id, by=by))
    return Transition(noting_hosts(after, at), tuple(events), present)
