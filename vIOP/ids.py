"""Opaque identifiers. Ids never carry PHI: they are random and meaningless outside vIOP."""

from __future__ import annotations

import secrets
from typing import NewType

RoomId = NewType("RoomId", str)
ParticipantId = NewType("ParticipantId", str)
UserId = NewType("UserId", str)
ClientId = NewType("ClientId", str)
InviteId = NewType("InviteId", str)
SessionId = NewType("SessionId", str)


def new_id(prefix: str) -> str:
    """A random id with a short type prefix (``rm_``, ``pt_``...) so logs stay readable without PHI."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


def new_room_id() -> RoomId:
    return RoomId(new_id("rm"))


def new_participant_id() -> ParticipantId:
    return ParticipantId(new_id("pt"))


def new_user_id() -> UserId:
    return UserId(new_id("us"))


def new_client_id() -> ClientId:
    return ClientId(new_id("cl"))


def new_invite_id() -> InviteId:
    return InviteId(new_id("iv"))


def new_session_id() -> SessionId:
    return SessionId(new_id("ss"))


# --- the program around the sessions (issue 16) ---------------------------------------------------------

TrackId = NewType("TrackId", str)
EnrollmentId = NewType("EnrollmentId", str)
CalendarFeedId = NewType("CalendarFeedId", str)


def new_track_id() -> TrackId:
    return TrackId(new_id("tk"))


def new_enrollment_id() -> EnrollmentId:
    return EnrollmentId(new_id("en"))


def new_calendar_feed_id() -> CalendarFeedId:
    return CalendarFeedId(new_id("cf"))
