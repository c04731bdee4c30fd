"""The audit name of every permission-table action: what a done (or refused) action is recorded as, on
HTTP and on the signaling socket alike."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from vIOP.auth.permissions import Action
from vIOP.storage.audit import AuditEvent

AUDIT_NAMES: Final[Mapping[Action, AuditEvent]] = MappingProxyType(
    {
        Action.LOGOUT: AuditEvent.LOGOUT,
        Action.CREATE_ROOM: AuditEvent.ROOM_CREATED,
        Action.VIEW_ROOM: AuditEvent.ROOM_VIEWED,
        Action.CREATE_INVITE: AuditEvent.INVITE_CREATED,
        Action.REVOKE_INVITE: AuditEvent.INVITE_REVOKED,
        Action.ISSUE_SIGNAL_TICKET: AuditEvent.TICKET_ISSUED,
        Action.ISSUE_PRESENCE_TICKET: AuditEvent.TICKET_ISSUED,
        Action.GET_TURN_CREDENTIALS: AuditEvent.TURN_ISSUED,
        Action.JOIN: AuditEvent.JOIN,
        Action.OFFER: AuditEvent.SIGNAL,
        Action.ANSWER: AuditEvent.SIGNAL,
        Action.CANDIDATE: AuditEvent.SIGNAL,
        Action.LEAVE: AuditEvent.LEFT,
        Action.SET_MEDIA: AuditEvent.SIGNAL,
        Action.RAISE_HAND: AuditEvent.SIGNAL,
        Action.SET_SUBSCRIPTIONS: AuditEvent.SIGNAL,
        Action.SAVE_DATA: AuditEvent.SIGNAL,
        Action.PING: AuditEvent.SIGNAL,
        Action.ADMIT: AuditEvent.ADMIT,
        Action.ADMIT_ALL: AuditEvent.ADMIT,
        Action.DENY: AuditEvent.DENY,
        Action.LOBBY_MESSAGE: AuditEvent.LOBBY_MESSAGE,
        Action.RETURN_TO_LOBBY: AuditEvent.RETURN_TO_LOBBY,
        Action.MUTE: AuditEvent.MUTE,
        Action.REMOVE: AuditEvent.REMOVE,
        Action.LOCK: AuditEvent.LOCKED,
        Action.UNLOCK: AuditEvent.UNLOCKED,
        Action.END: AuditEvent.ROOM_ENDED,
        Action.CHAT: AuditEvent.CHAT,
        Action.SET_CHAT_POLICY: AuditEvent.CHAT_POLICY,
        Action.VIEW_PRESENCE: AuditEvent.PRESENCE_VIEWED,
        Action.VIEW_ATTENDANCE: AuditEvent.ATTENDANCE_EXPORTED,
        Action.MANAGE_USERS: AuditEvent.USER_CREATED,  # CLI only (user.created/disabled/enabled/mfa_reset)
        Action.ROTATE_KEYS: AuditEvent.KEYS_ROTATED,  # CLI only
        Action.READ_AUDIT: AuditEvent.AUDIT_VERIFIED,  # CLI only
        # issue 15
        Action.ADD_COHOST: AuditEvent.COHOST_ADDED,
        Action.REMOVE_COHOST: AuditEvent.COHOST_REMOVED,
        Action.NEED_TO_TALK: AuditEvent.NEED_TO_TALK,
        Action.ACKNOWLEDGE_NEED: AuditEvent.NEED_ACKNOWLEDGED,
        Action.START_BREAKOUT: AuditEvent.BREAKOUT_STARTED,
        Action.END_BREAKOUT: AuditEvent.BREAKOUT_ENDED,
        Action.SET_DISPLAY_NAME: AuditEvent.DISPLAY_NAME_CHANGED,
        Action.SAVE_CHAT_TRANSCRIPT: AuditEvent.CHAT_TRANSCRIPT_SAVED,
        Action.VIEW_CHAT_TRANSCRIPT: AuditEvent.CHAT_TRANSCRIPT_VIEWED,
        Action.START_SHARE: AuditEvent.SHARE_STARTED,
        Action.STOP_SHARE: AuditEvent.SHARE_STOPPED,
        Action.ALLOW_SHARE: AuditEvent.SHARE_ALLOWED,
        Action.REVOKE_SHARE: AuditEvent.SHARE_REVOKED,
        # issue 16 (MANAGE_TRACK: changed exceptions; ending a track is written as track.ended)
        Action.CREATE_TRACK: AuditEvent.TRACK_CREATED,
        Action.VIEW_TRACK: AuditEvent.TRACK_VIEWED,
        Action.MANAGE_TRACK: AuditEvent.TRACK_CHANGED,
        Action.ENROLL_CLIENT: AuditEvent.ENROLLMENT_CREATED,
        Action.REVOKE_ENROLLMENT: AuditEvent.ENROLLMENT_REVOKED,
        Action.CREATE_CALENDAR_FEED: AuditEvent.CALENDAR_FEED_CREATED,
        Action.REVOKE_CALENDAR_FEED: AuditEvent.CALENDAR_FEED_REVOKED,
    }
)


def audit_name(action: Action) -> AuditEvent | str:
    """The audit action for a permission action (an action added later without a name: ``access.<it>``)."""
    return AUDIT_NAMES.get(action) or f"access.{action.value}"
