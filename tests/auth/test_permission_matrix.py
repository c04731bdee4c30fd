"""Every role x every action, in its own room, in someone else's room and without a room.

The expectations below are written from the product rules (issue 4), independently of the table in
``vIOP/auth/permissions.py``: if either changes alone, this test fails.
"""

from __future__ import annotations

import itertools

import pytest

from vIOP.auth.permissions import (
    PERMISSIONS,
    ROOM_REQUIRED,
    Action,
    Grant,
    Principal,
    Role,
    RoomScope,
    authorize,
    belongs_to,
    grant_for,
    is_allowed,
)
from vIOP.errors import Forbidden
from vIOP.ids import RoomId

A, C, S, CL = Role.ADMIN, Role.CLINICIAN, Role.STAFF, Role.CLIENT
OWN, ALL = Grant.OWN, Grant.ALL

PARTICIPANT_MESSAGES = {
    Action.JOIN, Action.OFFER, Action.ANSWER, Action.CANDIDATE, Action.LEAVE, Action.SET_MEDIA,
    Action.RAISE_HAND, Action.SAVE_DATA, Action.SET_SUBSCRIPTIONS, Action.PING, Action.ISSUE_SIGNAL_TICKET,
    Action.GET_TURN_CREDENTIALS,
}  # fmt: skip
MODERATION = {
    Action.ADMIT, Action.ADMIT_ALL, Action.DENY, Action.LOBBY_MESSAGE, Action.RETURN_TO_LOBBY,
    Action.MUTE, Action.REMOVE, Action.LOCK, Action.UNLOCK, Action.END, Action.CREATE_INVITE,
}  # fmt: skip
ADMINISTRATION = {Action.MANAGE_USERS, Action.ROTATE_KEYS, Action.READ_AUDIT}
# issue 15, chat: every participant may chat (the room's chat switch decides clients' room chat); only the
# hosts may turn clients' chat to everyone on or off
CHAT_MESSAGES = {Action.CHAT}
CHAT_MODERATION = {Action.SET_CHAT_POLICY}
# issue 15: adding/removing co-hosts and acknowledging "I need to talk" are host controls like the others;
# only a client asks to talk (a clinician who needs a colleague has other ways)
COHOSTING = {Action.ADD_COHOST, Action.REMOVE_COHOST, Action.ACKNOWLEDGE_NEED}
MODERATION |= COHOSTING
# issue 15: a room's chat transcript is saved to the session record and read back by its hosts only (clinical
# content: no admin or staff reads it)
CHAT_TRANSCRIPT = {Action.SAVE_CHAT_TRANSCRIPT, Action.VIEW_CHAT_TRANSCRIPT}
MODERATION |= CHAT_TRANSCRIPT
# issue 15: screen share: every participant may start and stop one (a client only while a host allows it: a room
# rule, not a role's); only hosts allow and revoke
PARTICIPANT_MESSAGES |= {Action.START_SHARE, Action.STOP_SHARE}
MODERATION |= {Action.ALLOW_SHARE, Action.REVOKE_SHARE}
# issue 15: moving a client into a private breakout with a clinician, and back, is a host control
MODERATION |= {Action.START_BREAKOUT, Action.END_BREAKOUT}

EXPECTED: dict[Action, dict[Role, Grant]] = {
    **{a: {C: OWN, CL: OWN} for a in PARTICIPANT_MESSAGES},
    **{a: {C: OWN} for a in MODERATION},
    **{a: {A: ALL} for a in ADMINISTRATION},
    **{a: {C: OWN, CL: OWN} for a in CHAT_MESSAGES},
    **{a: {C: OWN} for a in CHAT_MODERATION},
    Action.LOGOUT: {A: ALL, C: ALL, S: ALL},
    Action.CREATE_ROOM: {C: ALL},
    Action.VIEW_ROOM: {A: ALL, C: OWN, S: ALL, CL: OWN},
    Action.REVOKE_INVITE: {A: ALL, C: OWN},
    Action.ISSUE_PRESENCE_TICKET: {A: ALL, C: OWN, S: ALL},
    Action.VIEW_PRESENCE: {A: ALL, C: OWN, S: ALL},
    Action.VIEW_ATTENDANCE: {A: ALL, C: OWN},
    # issue 11: emergency access to a room outside one's scope (admins, covering clinicians); its review
    # by a second admin; 42 CFR part 2 consents
    Action.BREAK_GLASS: {A: ALL, C: ALL},
    Action.REVIEW_BREAK_GLASS: {A: ALL},
    Action.MANAGE_CONSENT: {A: ALL},
    Action.MANAGE_WEBHOOKS: {A: ALL},  # issue 16
    Action.NEED_TO_TALK: {CL: OWN},
    Action.SET_DISPLAY_NAME: {A: ALL, C: ALL, S: ALL},  # one's own name, as every account may sign out
    # issue 16: tracks, enrollments, calendar feeds
    Action.CREATE_TRACK: {A: ALL, C: ALL},
    Action.VIEW_TRACK: {A: ALL, C: OWN, S: ALL},
    Action.MANAGE_TRACK: {A: ALL, C: OWN},
    Action.ENROLL_CLIENT: {C: OWN},
    Action.REVOKE_ENROLLMENT: {A: ALL, C: OWN},
    Action.CREATE_CALENDAR_FEED: {C: OWN},
    Action.REVOKE_CALENDAR_FEED: {A: ALL, C: OWN},
}

ROOM_X, ROOM_Y = RoomId("rm_x"), RoomId("rm_y")
HOST_A, HOST_B = "us_host_a", "us_host_b"
OWN_ROOM = RoomScope(ROOM_X, frozenset({HOST_A}))
OTHER_ROOM = RoomScope(ROOM_Y, frozenset({HOST_B}))


def principal(role: Role) -> Principal:
    if role is Role.CLIENT:
        return Principal(role, "cl_1", room_id=ROOM_X)
    if role is Role.CLINICIAN:
        return Principal(role, HOST_A)
    return Principal(role, f"us_{role.value}")


def expected(role: Role, action: Action) -> Grant:
    return EXPECTED[action].get(role, Grant.NONE)


def test_every_action_is_specified() -> None:
    assert set(EXPECTED) == set(Action)
    assert set(PERMISSIONS) == set(Action)
    assert all(set(PERMISSIONS[a]) == set(Role) for a in Action)


@pytest.mark.parametrize(("role", "action"), list(itertools.product(Role, Action)))
def test_role_action(role: Role, action: Action) -> None:
    grant = expected(role, action)
    assert grant_for(role, action) is grant
    who = principal(role)
    in_own = grant is not Grant.NONE
    in_other = grant is Grant.ALL
    without_room = grant is not Grant.NONE and action not in ROOM_REQUIRED
    assert is_allowed(who, action, OWN_ROOM) is in_own
    assert is_allowed(who, action, OTHER_ROOM) is in_other
    assert is_allowed(who, action) is without_room
    for room, allowed in ((OWN_ROOM, in_own), (OTHER_ROOM, in_other), (None, without_room)):
        if allowed:
            assert authorize(who, action, room) is grant
        else:
            with pytest.raises(Forbidden):
                authorize(who, action, room)


@pytest.mark.parametrize("action", sorted(MODERATION | PARTICIPANT_MESSAGES))
def test_clinician_cannot_act_in_another_clinicians_room(action: Action) -> None:
    clinician_a = Principal(Role.CLINICIAN, HOST_A)
    with pytest.raises(Forbidden):
        authorize(clinician_a, action, OTHER_ROOM)
    # ...but a co-host of that room may.
    co_hosted = RoomScope(ROOM_Y, frozenset({HOST_B, HOST_A}))
    assert authorize(clinician_a, action, co_hosted) is Grant.OWN


@pytest.mark.parametrize("action", sorted(PARTICIPANT_MESSAGES))
def test_client_invite_for_room_x_is_refused_on_room_y(action: Action) -> None:
    client = Principal(Role.CLIENT, "cl_1", room_id=ROOM_X)
    assert is_allowed(client, action, OWN_ROOM)
    # Room Y hosted by nobody the client knows, and room Y even if its host list names the client id.
    for room in (OTHER_ROOM, RoomScope(ROOM_Y, frozenset({"cl_1"}))):
        with pytest.raises(Forbidden):
            authorize(client, action, room)


@pytest.mark.parametrize("action", sorted(MODERATION))
def test_staff_never_moderate_anywhere(action: Action) -> None:
    staff = Principal(Role.STAFF, "us_staff")
    staff_hosted = RoomScope(ROOM_X, frozenset({"us_staff"}))
    for room in (OWN_ROOM, OTHER_ROOM, staff_hosted, None):
        with pytest.raises(Forbidden):
            authorize(staff, action, room)


def test_listing_grants_tell_the_caller_to_filter() -> None:
    assert authorize(Principal(Role.CLINICIAN, HOST_A), Action.VIEW_PRESENCE) is Grant.OWN
    assert authorize(Principal(Role.STAFF, "us_s"), Action.VIEW_PRESENCE) is Grant.ALL
    assert authorize(Principal(Role.ADMIN, "us_a"), Action.VIEW_ATTENDANCE) is Grant.ALL


def test_scope_rule() -> None:
    assert belongs_to(Principal(Role.CLINICIAN, HOST_A), OWN_ROOM)
    assert not belongs_to(Principal(Role.CLINICIAN, HOST_B), OWN_ROOM)
    assert belongs_to(Principal(Role.CLIENT, "cl_9", ROOM_X), OWN_ROOM)
    assert not belongs_to(Principal(Role.STAFF, HOST_A), OWN_ROOM)  # same id, wrong role
    assert not belongs_to(Principal(Role.ADMIN, HOST_A), OWN_ROOM)


def test_refusals_say_why_without_naming_anyone() -> None:
    staff, clinician = Principal(Role.STAFF, "us_s"), Principal(Role.CLINICIAN, HOST_A)
    with pytest.raises(Forbidden, match=r"^the staff role does not allow: admit all$"):
        authorize(staff, Action.ADMIT_ALL, OWN_ROOM)
    with pytest.raises(Forbidden, match=r"^mute: allowed only in your own rooms$"):
        authorize(clinician, Action.MUTE, OTHER_ROOM)
    with pytest.raises(Forbidden, match=r"^join: name the room$"):
        authorize(clinician, Action.JOIN)


def test_client_principal_must_name_its_room() -> None:
    with pytest.raises(ValueError):
        Principal(Role.CLIENT, "cl_1")
    with pytest.raises(ValueError):
        Principal(Role.CLINICIAN, HOST_A, room_id=ROOM_X)


# --- issue 15: every host of a room (its creator and its co-hosts), and clinicians who host nothing --------

CO_HOSTED = RoomScope(ROOM_X, frozenset({HOST_A, HOST_B}))  # HOST_B added as co-host of HOST_A's room
HOST_CONTROLS = sorted(a for a in Action if grant_for(C, a) is OWN)


@pytest.mark.parametrize("action", HOST_CONTROLS)
def test_a_cohost_has_every_host_control_and_a_clinician_hosting_nothing_none(action: Action) -> None:
    cohost = Principal(Role.CLINICIAN, HOST_B)
    assert authorize(cohost, action, CO_HOSTED) is Grant.OWN
    # the same clinician before being added (or after removal): refused in that room
    with pytest.raises(Forbidden, match="allowed only in your own rooms"):
        authorize(cohost, action, OWN_ROOM)
    nobody_hosted = Principal(Role.CLINICIAN, "us_hosts_nothing")
    for room in (OWN_ROOM, CO_HOSTED, OTHER_ROOM):
        assert not is_allowed(nobody_hosted, action, room)


def test_only_a_client_asks_to_talk_and_only_a_host_acknowledges() -> None:
    client = Principal(Role.CLIENT, "cl_1", room_id=ROOM_X)
    assert authorize(client, Action.NEED_TO_TALK, OWN_ROOM) is Grant.OWN
    with pytest.raises(Forbidden):
        authorize(client, Action.ACKNOWLEDGE_NEED, OWN_ROOM)
    for role in (Role.CLINICIAN, Role.STAFF, Role.ADMIN):
        with pytest.raises(Forbidden):
            authorize(principal(role), Action.NEED_TO_TALK, CO_HOSTED)
    with pytest.raises(Forbidden):
        authorize(Principal(Role.STAFF, "us_staff"), Action.ACKNOWLEDGE_NEED, OWN_ROOM)
