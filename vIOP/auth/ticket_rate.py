"""How often one credential may obtain signaling tickets: every ticket is a knock (or a reconnect), so a
flood from one invite link would otherwise fill hosts' lobbies, the audit log and Redis at line rate.

A fixed window per subject (:class:`TicketRateCounter`; in Redis, ``vIOP.storage.redis_auth``) (the client id behind an invite, or the account's user id; opaque ids,
never a name), counted with one atomic INCR. A legitimate client needs one ticket per (re)connect, and
reconnects back off (0.5, 1, 2, 4 s...): 20 a minute leaves room for a bad network. Over the limit the
request is refused with 429 and ``Retry-After`` before anything is spent (no invite use, no ticket).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final, Protocol

from vIOP.errors import RateLimited

TICKETS_PER_WINDOW: Final = 20
WINDOW_SECONDS: Final = 60


class TicketRateLimited(RateLimited):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many connection attempts; try again in {retry_after} seconds")
        self.retry_after = retry_after


class TicketRateCounter(Protocol):
    async def count(self, subject: str, window: int, ttl_seconds: int) -> int:
        """Add one to ``subject``'s counter for ``window`` (kept ``ttl_seconds``); the new count."""
        ...


class TicketRateLimit:
    def __init__(
        self,
        counter: TicketRateCounter,
        *,
        per_window: int = TICKETS_PER_WINDOW,
        window_seconds: int = WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._counter = counter
        self._limit = per_window
        self._window = window_seconds
        self._clock = clock

    async def spend(self, subject: str) -> None:
        """Count one ticket request by ``subject``; raise :class:`TicketRateLimited` over the limit."""
        now = self._clock()
        window = int(now // self._window)
        count = await self._counter.count(subject, window, 2 * self._window)
        if count > self._limit:
            raise TicketRateLimited(max(1, math.ceil((window + 1) * self._window - now)))
