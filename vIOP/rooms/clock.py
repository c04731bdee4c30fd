"""Time as an injectable dependency: the service reads ``clock()``; tests move a :class:`ManualClock`."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds since the epoch, as ``time.time`` returns them."""

system_clock: Clock = time.time


class ManualClock:
    """A clock that only moves when told to. Call it like ``time.time``."""

    __slots__ = ("now",)

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self.now += seconds
        return self.now
