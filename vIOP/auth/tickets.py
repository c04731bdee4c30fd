"""Signaling tickets: the short-lived, single-use credential that opens ``/ws/signal`` or ``/ws/presence``.

A browser cannot set an ``Authorization`` header on a WebSocket, and a bearer token in a URL ends up in
logs; so an authenticated HTTP call trades the access token (or invite token) for a ticket that is useless
seconds later. A ticket is bound to the identity, the purpose and the room it was issued for, lives at most
30 seconds and is redeemed with ``GETDEL`` (one atomic read-and-delete: two sockets racing with one ticket
cannot both win). Redis holds only ``SHA-256(ticket)`` as key and opaque ids as value; the ticket itself is
never stored and never appears in an error message.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import msgspec
import redis.asyncio as aioredis

from vIOP.auth.permissions import Action, Principal, Role, RoomScope, authorize
from vIOP.errors import Unauthenticated
from vIOP.ids import RoomId

TICKET_PREFIX: Final = "vtk_"
MAX_TICKET_SECONDS: Final = 30
_TICKET_CHARS: Final = len(TICKET_PREFIX) + 43  # token_urlsafe(32)
_KEY = "viop:ticket:"


class TicketPurpose(StrEnum):
    SIGNAL = "signal"
    PRESENCE = "presence"


_ISSUE_ACTION: Final = {
    TicketPurpose.SIGNAL: Action.ISSUE_SIGNAL_TICKET,
    TicketPurpose.PRESENCE: Action.ISSUE_PRESENCE_TICKET,
}


class TicketFailure(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN = "unknown"  # never issued, already used, or dropped by Redis after its TTL
    EXPIRED = "expired"
    WRONG_PURPOSE = "wrong_purpose"


class TicketRejected(Unauthenticated):
    def __init__(self, reason: TicketFailure) -> None:
        super().__init__("the ticket is invalid, expired or already used")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TicketGrant:
    """What a redeemed ticket proves: who, for what, in which room (None: presence of every visible room).

    ``session`` is the access token's ``jti`` for accounts (so the socket can keep the session alive and be
    closed on logout) and the invite id for clients.
    """

    principal: Principal
    purpose: TicketPurpose
    room_id: RoomId | None
    session: str | None
    expires_at: float


@dataclass(frozen=True, slots=True)
class IssuedTicket:
    ticket: str
    expires_in: int


class _Stored(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    role: str
    subject: str
    principal_room: str | None
    purpose: str
    room: str | None
    session: str | None
    expires_at: float


def _key(ticket: str) -> str:
    return _KEY + hashlib.sha256(ticket.encode("ascii")).hexdigest()


class SignalTickets:
    def __init__(
        self,
        redis: aioredis.Redis,
        ttl_seconds: int = MAX_TICKET_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= ttl_seconds <= MAX_TICKET_SECONDS:
            raise ValueError(f"a ticket lives between 1 and {MAX_TICKET_SECONDS} seconds")
        self._redis = redis
        self._ttl = ttl_seconds
        self._clock = clock

    async def issue(
        self, principal: Principal, purpose: TicketPurpose, room: RoomScope | None, session: str | None = None
    ) -> IssuedTicket:
        """Authorize (raises Forbidden) and store a fresh ticket. ``room`` is required for SIGNAL."""
        authorize(principal, _ISSUE_ACTION[purpose], room)
        ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
        stored = _Stored(
            role=principal.role.value,
            subject=principal.subject,
            principal_room=principal.room_id,
            purpose=purpose.value,
            room=room.room_id if room is not None else None,
            session=session,
            expires_at=self._clock() + self._ttl,
        )
        await self._redis.set(_key(ticket), msgspec.json.encode(stored), ex=self._ttl, nx=True)
        return IssuedTicket(ticket=ticket, expires_in=self._ttl)

    async def redeem(self, ticket: str, purpose: TicketPurpose) -> TicketGrant:
        """Consume ``ticket`` (whatever the outcome: a refused ticket is gone too) and return its grant."""
        if len(ticket) != _TICKET_CHARS or not ticket.startswith(TICKET_PREFIX) or not ticket.isascii():
            raise TicketRejected(TicketFailure.MALFORMED)
        raw = await self._redis.getdel(_key(ticket))
        if raw is None:
            raise TicketRejected(TicketFailure.UNKNOWN)
        stored = msgspec.json.decode(raw, type=_Stored)
        if self._clock() >= stored.expires_at:
            raise TicketRejected(TicketFailure.EXPIRED)
        if stored.purpose != purpose.value:
            raise TicketRejected(TicketFailure.WRONG_PURPOSE)
        principal_room = RoomId(stored.principal_room) if stored.principal_room is not None else None
        return TicketGrant(
            principal=Principal(Role(stored.role), stored.subject, principal_room),
            purpose=purpose,
            room_id=RoomId(stored.room) if stored.room is not None else None,
            session=stored.session,
            expires_at=stored.expires_at,
        )
