"""A TOTP code is good for one sign-in: remember the last time step each account used (RFC 6238 §5.2).

The store (:class:`vIOP.storage.redis_auth.RedisTotpSteps`) keeps the last accepted step per account long
enough to outlive the verification window, and claims a step by compare-and-set, so two sign-ins racing with
one code have one winner.
"""

from __future__ import annotations

from typing import Final, Protocol

from vIOP.auth.passwords import TOTP_STEP_SECONDS
from vIOP.ids import UserId

_KEEP_SECONDS: Final = 10 * TOTP_STEP_SECONDS  # well past any verification window


class TotpSteps(Protocol):
    async def claim(self, user_id: str, step: int, keep_seconds: int) -> bool:
        """Atomically: True and remember ``step`` if it is later than the last one claimed, else False."""
        ...


class TotpReplayGuard:
    def __init__(self, steps: TotpSteps) -> None:
        self._steps = steps

    async def claim(self, user_id: UserId, step: int) -> bool:
        """True the first time ``step`` (or a later one) is used by this account; False for a replay."""
        return await self._steps.claim(user_id, step, _KEEP_SECONDS)
