"""Helpers shared by the identity and access tests: a settable clock and cheap (but real) argon2id."""

from __future__ import annotations

import argon2

# Real argon2id, small parameters: the algorithm is the same, only the cost differs from production.
CHEAP_ARGON2 = argon2.Parameters(
    type=argon2.Type.ID, version=19, salt_len=16, hash_len=32, time_cost=1, memory_cost=1024, parallelism=1
)


class ManualClock:
    """An injectable clock (epoch seconds) that only moves when a test moves it."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
