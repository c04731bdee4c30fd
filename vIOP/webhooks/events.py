"""Webhook event types, the id-only payload each may carry, and the port that emits them.

A payload holds ids, times (ISO 8601 UTC) and counts only: each event type names the keys it may carry
and :func:`check_payload` refuses anything else, so a caller cannot put a name or a message into the
outbox by mistake. Names reach a receiver only at delivery, only for a subscription allowed PHI over https
(``vIOP.session.webhooks``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Final, Protocol

from vIOP.errors import BadRequest


class WebhookEventType(StrEnum):
    SESSION_STARTED = "session.started"  # a room went live (its first host entered)
    SESSION_ENDED = "session.ended"  # the room ended
    ATTENDANCE_FINALIZED = "attendance.finalized"  # per client per room session, at its end
    CLIENT_NO_SHOW = "client.no_show"  # an expected client had not arrived N minutes after start


PayloadValue = str | int | float | bool | None
Payload = Mapping[str, PayloadValue]

_PROGRAM_IDS: Final = frozenset({"room_id", "session_id", "track_id", "occurrence_id", "enrollment_id"})
ALLOWED_KEYS: Final[dict[WebhookEventType, frozenset[str]]] = {
    WebhookEventType.SESSION_STARTED: frozenset(
        {"room_id", "session_id", "track_id", "occurrence_id", "started_at"}
    ),
    WebhookEventType.SESSION_ENDED: frozenset(
        {"room_id", "session_id", "track_id", "occurrence_id", "started_at", "ended_at"}
    ),
    WebhookEventType.ATTENDANCE_FINALIZED: frozenset(
        {"room_id", "session_id", "client_id", "track_id", "occurrence_id", "minutes", "audio_only_minutes"}
    ),
    WebhookEventType.CLIENT_NO_SHOW: _PROGRAM_IDS | {"client_id", "starts_at", "flagged_at", "minutes_late"},
}
# Which id a subscription allowed PHI may see the name of (added at delivery, never stored).
NAMED_BY: Final = {"client_id": "client_name", "room_id": "room_title"}

_ID_OR_TIME = re.compile(r"^[A-Za-z0-9_:.+-]{1,128}$")  # ids (rm_..., cl_...) and ISO 8601 times


class BadPayload(BadRequest):
    code = "bad_webhook_payload"


def check_payload(event_type: WebhookEventType | str, payload: Payload) -> dict[str, PayloadValue]:
    """The payload as stored: known keys of this event type, ids/times as short opaque text, numbers.
    BadPayload for an unknown type, an unknown key or free text (a name would be free text)."""
    try:
        kind = WebhookEventType(event_type)
    except ValueError:
        raise BadPayload(f"unknown webhook event type {event_type!r}") from None
    allowed = ALLOWED_KEYS[kind]
    out: dict[str, PayloadValue] = {}
    for key, value in payload.items():
        if key not in allowed:
            raise BadPayload(f"{kind.value} carries no {key!r} (ids, times and counts only)")
        if isinstance(value, str) and not _ID_OR_TIME.match(value):
            raise BadPayload(f"{kind.value}: {key!r} must be an id or an ISO 8601 time")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise BadPayload(f"{kind.value}: {key!r} must be text, a number or a boolean")
        out[key] = value
    return out


class WebhookEvents(Protocol):
    """The application's way to emit a webhook event: one outbox row per subscription to ``event_type``,
    durable once this returns (delivered later, retried until the receiver takes it). BadPayload (nothing
    stored) for a payload that is not ids, times and counts."""

    async def emit(self, event_type: WebhookEventType, payload: Payload) -> None: ...
