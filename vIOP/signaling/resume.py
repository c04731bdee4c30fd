"""Resume tokens: how a client whose socket dropped takes its participant back without a new knock.

A token is 256 random bits shown to the client once (in ``welcome``). Only its SHA-256 is stored, with the
grant it unlocks: participant, room, and the subject (ClientId or UserId) of the ticket that joined. A
redeem must come with a fresh ticket for the same room and subject: another client of the same group who
steals a token cannot wear that participant. Tokens are single use; a resumed connection gets a new one.

The grace window is the token's time to live. While the socket is up, each heartbeat renews it to
``grace + heartbeat`` seconds (so tokens of a crashed process die by themselves); when the drop is seen,
:meth:`ResumeTokens.start_grace` sets it to exactly ``grace``.

Storage sits behind :class:`ResumeTokenStore`, a single-use byte store with TTLs: the in-memory twin
below for domain tests, ``vIOP.storage.redis_resume_tokens.RedisResumeTokenStore`` in the app.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

import msgspec

from vIOP.errors import Unauthenticated
from vIOP.ids import ParticipantId, RoomId
from vIOP.signaling.ratelimit import Clock

TOKEN_PREFIX = "rt_"  # noqa: S105 (a marker that helps log redaction, not a secret)
_TOKEN = re.compile(r"^rt_[A-Za-z0-9_-]{43}$")


class ResumeTokenStore(Protocol):
    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None: ...

    async def take(self, key: str) -> bytes | None:
        """Return and delete in one atomic step; None when absent or expired."""
        ...

    async def refresh(self, key: str, ttl_seconds: float) -> bool:
        """Set a new time to live counted from now; False when the key is gone."""
        ...

    async def delete(self, key: str) -> None: ...


class ResumeRejected(Unauthenticated):
    """Unknown, expired, used, or bound to someone else: the answer never says which."""

    code = "resume_rejected"


@dataclass(frozen=True, slots=True)
class ResumeGrant:
    participant_id: ParticipantId
    room_id: RoomId
    subject: str  # the ticket's subject (ClientId or UserId) that the participant belongs to


@dataclass(frozen=True, slots=True)
class IssuedResumeToken:
    token: str  # for the client only: send it in `welcome`, never log or store it
    handle: str  # the stored key (a hash): keep it with the connection to renew, arm or revoke


class _StoredGrant(msgspec.Struct, array_like=True, frozen=True):
    participant_id: str
    room_id: str
    subject: str


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_StoredGrant).decode


def handle_of(token: str) -> str:
    """The store key of a token. A plain hash is enough: the token itself carries 256 random bits."""
    return hashlib.sha256(token.encode()).hexdigest()


class ResumeTokens:
    def __init__(
        self, store: ResumeTokenStore, *, grace_seconds: float = 60.0, heartbeat_seconds: float = 10.0
    ):
        if grace_seconds <= 0 or heartbeat_seconds <= 0:
            raise ValueError("grace and heartbeat must be positive")
        self._store = store
        self.grace_seconds = grace_seconds
        self._live_ttl = grace_seconds + heartbeat_seconds

    async def issue(self, grant: ResumeGrant) -> IssuedResumeToken:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        handle = handle_of(token)
        record = _StoredGrant(grant.participant_id, grant.room_id, grant.subject)
        await self._store.put(handle, _encode(record), self._live_ttl)
        return IssuedResumeToken(token=token, handle=handle)

    async def keep_alive(self, handle: str) -> bool:
        """On every heartbeat of the live connection. False: the token is gone (revoked or redeemed)."""
        return await self._store.refresh(handle, self._live_ttl)

    async def start_grace(self, handle: str) -> bool:
        """When the socket is seen to drop: the token now lives exactly the grace window."""
        return await self._store.refresh(handle, self.grace_seconds)

    async def restore(self, handle: str, grant: ResumeGrant) -> None:
        """Put back the token of a live connection after Redis lost its data (the connection keeps the
        handle, never the token: the client's token stays valid). Lives like a renewed token."""
        record = _StoredGrant(grant.participant_id, grant.room_id, grant.subject)
        await self._store.put(handle, _encode(record), self._live_ttl)

    async def revoke(self, handle: str) -> None:
        """Leave, removal, denial, end: no resume afterwards."""
        await self._store.delete(handle)

    async def redeem(self, token: str, *, room_id: RoomId, subject: str) -> ResumeGrant:
        """Consume the token. It is spent even when the binding does not match (a misused token dies)."""
        if not isinstance(token, str) or not _TOKEN.match(token):
            raise ResumeRejected("resume token not accepted; join again")
        raw = await self._store.take(handle_of(token))
        if raw is None:
            raise ResumeRejected("resume token not accepted; join again")
        try:
            stored = _decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise ResumeRejected("resume token not accepted; join again") from None
        if stored.room_id != room_id or stored.subject != subject:
            raise ResumeRejected("resume token not accepted; join again")
        return ResumeGrant(ParticipantId(stored.participant_id), RoomId(stored.room_id), stored.subject)


class MemoryResumeTokenStore:
    """In-memory twin of the Redis store for fast tests; same contract, driven by an injectable clock."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[bytes, float]] = {}

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        now = self._clock()
        # Drop expired entries as we go so the twin stays bounded like Redis would.
        for stale in [k for k, (_, expires) in self._entries.items() if expires <= now]:
            del self._entries[stale]
        self._entries[key] = (value, now + ttl_seconds)

    async def take(self, key: str) -> bytes | None:
        entry = self._entries.pop(key, None)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    async def refresh(self, key: str, ttl_seconds: float) -> bool:
        entry = self._entries.get(key)
        now = self._clock()
        if entry is None or entry[1] <= now:
            self._entries.pop(key, None)
            return False
        self._entries[key] = (entry[0], now + ttl_seconds)
        return True

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    def remaining(self, key: str) -> float | None:
        """Seconds left before ``key`` expires (for tests and diagnostics), None when absent."""
        entry = self._entries.get(key)
        left = None if entry is None else entry[1] - self._clock()
        return left if left is not None and left > 0 else None

    def __len__(self) -> int:
        return len(self._entries)
