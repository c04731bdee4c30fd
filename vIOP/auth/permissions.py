"""Who may do what: THE role x action matrix, in one table, plus the room-scope rule.

Every HTTP route and every signaling message maps to one :class:`Action`. A role holds one :class:`Grant` per
action: ``NONE`` (refused), ``OWN`` (only in rooms the principal belongs to: the rooms a clinician hosts, the
one room a client's invite is for) or ``ALL`` (any room, or an action that concerns no room).

Staff run the program (presence across rooms) but never moderate and never join: no clinical content.
Admins manage users and keys, read the audit log and see presence/attendance everywhere, but do not join
sessions; their attendance reports carry no client names unless they open a break-glass grant for that room
(``vIOP/compliance/break_glass.py``), which a clinician may also open for a room they do not host. This module is pure: no I/O, no framework imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Final, Protocol

from vIOP.errors import Forbidden
from vIOP.ids import RoomId


class PrincipalRole(StrEnum):
    """What a signed-in principal is across the product (not a participant's role in one room: that is
    ``vIOP.rooms.participant.Role``, host or client)."""

    ADMIN = "admin"
    CLINICIAN = "clinician"
    STAFF = "staff"
    CLIENT = "client"


# The short name every caller imports; the class carries the full one (e.g. in the OpenAPI components).
Role = PrincipalRole


ACCOUNT_ROLES: Final = frozenset({Role.ADMIN, Role.CLINICIAN, Role.STAFF})
"""Roles that have accounts. Clients have none: they join from an invite link."""


class Action(StrEnum):
    # HTTP: accounts and sessions
    LOGOUT = "logout"
    # HTTP: rooms, invites, tickets, credentials
    CREATE_ROOM = "create_room"
    VIEW_ROOM = "view_room"
    CREATE_INVITE = "create_invite"
    REVOKE_INVITE = "revoke_invite"
    ISSUE_SIGNAL_TICKET = "issue_signal_ticket"
    ISSUE_PRESENCE_TICKET = "issue_presence_ticket"
    GET_TURN_CREDENTIALS = "get_turn_credentials"
    # signaling: every participant (client -> server)
    JOIN = "join"
    OFFER = "offer"
    ANSWER = "answer"
    CANDIDATE = "candidate"
    LEAVE = "leave"
    SET_MEDIA = "set_media"
    RAISE_HAND = "raise_hand"
    SET_SUBSCRIPTIONS = "set_subscriptions"
    SAVE_DATA = "save_data"
    PING = "ping"
    # signaling: hosts only (host -> server)
    ADMIT = "admit"
    ADMIT_ALL = "admit_all"
    DENY = "deny"
    LOBBY_MESSAGE = "lobby_message"
    RETURN_TO_LOBBY = "return_to_lobby"
    MUTE = "mute"
    REMOVE = "remove"
    LOCK = "lock"
    UNLOCK = "unlock"
    END = "end"
    # signaling, chat (issue 15): every participant, and hosts only
    CHAT = "chat"
    SET_CHAT_POLICY = "set_chat_policy"
    # monitoring and records (HTTP GET /presence, WS /ws/presence, GET /attendance)
    VIEW_PRESENCE = "view_presence"
    VIEW_ATTENDANCE = "view_attendance"
    # administration
    MANAGE_USERS = "manage_users"
    ROTATE_KEYS = "rotate_keys"
    READ_AUDIT = "read_audit"
    # compliance (issue 11): emergency access, its review, 42 CFR Part 2 consents
    BREAK_GLASS = "break_glass"
    REVIEW_BREAK_GLASS = "review_break_glass"
    MANAGE_CONSENT = "manage_consent"
    # issue 15: co-hosts (HTTP) and the private "I need to talk" signal (signaling)
    ADD_COHOST = "add_cohost"
    REMOVE_COHOST = "remove_cohost"
    NEED_TO_TALK = "need_to_talk"
    # issue 16: webhook subscriptions (signed events to the EHR)
    MANAGE_WEBHOOKS = "manage_webhooks"
    ACKNOWLEDGE_NEED = "acknowledge_need"
    # issue 15: private breakout (signaling)
    START_BREAKOUT = "start_breakout"
    END_BREAKOUT = "end_breakout"
    SET_DISPLAY_NAME = "set_display_name"  # one's own, over HTTP (the CLI's set-display-name is MANAGE_USERS)
    # issue 15: a room's chat transcript saved to the session record, and read back (HTTP)
    SAVE_CHAT_TRANSCRIPT = "save_chat_transcript"
    VIEW_CHAT_TRANSCRIPT = "view_chat_transcript"
    # issue 15: screen share (signaling)
    START_SHARE = "start_share"
    STOP_SHARE = "stop_share"
    ALLOW_SHARE = "allow_share"
    REVOKE_SHARE = "revoke_share"
    # issue 16: tracks (a track's "room scope" is its clinicians: see vIOP.session.tracks.track_scope),
    # enrollments and calendar feeds
    CREATE_TRACK = "create_track"
    VIEW_TRACK = "view_track"
    MANAGE_TRACK = "manage_track"
    ENROLL_CLIENT = "enroll_client"
    REVOKE_ENROLLMENT = "revoke_enrollment"
    CREATE_CALENDAR_FEED = "create_calendar_feed"
    REVOKE_CALENDAR_FEED = "revoke_calendar_feed"


class Grant(Enum):
    NONE = "none"
    OWN = "own"
    ALL = "all"


_N, _O, _A = Grant.NONE, Grant.OWN, Grant.ALL

# fmt: off
#                                         admin clinician staff client
_TABLE: Final[dict[Action, tuple[Grant, Grant, Grant, Grant]]] = {
    Action.LOGOUT:                        (_A,   _A,       _A,   _N),
    Action.CREATE_ROOM:                   (_N,   _A,       _N,   _N),
    Action.VIEW_ROOM:                     (_A,   _O,       _A,   _O),
    Action.CREATE_INVITE:                 (_N,   _O,       _N,   _N),
    Action.REVOKE_INVITE:                 (_A,   _O,       _N,   _N),
    Action.ISSUE_SIGNAL_TICKET:           (_N,   _O,       _N,   _O),
    Action.ISSUE_PRESENCE_TICKET:         (_A,   _O,       _A,   _N),
    Action.GET_TURN_CREDENTIALS:          (_N,   _O,       _N,   _O),
    Action.JOIN:                          (_N,   _O,       _N,   _O),
    Action.OFFER:                         (_N,   _O,       _N,   _O),
    Action.ANSWER:                        (_N,   _O,       _N,   _O),
    Action.CANDIDATE:                     (_N,   _O,       _N,   _O),
    Action.LEAVE:                         (_N,   _O,       _N,   _O),
    Action.SET_MEDIA:                     (_N,   _O,       _N,   _O),
    Action.RAISE_HAND:                    (_N,   _O,       _N,   _O),
    Action.SET_SUBSCRIPTIONS:             (_N,   _O,       _N,   _O),
    Action.SAVE_DATA:                     (_N,   _O,       _N,   _O),
    Action.PING:                          (_N,   _O,       _N,   _O),
    Action.ADMIT:                         (_N,   _O,       _N,   _N),
    Action.ADMIT_ALL:                     (_N,   _O,       _N,   _N),
    Action.DENY:                          (_N,   _O,       _N,   _N),
    Action.LOBBY_MESSAGE:                 (_N,   _O,       _N,   _N),
    Action.RETURN_TO_LOBBY:               (_N,   _O,       _N,   _N),
    Action.MUTE:                          (_N,   _O,       _N,   _N),
    Action.REMOVE:                        (_N,   _O,       _N,   _N),
    Action.LOCK:                          (_N,   _O,       _N,   _N),
    Action.UNLOCK:                        (_N,   _O,       _N,   _N),
    Action.END:                           (_N,   _O,       _N,   _N),
    # chat (issue 15)
    Action.CHAT:                          (_N,   _O,       _N,   _O),
    Action.SET_CHAT_POLICY:               (_N,   _O,       _N,   _N),
    Action.VIEW_PRESENCE:                 (_A,   _O,       _A,   _N),
    Action.VIEW_ATTENDANCE:               (_A,   _O,       _N,   _N),
    Action.MANAGE_USERS:                  (_A,   _N,       _N,   _N),
    Action.ROTATE_KEYS:                   (_A,   _N,       _N,   _N),
    Action.READ_AUDIT:                    (_A,   _N,       _N,   _N),
    Action.BREAK_GLASS:                   (_A,   _A,       _N,   _N),
    Action.REVIEW_BREAK_GLASS:            (_A,   _N,       _N,   _N),
    Action.MANAGE_CONSENT:                (_A,   _N,       _N,   _N),
    Action.MANAGE_WEBHOOKS:               (_A,   _N,       _N,   _N),  # issue 16
    # issue 15: every host of the room (its creator and co-hosts) adds and removes co-hosts; only a client
    # signals "I need to talk"; only a host acknowledges it
    Action.ADD_COHOST:                    (_N,   _O,       _N,   _N),
    Action.REMOVE_COHOST:                 (_N,   _O,       _N,   _N),
    Action.NEED_TO_TALK:                  (_N,   _N,       _N,   _O),
    Action.ACKNOWLEDGE_NEED:              (_N,   _O,       _N,   _N),
    # issue 15: a host of the room (creator or co-host) moves a client into a private breakout and back
    Action.START_BREAKOUT:                (_N,   _O,       _N,   _N),
    Action.END_BREAKOUT:                  (_N,   _O,       _N,   _N),
    Action.SET_DISPLAY_NAME:              (_A,   _A,       _A,   _N),
    # issue 15: only the room's hosts save its chat transcript and read it back: it is clinical content,
    # which admins and staff never see (an admin's attendance reports carry no client names either)
    Action.SAVE_CHAT_TRANSCRIPT:          (_N,   _O,       _N,   _N),
    Action.VIEW_CHAT_TRANSCRIPT:          (_N,   _O,       _N,   _N),
    # issue 15: every participant of the room may start and stop a share (a client only while a host allows
    # it: a room rule, vIOP.rooms.share); only its hosts allow and revoke
    Action.START_SHARE:                   (_N,   _O,       _N,   _O),
    Action.STOP_SHARE:                    (_N,   _O,       _N,   _O),
    Action.ALLOW_SHARE:                   (_N,   _O,       _N,   _N),
    Action.REVOKE_SHARE:                  (_N,   _O,       _N,   _N),
    # issue 16: clinicians and admins manage tracks (an admin names the host); staff see schedules to run
    # the program; only a track's clinicians enroll clients (a client's name is clinical); nobody but the
    # owner of a calendar feed (or an admin, to revoke) touches it; clients manage nothing
    Action.CREATE_TRACK:                  (_A,   _A,       _N,   _N),
    Action.VIEW_TRACK:                    (_A,   _O,       _A,   _N),
    Action.MANAGE_TRACK:                  (_A,   _O,       _N,   _N),
    Action.ENROLL_CLIENT:                 (_N,   _O,       _N,   _N),
    Action.REVOKE_ENROLLMENT:             (_A,   _O,       _N,   _N),
    Action.CREATE_CALENDAR_FEED:          (_N,   _O,       _N,   _N),
    Action.REVOKE_CALENDAR_FEED:          (_A,   _O,       _N,   _N),
}
# fmt: on

_ROLE_ORDER: Final = (Role.ADMIN, Role.CLINICIAN, Role.STAFF, Role.CLIENT)

PERMISSIONS: Final[Mapping[Action, Mapping[Role, Grant]]] = MappingProxyType(
    {action: MappingProxyType(dict(zip(_ROLE_ORDER, row, strict=True))) for action, row in _TABLE.items()}
)

ROOM_FREE: Final = frozenset(
    {
        Action.LOGOUT,
        Action.CREATE_ROOM,
        Action.MANAGE_USERS,
        Action.ROTATE_KEYS,
        Action.READ_AUDIT,
        Action.REVIEW_BREAK_GLASS,
        Action.MANAGE_CONSENT,
        Action.MANAGE_WEBHOOKS,
        Action.SET_DISPLAY_NAME,
        Action.CREATE_TRACK,
        # listings: with an OWN grant the caller filters to the principal's rooms
        Action.ISSUE_PRESENCE_TICKET,
        Action.VIEW_PRESENCE,
        Action.VIEW_ATTENDANCE,
        Action.VIEW_TRACK,
    }
)
ROOM_REQUIRED: Final = frozenset(Action) - ROOM_FREE
"""Actions that always concern one room: authorizing them without naming the room is refused."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: an account (``subject`` is a UserId) or a client (a ClientId, bound to one room)."""

    role: Role
    subject: str
    room_id: RoomId | None = None

    def __post_init__(self) -> None:
        if (self.role is Role.CLIENT) != (self.room_id is not None):
            raise ValueError("a client principal is bound to exactly one room; accounts to none")


@dataclass(frozen=True, slots=True)
class RoomScope:
    """What the permission check needs to know about a room: its id and who hosts it."""

    room_id: RoomId
    host_ids: frozenset[str] = field(default_factory=frozenset)


class PermissionDenied(Forbidden):
    """A refusal by the table: says what was refused, and in which room, for the audit row (403)."""

    def __init__(self, message: str, action: Action, room_id: str | None = None) -> None:
        super().__init__(message)
        self.action = action
        self.room_id = room_id


class RoomDirectory(Protocol):
    async def room_scope(self, room_id: RoomId) -> RoomScope:
        """The room's scope; raises :class:`~vIOP.errors.NotFound` for an unknown room."""
        ...


def grant_for(role: Role, action: Action) -> Grant:
    return PERMISSIONS[action][role]


def belongs_to(principal: Principal, room: RoomScope) -> bool:
    """The scope rule: clinicians belong to rooms they host, clients to the room of their invite."""
    if principal.role is Role.CLIENT:
        return principal.room_id == room.room_id
    if principal.role is Role.CLINICIAN:
        return principal.subject in room.host_ids
    return False


def is_allowed(principal: Principal, action: Action, room: RoomScope | None = None) -> bool:
    grant = grant_for(principal.role, action)
    if grant is Grant.NONE:
        return False
    if room is None:
        return action not in ROOM_REQUIRED
    return grant is Grant.ALL or belongs_to(principal, room)


def authorize(principal: Principal, action: Action, room: RoomScope | None = None) -> Grant:
    """Raise :class:`PermissionDenied` (a :class:`Forbidden`) unless ``principal`` may do ``action`` (in ``room``); return the grant used.

    Without a room, listing actions (presence, attendance) return ``OWN`` or ``ALL``: with ``OWN`` the
    caller must filter to rooms where :func:`belongs_to` holds.
    """
    if not is_allowed(principal, action, room):
        what = action.value.replace("_", " ")
        room_id = room.room_id if room is not None else None
        grant = grant_for(principal.role, action)
        if grant is Grant.NONE:
            raise PermissionDenied(f"the {principal.role.value} role does not allow: {what}", action, room_id)
        if room is None:
            raise PermissionDenied(f"{what}: name the room", action, None)
        raise PermissionDenied(f"{what}: allowed only in your own rooms", action, room_id)
    return grant_for(principal.role, action)
