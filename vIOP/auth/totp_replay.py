"""A TOTP code is good for one sign-in: remember the last time step each account used (RFC 6238 §5.2).

Redis holds ``viop:auth:totp-step:{user id}`` = the last accepted step, long enough to outlive the
verification window; a compare-and-set script makes two sign-ins racing with one code have one winner.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as aioredis

from vIOP.auth.passwords import TOTP_STEP_SECONDS
from vIOP.ids import UserId

_KEY = "viop:auth:totp-step:"
_KEEP_SECONDS: Final = 10 * TOTP_STEP_SECONDS  # well past any verification window

_CLAIM = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class TotpReplayGuard:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._claim = redis.register_script(_CLAIM)

    async def claim(self, user_id: UserId, step: int) -> bool:
        """True the first time ``step`` (or a later one) is used by this account; False for a replay."""
        return bool(await self._claim(keys=[_KEY + user_id], args=[step, _KEEP_SECONDS]))
