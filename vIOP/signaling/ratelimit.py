"""A token bucket with an injectable clock, and the per-connection inbound message limit built on it."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
"""Monotonic seconds; tests pass a hand-driven clock instead of sleeping."""


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` banked. Starts full."""

    __slots__ = ("_capacity", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, capacity: float, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("a token bucket needs rate > 0 and capacity >= 1")
        self._rate = rate
        self._capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()

    def try_take(self, tokens: float = 1.0) -> bool:
        now = self._clock()
        # max(0, ...): a clock that steps back must not drain the bucket.
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True
        return False

    @property
    def tokens(self) -> float:
        return self._tokens


class InboundVerdict(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"  # reply error `rate_limited`, do not process the message
    CLOSE = "close"  # still flooding after many rejections: reply error, close 1008


@dataclass(frozen=True, slots=True)
class MessageRateLimit:
    """Defaults leave room for a browser's burst of ICE candidates right after its offer."""

    per_second: float = 20.0
    burst: float = 60.0
    # Rejections tolerated before closing: `strikes` at once, one more every `strike_refill_seconds`.
    strikes: float = 20.0
    strike_refill_seconds: float = 5.0


class InboundLimiter:
    __slots__ = ("_messages", "_strikes")

    def __init__(self, limit: MessageRateLimit, clock: Clock = time.monotonic) -> None:
        self._messages = TokenBucket(limit.per_second, limit.burst, clock)
        self._strikes = TokenBucket(1.0 / limit.strike_refill_seconds, limit.strikes, clock)

    def check(self) -> InboundVerdict:
        if self._messages.try_take():
            return InboundVerdict.ACCEPT
        if self._strikes.try_take():
            return InboundVerdict.REJECT
        return InboundVerdict.CLOSE
