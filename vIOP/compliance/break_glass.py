"""Break-glass (emergency) access, HIPAA 164.312(a)(2)(ii): the rule, without storage.

Normal scope (``vIOP/auth/permissions.py``): a clinician reads the attendance of the rooms they host, with
client names; an admin reads every room's attendance *without* client names (ids, minutes, flags). Going
beyond that (an admin naming a room's clients, a clinician covering a room they do not host) takes a
break-glass grant: one room, one stated reason, valid for a short time, used only by the person who opened
it, every use audited, and listed for review until a *second* admin signs it off.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Final

from vIOP.errors import BadRequest, Forbidden

MIN_REASON_CHARS: Final = 10
MAX_REASON_CHARS: Final = 500
HEADER: Final = "X-Break-Glass"
"""The request header that carries a grant id (``bg_...``)."""
_INVISIBLE: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


class BreakGlassRefused(Forbidden):
    """A grant that cannot be used here: not the caller's, another room, expired."""

    code = "break_glass_refused"


class SelfSignOff(Forbidden):
    code = "self_sign_off"


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    actor_id: str
    actor_role: str
    room_id: str
    reason: str
    created_at: float
    expires_at: float
    signed_off_by: str | None = None
    signed_off_at: float | None = None

    @property
    def reviewed(self) -> bool:
        return self.signed_off_by is not None


def check_reason(raw: str) -> str:
    """The reason as stored: NFC, trimmed, 10 to 500 visible characters (a real sentence, not "x")."""
    reason = unicodedata.normalize("NFC", raw).strip()
    if not MIN_REASON_CHARS <= len(reason) <= MAX_REASON_CHARS:
        raise BadRequest(f"state the reason in {MIN_REASON_CHARS} to {MAX_REASON_CHARS} characters")
    if any(unicodedata.category(ch) in _INVISIBLE and ch not in "\n" for ch in reason):
        raise BadRequest("the reason cannot contain control or invisible characters")
    return reason


def check_use(grant: Grant, actor_id: str, room_id: str | None, now: float) -> None:
    """Raise :class:`BreakGlassRefused` unless ``actor_id`` may use ``grant`` for ``room_id`` at ``now``."""
    if grant.actor_id != actor_id:
        raise BreakGlassRefused("this break-glass grant was opened by someone else")
    if room_id != grant.room_id:
        raise BreakGlassRefused("this break-glass grant is for another room: name its room_id")
    if now >= grant.expires_at:
        raise BreakGlassRefused("this break-glass grant has expired: open a new one with a reason")


def check_sign_off(grant: Grant, reviewer_id: str) -> None:
    """A second admin signs off: never the person who opened the grant."""
    if grant.actor_id == reviewer_id:
        raise SelfSignOff("a break-glass access is signed off by a second admin, not the one who opened it")
