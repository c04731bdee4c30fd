"""What happens once people hold seats: join, leave, remove, mute, reconnect, and the room's own lifecycle
(lock, unlock, end). Pure functions ``Room -> Transition``; a refusal raises and changes nothing."""

from __future__ import annotations

import dataclasses

from vIOP.ids import ParticipantId
from vIOP.rooms.cohosts import STARTED_STATES, has_host_present, noting_hosts
from vIOP.rooms.errors import IllegalTransition, InvalidRoomInput, RoomAlreadyEnded
from vIOP.rooms.events import (
    Event,
    Joined,
    LeaveReason,
    Left,
    Muted,
    MuteKind,
    Reconnecting,
    Removed,
    Resumed,
    RoomEnded,
    RoomLocked,
    RoomStarted,
    RoomUnlocked,
)
from vIOP.rooms.participant import Participant, ParticipantState, Role, clean_message
from vIOP.rooms.room import Room, RoomState, Transition
from vIOP.rooms.waiting_room import settle


def join(room: Room, *, participant_id: ParticipantId, at: float) -> Transition:
    """An admitted participant enters the room. The first host to enter starts the session."""
    room.require_not_ended()
    target = room.participant(participant_id)
    if target.state is not ParticipantState.ADMITTED:
        raise IllegalTransition(f"the participant is {target.state.value}, not admitted")
    inside = target.moved_to(ParticipantState.IN_ROOM, at)
    after = room.with_participant(inside)
    events: list[Event] = []
    if inside.role is Role.HOST and room.state is RoomState.OPEN:
        after = after.moved_to(RoomState.LIVE, at)
        events.append(RoomStarted(room_id=room.id, at=at, session_id=room.session_id))
    events.append(
        Joined(
            room_id=room.id,
            participant_id=inside.id,
            at=at,
            role=inside.role,
            display_name=inside.display_name,
            muted=inside.muted,
            video_muted=inside.video_muted,
        )
    )
    return Transition(after, tuple(events), inside)


def _gone(room: Room, target: Participant, reason: LeaveReason, at: float) -> tuple[Participant, Left]:
    present_until = at
    if reason is LeaveReason.TIMEOUT and target.reconnecting_since is not None:
        present_until = target.reconnecting_since
    left = target.moved_to(ParticipantState.LEFT, at)
    return left, Left(
        room_id=room.id, participant_id=target.id, at=at, reason=reason, present_until=present_until
    )


def leave(room: Room, *, participant_id: ParticipantId, at: float) -> Transition:
    """A participant leaves on their own, from the lobby or the room."""
    room.require_not_ended()
    target = room.participant(participant_id)
    if not target.is_active:
        raise IllegalTransition(f"the participant is already {target.state.value}")
    left, event = _gone(room, target, LeaveReason.LEFT, at)
    return settle(room, noting_hosts(room.with_participant(left), at), [event], at, participant=left)


def remove(
    room: Room, *, by: ParticipantId, participant_id: ParticipantId, at: float, message: str | None = None
) -> Transition:
    room.require_host(by)
    text = clean_message(message) if message is not None else None
    target = room.participant(participant_id)
    if target.role is Role.HOST:
        raise InvalidRoomInput("a host cannot be removed")
    if not target.is_seated:
        raise IllegalTransition(f"the participant is {target.state.value}; deny a waiting client instead")
    removed = target.moved_to(ParticipantState.REMOVED, at)
    event = Removed(room_id=room.id, participant_id=target.id, at=at, by=by, message=text)
    return Transition(room.with_participant(removed), (event,), removed)


def mute(
    room: Room,
    *,
    by: ParticipantId,
    participant_id: ParticipantId,
    muted: bool,
    at: float,
    media: MuteKind = MuteKind.AUDIO,
) -> Transition:
    """Record a host's audio or video mute (or unmute). The media layer enforces it; this is the record of
    it, kept with the participant so it outlives a reconnect and a return to the lobby."""
    room.require_host(by)
    target = room.participant(participant_id)
    if not target.is_seated:
        raise IllegalTransition(f"the participant is {target.state.value}, not in the room")
    field = "muted" if media is MuteKind.AUDIO else "video_muted"
    if getattr(target, field) == muted:
        return Transition(room, (), target)
    changed = dataclasses.replace(target, **{field: muted})  # type: ignore[arg-type]
    event = Muted(room_id=room.id, participant_id=target.id, at=at, by=by, muted=muted, media=media)
    return Transition(room.with_participant(changed), (event,), changed)


def _active(room: Room, participant_id: ParticipantId) -> Participant:
    room.require_not_ended()
    target = room.participant(participant_id)
    if not target.is_active:
        raise IllegalTransition(f"the participant is {target.state.value}")
    return target


def mark_reconnecting(
    room: Room, *, participant_id: ParticipantId, at: float, since: float | None = None
) -> Transition:
    """The participant's connection is gone: its socket closed (``since`` = now) or its heartbeats stopped
    (``since`` = the last one). Idempotent."""
    target = _active(room, participant_id)
    if target.reconnecting_since is not None:
        return Transition(room, (), target)
    changed = dataclasses.replace(target, reconnecting_since=at if since is None else min(since, at))
    event = Reconnecting(room_id=room.id, participant_id=target.id, at=at)
    return Transition(room.with_participant(changed), (event,), changed)


def resume(room: Room, *, participant_id: ParticipantId, at: float) -> Transition:
    """The participant is back (resume token or a heartbeat after being marked). Idempotent."""
    target = _active(room, participant_id)
    if target.reconnecting_since is None:
        return Transition(room, (), target)
    changed = dataclasses.replace(target, reconnecting_since=None)
    event = Resumed(room_id=room.id, participant_id=target.id, at=at)
    return Transition(room.with_participant(changed), (event,), changed)


def expire(room: Room, *, participant_id: ParticipantId, grace: float, at: float) -> Transition:
    """Let go of a participant whose reconnect grace has run out; nothing if they came back meanwhile."""
    if room.state is RoomState.ENDED:
        return Transition(room)
    target = room.participant(participant_id)
    since = target.reconnecting_since
    if not target.is_active or since is None or at - since < grace:
        return Transition(room, (), target)
    left, event = _gone(room, target, LeaveReason.TIMEOUT, at)
    return settle(room, noting_hosts(room.with_participant(left), at), [event], at, participant=left)


def lock(room: Room, *, by: ParticipantId, at: float) -> Transition:
    room.require_host(by)
    if room.state is not RoomState.LIVE:
        raise IllegalTransition(f"only a live room can be locked; this one is {room.state.value}")
    return Transition(room.moved_to(RoomState.LOCKED, at), (RoomLocked(room_id=room.id, at=at, by=by),))


def unlock(room: Room, *, by: ParticipantId, at: float) -> Transition:
    room.require_host(by)
    if room.state is not RoomState.LOCKED:
        raise IllegalTransition(f"the room is {room.state.value}, not locked")
    return Transition(room.moved_to(RoomState.LIVE, at), (RoomUnlocked(room_id=room.id, at=at, by=by),))


def end(room: Room, *, by: ParticipantId | None, at: float) -> Transition:
    """End the session: everyone still knocking, waiting or inside leaves with reason ``ended``.
    ``by`` is None when the system ends it (e.g. an administrator's action outside the room)."""
    if by is not None:
        room.require_host(by)
    elif room.state is RoomState.ENDED:
        raise RoomAlreadyEnded("the room has ended")
    after, events = room, []
    for target in list(room.active()):
        left, event = _gone(room, target, LeaveReason.ENDED, at)
        after = after.with_participant(left)
        events.append(event)
    after = after.moved_to(RoomState.ENDED, at)
    return Transition(after, (*events, RoomEnded(room_id=room.id, at=at, by=by)))


def end_if_hostless(room: Room, *, grace: float, at: float) -> Transition:
    """End a started room whose hosts have all been gone for ``grace`` seconds (issue 15: the last host
    left without ending it); nothing otherwise (a host came back, or the grace has not run out). Safe to run
    in every process at once: it re-checks the stored room."""
    since = room.hostless_since
    if room.state not in STARTED_STATES or since is None or has_host_present(room) or at - since < grace:
        return Transition(room)
    return end(room, by=None, at=at)
