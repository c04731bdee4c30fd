"""Failed-login throttling per account and per address: exponential slow-down, then account lockout.

Attempts are counted pessimistically: :meth:`LoginThrottle.begin` counts the attempt as a failure before the
password is even checked, in one Lua script over both keys, so a burst of parallel guesses cannot all slip
through before the first failure is recorded. :meth:`LoginThrottle.succeeded` then clears the account's
count and gives the address its attempt back.

- Per account (keyed by the username's blind index, so unknown usernames behave exactly like known ones and
  the response reveals nothing): after ``account_free_failures`` the next attempt waits ``base * 2^k``
  seconds (capped), and after ``max_failures`` the account is locked for ``lockout_seconds``.
- Per address (keyed by a keyed hash of the IP): the same slow-down with a higher free allowance and no
  lockout (a clinic behind one NAT address must not lock itself out).

Redis holds ``viop:throttle:{account|address}:{hex}`` hashes of ``f`` (failures) and ``t`` (time of the last
attempt, from the injectable clock); the callers pass opaque keys, never a username or an IP.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis

from vIOP.errors import RateLimited

_ACCOUNT = "viop:throttle:account:"
_ADDRESS = "viop:throttle:address:"


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    max_failures: int = 5  # VIOP_LOGIN_MAX_FAILURES
    lockout_seconds: int = 15 * 60
    account_free_failures: int = 2
    address_free_failures: int = 10
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 5 * 60
    forget_after_seconds: int = 24 * 3600

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.lockout_seconds < 1 or self.base_delay_seconds <= 0:
            raise ValueError("max_failures, lockout_seconds and base_delay_seconds must be positive")
        if self.account_free_failures < 0 or self.address_free_failures < 0:
            raise ValueError("free failure allowances cannot be negative")

    def delay_after(self, failures: int, free: int) -> float:
        """Seconds an attempt must wait after the last one, given ``failures`` so far."""
        if failures <= free:
            return 0.0
        return min(self.base_delay_seconds * 2.0 ** (failures - free - 1), self.max_delay_seconds)


class LoginThrottled(RateLimited):
    def __init__(self, retry_after: int, locked: bool) -> None:
        super().__init__(f"too many failed sign-in attempts; try again in {retry_after} seconds")
        self.retry_after = retry_after
        self.locked = locked


@dataclass(frozen=True, slots=True)
class Attempt:
    account_key: str
    address_key: str
    account_failures: int  # including this attempt


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    failures: int
    locked_now: bool  # this failure locked the account: audit it


# For each key: reset after a quiet period or an expired lock, refuse while locked or slowed down; only if
# both keys allow the attempt, count it on both. Returns {status, a, b}: status 1 = allowed (a = account
# failures), -1 = locked, -2 = slowed down (a = seconds to wait, rounded up).
_BEGIN = """
local now = tonumber(ARGV[1])
local function state(key, free, lock_after)
  local h = redis.call('HMGET', key, 'f', 't')
  local f, t = tonumber(h[1] or '0'), tonumber(h[2] or '0')
  if f > 0 and now - t > tonumber(ARGV[5]) then f = 0 end
  if lock_after > 0 and f >= lock_after then
    local until_ = t + tonumber(ARGV[4])
    if now < until_ then return f, -1, until_ - now end
    f = 0
  end
  local delay = 0
  if f > free then delay = math.min(tonumber(ARGV[2]) * 2 ^ (f - free - 1), tonumber(ARGV[3])) end
  if now < t + delay then return f, -2, t + delay - now end
  return f, 1, 0
end
local fa, sa, wa = state(KEYS[1], tonumber(ARGV[6]), tonumber(ARGV[8]))
local fb, sb, wb = state(KEYS[2], tonumber(ARGV[7]), 0)
if sa == -1 then return {-1, math.ceil(wa)} end
if sa < 0 or sb < 0 then return {-2, math.ceil(math.max(wa, wb))} end
redis.call('HSET', KEYS[1], 'f', fa + 1, 't', ARGV[1])
redis.call('HSET', KEYS[2], 'f', fb + 1, 't', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[9])
redis.call('EXPIRE', KEYS[2], ARGV[9])
return {1, fa + 1}
"""

_SUCCEEDED = """
redis.call('DEL', KEYS[1])
local f = tonumber(redis.call('HGET', KEYS[2], 'f') or '0')
if f > 1 then redis.call('HSET', KEYS[2], 'f', f - 1) else redis.call('DEL', KEYS[2]) end
return 1
"""

_REDIS_SLACK_SECONDS: Final = 60


class LoginThrottle:
    def __init__(
        self,
        redis: aioredis.Redis,
        policy: ThrottlePolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy or ThrottlePolicy()
        self._clock = clock
        self._begin = redis.register_script(_BEGIN)
        self._succeeded = redis.register_script(_SUCCEEDED)

    @property
    def policy(self) -> ThrottlePolicy:
        return self._policy

    async def begin(self, account_key: bytes, address_key: bytes) -> Attempt:
        """Admit one login attempt (counted as a failure until :meth:`succeeded`) or raise LoginThrottled."""
        p = self._policy
        attempt_keys = (_ACCOUNT + account_key.hex(), _ADDRESS + address_key.hex())
        ttl = max(p.forget_after_seconds, p.lockout_seconds) + _REDIS_SLACK_SECONDS
        status, value = await self._begin(
            keys=list(attempt_keys),
            args=[
                repr(self._clock()), p.base_delay_seconds, p.max_delay_seconds, p.lockout_seconds,
                p.forget_after_seconds, p.account_free_failures, p.address_free_failures, p.max_failures, ttl,
            ],
        )  # fmt: skip
        if status != 1:
            raise LoginThrottled(retry_after=max(1, int(value)), locked=status == -1)
        return Attempt(attempt_keys[0], attempt_keys[1], int(value))

    async def succeeded(self, attempt: Attempt) -> None:
        await self._succeeded(keys=[attempt.account_key, attempt.address_key])

    def failed(self, attempt: Attempt) -> FailureOutcome:
        """The attempt was already counted by :meth:`begin`; say whether it locked the account."""
        return FailureOutcome(attempt.account_failures, attempt.account_failures >= self._policy.max_failures)


def retry_after_header(error: LoginThrottled) -> dict[str, str]:
    """The ``Retry-After`` header for a 429 response."""
    return {"Retry-After": str(math.ceil(error.retry_after))}
