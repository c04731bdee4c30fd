"""Typed refusals of the room domain. Every one leaves the room exactly as it was."""

from __future__ import annotations

from vIOP.errors import BadRequest, Conflict, Forbidden, NotFound


class RoomNotFound(NotFound):
    code = "room_not_found"


class ParticipantNotFound(NotFound):
    """Unknown participant id, or one that belongs to another room."""

    code = "participant_not_found"


class RoomAlreadyEnded(Conflict):
    code = "room_ended"


class RoomLocked(Conflict):
    code = "room_locked"


class RoomFull(Conflict):
    code = "room_full"


class AlreadyPresent(Conflict):
    """The same client or clinician is already knocking, waiting or in this room."""

    code = "already_present"


class IllegalTransition(Conflict):
    """The participant or room is not in a state that allows this action (e.g. admitting twice)."""

    code = "illegal_transition"


class NotAHost(Forbidden):
    code = "not_a_host"


class InvalidRoomInput(BadRequest):
    code = "invalid_input"


class RoomAlreadyOpen(Conflict):
    code = "room_already_open"


class NotActive(Conflict):
    """The participant has left, was removed or denied: heartbeats and reconnects are refused."""

    code = "participant_not_active"


# --- co-hosts (issue 15) ---------------------------------------------------------------------------------


class AlreadyAHost(Conflict):
    """The clinician added as a co-host already hosts this room."""

    code = "already_a_host"


class NotACohost(Conflict):
    """Removing someone who is not a co-host of this room (the room's own host is not removable)."""

    code = "not_a_cohost"


class TooManyHosts(Conflict):
    code = "too_many_hosts"
