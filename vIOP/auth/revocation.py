"""Revocations that reach every live socket in every process within seconds (docs/API.md "Revocation").

A revocation names a subject (a user id, or a client id: one invite makes one client) and a time. It is
kept three ways, each for a different failure (the first two in Redis, by
:class:`vIOP.storage.redis_auth.RedisRevocationLog` behind :class:`RevocationLog`):

- a Redis key per subject holding the newest revocation time (``viop:revoked:account:{id}`` for account
  changes, which also void the subject's access tokens; ``viop:revoked:sockets:{id}`` for logout and invite
  revocation, which end sockets only). Every socket reads it at each heartbeat and a ticket is refused at
  redemption when it was issued at or before it: a missed message is caught within one heartbeat;
- an entry on the Redis Stream ``viop:revocations`` that every process follows: sockets close at once;
- an in-memory map subject -> newest revocation time in each process, fed by the stream and by heartbeats,
  checked before every signaling message (a dictionary lookup, no Redis round trip on the hot path).

A socket is revoked when its ticket was issued at or before the subject's revocation time, so a sign-in
after an ``enable`` (or a new invite's client) is never caught by an older revocation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

log = logging.getLogger(__name__)

# Longer than anything issued before a revocation can live: a token (7 days at most), a socket (bounded by
# its token or invite), a ticket (30 s).
KEEP_SECONDS: Final = 8 * 24 * 3600
_IN_MEMORY_LIMIT: Final = 100_000


class RevocationKind(StrEnum):
    ACCOUNT = "account"  # disabled, MFA reset (and any password reset or role change): tokens and sockets
    SIGNED_OUT = "signed_out"  # logout: the user's sockets close 1000 "signed out"
    INVITE = "invite"  # an invite revoked: its client's sockets close 1008 and their seat ends


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: RevocationKind
    subject: str
    at: float

    def covers(self, subject: str, issued_at: float) -> bool:
        return subject == self.subject and issued_at <= self.at


class RevocationLog(Protocol):
    """Where revocations are kept and announced (:class:`vIOP.storage.redis_auth.RedisRevocationLog`)."""

    async def append(self, kind: str, subject: str, at: float, *, account: bool, keep_seconds: int) -> None:
        """Record ``at`` as the subject's newest account (``account``) or sockets revocation and announce
        it to every follower, in one step."""
        ...

    async def latest(self, subject: str) -> tuple[Any, Any]:
        """The subject's stored (account, sockets) revocation times, each None when there is none."""
        ...

    def follow(self, block_ms: int) -> AsyncIterator[tuple[bytes, dict[Any, Any]]]:
        """Every announcement from now on, as (entry id, fields); raises on a lost connection."""
        ...


class Revocations:
    """Publish revocations (any process, the CLI included), follow them, and answer "is this revoked"."""

    def __init__(self, log: RevocationLog, clock: Callable[[], float] = time.time) -> None:
        self._log = log
        self.clock = clock
        self._latest: dict[str, Revocation] = {}

    # --- publishing ------------------------------------------------------------------------------

    async def publish(self, kind: RevocationKind, subject: str) -> Revocation:
        """Record the revocation (durably, for heartbeats and ticket redemption) and announce it."""
        revocation = Revocation(kind, subject, self.clock())
        await self._log.append(
            kind.value,
            subject,
            revocation.at,
            account=kind is RevocationKind.ACCOUNT,
            keep_seconds=KEEP_SECONDS,
        )
        self.note(revocation)
        return revocation

    # --- in memory (the hot path) ----------------------------------------------------------------

    def note(self, revocation: Revocation) -> None:
        current = self._latest.get(revocation.subject)
        if current is None or current.at < revocation.at:
            if len(self._latest) >= _IN_MEMORY_LIMIT:
                self._forget_oldest()
            self._latest[revocation.subject] = revocation

    def blocking(self, subject: str, issued_at: float) -> Revocation | None:
        """The revocation known to this process that covers a socket of ``subject`` opened from a ticket
        issued at ``issued_at``; no I/O."""
        revocation = self._latest.get(subject)
        return revocation if revocation is not None and revocation.covers(subject, issued_at) else None

    def _forget_oldest(self) -> None:
        horizon = self.clock() - KEEP_SECONDS
        for subject, revocation in list(self._latest.items()):
            if revocation.at < horizon:
                del self._latest[subject]
        if len(self._latest) >= _IN_MEMORY_LIMIT:  # still full: drop the oldest tenth (Redis keeps them)
            for subject, _ in sorted(self._latest.items(), key=lambda kv: kv[1].at)[: _IN_MEMORY_LIMIT // 10]:
                del self._latest[subject]

    # --- from Redis (heartbeats, ticket redemption, host actions) -------------------------------

    async def check(self, subject: str, issued_at: float, *, account: bool) -> Revocation | None:
        """The revocation in Redis that covers this socket (one MGET); noted in memory too."""
        account_at, sockets_at = await self._log.latest(subject)
        found: Revocation | None = None
        for raw, kind in (
            (account_at, RevocationKind.ACCOUNT),
            (sockets_at, RevocationKind.SIGNED_OUT if account else RevocationKind.INVITE),
        ):
            at = _time(raw)
            if at is not None and issued_at <= at and (found is None or found.at < at):
                found = Revocation(kind, subject, at)
        if found is not None:
            self.note(found)
        return found

    # --- following the stream --------------------------------------------------------------------

    async def follow(self, block_ms: int = 1000) -> AsyncIterator[Revocation]:
        """Every revocation published from now on (by any process). Raises on a lost connection: the
        caller re-follows (what was missed meanwhile is caught by the heartbeats)."""
        async for entry_id, fields in self._log.follow(block_ms):
            revocation = _decode(fields)
            if revocation is None:
                log.warning("skipped revocation entry %s", entry_id.decode())
                continue
            self.note(revocation)
            yield revocation


def _time(raw: Any) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def _decode(fields: dict[Any, Any]) -> Revocation | None:
    def field(name: str) -> str | None:
        value = fields.get(name.encode(), fields.get(name))
        return value.decode() if isinstance(value, bytes) else value if isinstance(value, str) else None

    kind, subject, at = field("k"), field("s"), _time(field("t"))
    if kind not in {k.value for k in RevocationKind} or not subject or at is None:
        return None
    return Revocation(RevocationKind(kind), subject, at)
