"""Signaling tickets: the short-lived, single-use credential that opens ``/ws/signal`` or ``/ws/presence``.

A browser cannot set an ``Authorization`` header on a WebSocket, and a bearer token in a URL ends up in
logs; so an authenticated HTTP call trades the access token (or invite token) for a ticket that is useless
seconds later. A ticket is bound to the identity, the purpose and the room it was issued for, lives at most
30 seconds and is redeemed by one atomic read-and-delete (:class:`TicketStore`; ``GETDEL`` in
:class:`vIOP.storage.redis_auth.RedisTicketStore`: two sockets racing with one ticket cannot both win). The
store holds only ``SHA-256(ticket)`` as key and opaque ids as value; the ticket itself is never stored and
never appears in an error message.

The store is not trusted to vouch for a ticket: each record carries an HMAC-SHA256 (a key derived from the
key ring) over the ticket's digest and the record, checked in constant time, so a record written straight into Redis
opens nothing. A ticket issued at or before a revocation of its subject (:mod:`vIOP.auth.revocation`) is
refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Protocol

import msgspec

from vIOP.auth.permissions import ACCOUNT_ROLES, Action, Principal, Role, RoomScope, authorize
from vIOP.auth.revocation import Revocations
from vIOP.errors import Unauthenticated
from vIOP.ids import RoomId

TICKET_PREFIX: Final = "vtk_"
MAX_TICKET_SECONDS: Final = 30
_TICKET_CHARS: Final = len(TICKET_PREFIX) + 43  # token_urlsafe(32)
_MAC_BYTES: Final = 32
MAC_KEY_PURPOSE: Final = "signal-ticket/hmac-sha256/v1"  # ``ring.derive_key(MAC_KEY_PURPOSE)``


class TicketPurpose(StrEnum):
    SIGNAL = "signal"
    PRESENCE = "presence"


# The permission a caller needs to be issued a ticket of each purpose (the HTTP route checks it too).
ISSUE_ACTION: Final[Mapping[TicketPurpose, Action]] = MappingProxyType(
    {
        TicketPurpose.SIGNAL: Action.ISSUE_SIGNAL_TICKET,
        TicketPurpose.PRESENCE: Action.ISSUE_PRESENCE_TICKET,
    }
)


class TicketFailure(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN = "unknown"  # never issued, already used, or dropped by Redis after its TTL
    EXPIRED = "expired"
    WRONG_PURPOSE = "wrong_purpose"
    FORGED = "forged"  # a stored record the app did not write (bad or missing MAC)
    REVOKED = "revoked"  # issued at or before a revocation of its subject


class TicketRejected(Unauthenticated):
    def __init__(self, reason: TicketFailure) -> None:
        super().__init__("the ticket is invalid, expired or already used")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TicketGrant:
    """What a redeemed ticket proves: who, for what, in which room (None: presence of every visible room).

    ``session`` is the access token's ``jti`` for accounts (so the socket can keep the session alive and be
    closed on logout) and the invite id for clients. ``issued_at`` places the socket before or after a
    revocation; ``session_ends_at`` (token ``exp`` or invite expiry) is when the socket must close.
    """

    principal: Principal
    purpose: TicketPurpose
    room_id: RoomId | None
    session: str | None
    expires_at: float
    issued_at: float = 0.0
    session_ends_at: float | None = None


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
    issued_at: float
    session_ends_at: float | None


class TicketStore(Protocol):
    """Where ticket records wait to be redeemed (:class:`vIOP.storage.redis_auth.RedisTicketStore`)."""

    async def put(self, ticket_id: str, record: bytes, ttl_seconds: int) -> None:
        """Keep ``record`` under ``ticket_id`` for ``ttl_seconds`` unless the id is taken."""
        ...

    async def take(self, ticket_id: str) -> bytes | None:
        """The record, removed in the same atomic step; None if there is none."""
        ...


def _ticket_id(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("ascii")).hexdigest()


# The MAC binds a record to its ticket's digest under this label (the Redis key name before the store moved
# to vIOP.storage: the same bytes, so tickets in flight across an upgrade stay valid).
_MAC_LABEL: Final = "viop:ticket:"


def _mac(key: bytes, ticket_id: str, record: bytes) -> bytes:
    return hmac.new(key, (_MAC_LABEL + ticket_id).encode() + b"\x00" + record, hashlib.sha256).digest()


class SignalTickets:
    def __init__(
        self,
        store: TicketStore,
        mac_key: bytes,
        ttl_seconds: int = MAX_TICKET_SECONDS,
        clock: Callable[[], float] = time.time,
        revocations: Revocations | None = None,
    ) -> None:
        if not 1 <= ttl_seconds <= MAX_TICKET_SECONDS:
            raise ValueError(f"a ticket lives between 1 and {MAX_TICKET_SECONDS} seconds")
        if len(mac_key) < 32:
            raise ValueError("the ticket MAC key has at least 32 bytes")
        self._store = store
        self._mac_key = mac_key
        self._ttl = ttl_seconds
        self._clock = clock
        self._revocations = revocations

    async def issue(
        self,
        principal: Principal,
        purpose: TicketPurpose,
        room: RoomScope | None,
        session: str | None = None,
        session_ends_at: float | None = None,
    ) -> IssuedTicket:
        """Authorize (raises Forbidden) and store a fresh ticket. ``room`` is required for SIGNAL."""
        authorize(principal, ISSUE_ACTION[purpose], room)
        ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        stored = _Stored(
            role=principal.role.value,
            subject=principal.subject,
            principal_room=principal.room_id,
            purpose=purpose.value,
            room=room.room_id if room is not None else None,
            session=session,
            expires_at=now + self._ttl,
            issued_at=now,
            session_ends_at=session_ends_at,
        )
        name = _ticket_id(ticket)
        record = msgspec.json.encode(stored)
        await self._store.put(name, _mac(self._mac_key, name, record) + record, self._ttl)
        return IssuedTicket(ticket=ticket, expires_in=self._ttl)

    async def redeem(self, ticket: str, purpose: TicketPurpose) -> TicketGrant:
        """Consume ``ticket`` (whatever the outcome: a refused ticket is gone too) and return its grant."""
        if len(ticket) != _TICKET_CHARS or not ticket.startswith(TICKET_PREFIX) or not ticket.isascii():
            raise TicketRejected(TicketFailure.MALFORMED)
        name = _ticket_id(ticket)
        raw = await self._store.take(name)
        if raw is None:
            raise TicketRejected(TicketFailure.UNKNOWN)
        stored = self._authentic(name, raw)
        if self._clock() >= stored.expires_at:
            raise TicketRejected(TicketFailure.EXPIRED)
        if stored.purpose != purpose.value:
            raise TicketRejected(TicketFailure.WRONG_PURPOSE)
        role = Role(stored.role)
        if self._revocations is not None and await self._revocations.check(
            stored.subject, stored.issued_at, account=role in ACCOUNT_ROLES
        ):
            raise TicketRejected(TicketFailure.REVOKED)
        principal_room = RoomId(stored.principal_room) if stored.principal_room is not None else None
        return TicketGrant(
            principal=Principal(role, stored.subject, principal_room),
            purpose=purpose,
            room_id=RoomId(stored.room) if stored.room is not None else None,
            session=stored.session,
            expires_at=stored.expires_at,
            issued_at=stored.issued_at,
            session_ends_at=stored.session_ends_at,
        )

    def _authentic(self, name: str, raw: bytes) -> _Stored:
        """The record, if this app wrote it (constant-time MAC check) and it still decodes."""
        mac, record = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, _mac(self._mac_key, name, record)):
            raise TicketRejected(TicketFailure.FORGED)
        try:
            stored = msgspec.json.decode(record, type=_Stored)
            Role(stored.role)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            raise TicketRejected(TicketFailure.FORGED) from None
        return stored
