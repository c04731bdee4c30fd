"""What the relay learned about a subscriber's downlink, kept for its next connection from the same address.

A client on a weak link reconnects often (Wi-Fi drops, a phone changes cell), and each new peer connection
began knowing nothing: everyone's video was forwarded until its first feedback, 2-2.5 Mbit/s for ~2.5 s into
a 250 kbit/s link, which drops most of everyone's audio in the very seconds the person comes back (and can
drop the connection again). A connection that found its link short leaves what it learned here; the next
one of the same participant from the same network address within :data:`LINK_MEMORY_SECONDS` starts from it
(``vIOP.media.peer``): video waits for the budget, and probes are paced from the rate the link failed at.

No address is kept: only a keyed digest of it (the key is random per process and never leaves it), so a
memory dump or a debugger shows no client's network address (PHI). In memory only, per process: a node
that restarts, or another node a client moves to, starts afresh.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final

LINK_MEMORY_SECONDS: Final = 120.0
"""How long a link's lesson holds: a reconnect comes within seconds, a changed network usually changes the
address too; a better link found later is found by probes as on any connection."""
MAX_REMEMBERED: Final = 10_000  # links kept at most (one process's participants, with room to spare)


@dataclass(frozen=True, slots=True)
class KnownLink:
    """A downlink found short: its estimate (bits per second) and the least rate it failed at, if known."""

    estimate_bps: int
    ceiling_bps: float | None


@dataclass(slots=True)
class LinkMemory:
    keep_for: float = LINK_MEMORY_SECONDS
    clock: Callable[[], float] = time.monotonic
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    _links: dict[Hashable, tuple[bytes, KnownLink, float]] = field(default_factory=dict, repr=False)

    def tag(self, host: str) -> bytes:
        """The keyed digest an address is remembered by."""
        return hmac.new(self._key, host.encode(), hashlib.sha256).digest()[:16]

    def remember(self, who: Hashable, tag: bytes, link: KnownLink) -> None:
        now = self.clock()
        self._forget_old(now)
        self._links.pop(who, None)
        if len(self._links) >= MAX_REMEMBERED:
            del self._links[next(iter(self._links))]  # the oldest: insertion order is time order
        self._links[who] = (tag, link, now)

    def recall(self, who: Hashable, tag: bytes) -> KnownLink | None:
        """What ``who``'s last connection from the address ``tag`` stands for learned, if recent."""
        self._forget_old(self.clock())
        entry = self._links.get(who)
        if entry is None or not hmac.compare_digest(entry[0], tag):
            return None
        return entry[1]

    def _forget_old(self, now: float) -> None:
        links = self._links
        while links:
            who, (_, _, at) = next(iter(links.items()))
            if now - at <= self.keep_for:
                return
            del links[who]

    def __len__(self) -> int:
        return len(self._links)
