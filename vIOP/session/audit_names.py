"""The audit name of every permission-table action: what a done (or refused) action is recorded as, on
HTTP and on the signaling socket alike."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from vIOP.auth.permissions import Action
from vIOP.storage.audit import Action as Audited

AUDIT_NAMES: Final[Mapping[Action, Audited]] = MappingProxyType(
    {
        Action.LOGOUT: Audited.LOGOUT,
        Action.CREATE_ROOM: Audited.ROOM_CREATED,
        Action.VIEW_ROOM: Audited.ROOM_VIEWED,
        Action.CREATE_INVITE: Audited.INVITE_CREATED,
        Action.REVOKE_INVITE: Audited.INVITE_REVOKED,
        Action.ISSUE_SIGNAL_TICKET: Audited.TICKET_ISSUED,
        Action.ISSUE_PRESENCE_TICKET: Audited.TICKET_ISSUED,
        Action.GET_TURN_CREDENTIALS: Audited.TURN_ISSUED,
        Action.JOIN: Audited.JOIN,
        Action.OFFER: Audited.SIGNAL,
        Action.ANSWER: Audited.SIGNAL,
        Action.CANDIDATE: Audited.SIGNAL,
        Action.LEAVE: Audited.LEFT,
        Action.SET_MEDIA: Audited.SIGNAL,
        Action.RAISE_HAND: Audited.SIGNAL,
        Action.PING: Audited.SIGNAL,
        Action.ADMIT: Audited.ADMIT,
        Action.ADMIT_ALL: Audited.ADMIT,
        Action.DENY: Audited.DENY,
        Action.LOBBY_MESSAGE: Audited.LOBBY_MESSAGE,
        Action.RETURN_TO_LOBBY: Audited.RETURN_TO_LOBBY,
        Action.MUTE: Audited.MUTE,
        Action.REMOVE: Audited.REMOVE,
        Action.LOCK: Audited.LOCKED,
        Action.UNLOCK: Audited.UNLOCKED,
        Action.END: Audited.ROOM_ENDED,
        Action.VIEW_PRESENCE: Audited.PRESENCE_VIEWED,
        Action.VIEW_ATTENDANCE: Audited.ATTENDANCE_EXPORTED,
        Action.MANAGE_USERS: Audited.USER_CREATED,  # CLI only (user.created/disabled/enabled/mfa_reset)
        Action.ROTATE_KEYS: Audited.KEYS_ROTATED,  # CLI only
        Action.READ_AUDIT: Audited.AUDIT_VERIFIED,  # CLI only
    }
)


def audit_name(action: Action) -> Audited | str:
    """The audit action for a permission action (an action added later without a name: ``access.<it>``)."""
    return AUDIT_NAMES.get(action) or f"access.{action.value}"
