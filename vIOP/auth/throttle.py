"""Failed-login throttling per (account, address), per account and per address; only a source is ever locked.

Issue 11: anyone who knows a clinician's username must not be able to lock that clinician out, and a clinic
behind one NAT address must not lock itself out. So the three counters do different jobs:

- **Pair** (this account from this address): after ``pair_free_failures`` the next attempt waits
  ``base * 2^k`` seconds (capped), and after ``max_failures`` the account is locked *for this address only*
  for ``lockout_seconds``, for the right password too: the account is under attack from here. The same
  account signs in from any other address as before.
- **Account** (all addresses; distributed guessing): after ``account_free_failures`` the same doubling
  slow-down, capped at ``account_max_delay_seconds``, never a lock.
- **Address** (all accounts; password spraying): after ``address_free_failures`` the same slow-down, capped
  at ``max_delay_seconds``, never a lock.

An address the account signed in from successfully within ``known_address_seconds`` is *known* for that
account: attempts from there skip the account and address slow-downs (they still count, and the pair limit
still applies), so a colleague behind a sprayed clinic NAT, or a clinician whose account is being guessed
from elsewhere, signs in with the right password at once. Failures are counted in fixed windows of
``window_seconds`` from a counter's first failure, so every slow-down is over within minutes.

Attempts are counted pessimistically: :meth:`LoginThrottle.begin` counts the attempt as a failure before the
password is even checked, in one Lua script over all keys, so a burst of parallel guesses cannot all slip
through before the first failure is recorded. :meth:`LoginThrottle.succeeded` then clears the pair, gives
the account and address their attempt back and marks the address known for the account.

Redis holds ``viop:throttle:{pair|account|address}:{hex}`` hashes of ``f`` (failures in the window), ``s``
(window start) and ``t`` (time of the last attempt), from the injectable clock, and
``viop:throttle:known:{hex}`` markers; the callers pass opaque keys (blind indexes), never a username or an
IP, and a pair is named by a hash of both.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis

from vIOP.errors import RateLimited

_PAIR = "viop:throttle:pair:"
_ACCOUNT = "viop:throttle:account:"
_ADDRESS = "viop:throttle:address:"
_KNOWN = "viop:throttle:known:"


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    max_failures: int = 5  # VIOP_LOGIN_MAX_FAILURES: of one account from one address, then that pair locks
    lockout_seconds: int = 15 * 60
    pair_free_failures: int = 2
    account_free_failures: int = 20
    address_free_failures: int = 10
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 5 * 60
    account_max_delay_seconds: float = 60
    window_seconds: int = 15 * 60
    known_address_seconds: int = 30 * 24 * 3600

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.lockout_seconds < 1 or self.base_delay_seconds <= 0:
            raise ValueError("max_failures, lockout_seconds and base_delay_seconds must be positive")
        if min(self.pair_free_failures, self.account_free_failures, self.address_free_failures) < 0:
            raise ValueError("free failure allowances cannot be negative")
        if self.window_seconds < 1 or self.known_address_seconds < 0:
            raise ValueError("window_seconds must be positive and known_address_seconds not negative")

    def delay_after(self, failures: int, free: int, cap: float | None = None) -> float:
        """Seconds an attempt must wait after the last one, given ``failures`` so far."""
        if failures <= free:
            return 0.0
        limit = self.max_delay_seconds if cap is None else cap
        return min(self.base_delay_seconds * 2.0 ** (failures - free - 1), limit)


class LoginThrottled(RateLimited):
    def __init__(self, retry_after: int, locked: bool) -> None:
        super().__init__(f"too many failed sign-in attempts; try again in {retry_after} seconds")
        self.retry_after = retry_after
        self.locked = locked


@dataclass(frozen=True, slots=True)
class Attempt:
    pair_key: str
    account_key: str
    address_key: str
    known_key: str
    pair_failures: int  # of this account from this address, including this attempt


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    failures: int
    locked_now: bool  # this failure locked the account for this address: audit it


# KEYS: pair, account, address, known. For each counter: refuse while locked (pair only) or slowed down;
# forget failures of an old window. A known address skips the account and address checks. Only if every
# check allows the attempt, count it on all three. Returns {status, a}: status 1 = allowed (a = pair
# failures), -1 = locked, -2 = slowed down (a = seconds to wait, rounded up).
_BEGIN = """
local now, base, lockout, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function state(key, free, cap, lock_after)
  local h = redis.call('HMGET', key, 'f', 's', 't')
  local f, s, t = tonumber(h[1] or '0'), tonumber(h[2] or '0'), tonumber(h[3] or '0')
  if lock_after > 0 and f >= lock_after then
    if now < t + lockout then return f, s, -1, t + lockout - now end
    f = 0
  end
  if f > 0 and now - s >= window then f = 0 end
  if f == 0 then s = now end
  local delay = 0
  if f > free then delay = math.min(base * 2 ^ (f - free - 1), cap) end
  if now < t + delay then return f, s, -2, t + delay - now end
  return f, s, 1, 0
end
local known = redis.call('EXISTS', KEYS[4]) == 1
local fp, sp, stp, wp = state(KEYS[1], tonumber(ARGV[5]), tonumber(ARGV[8]), tonumber(ARGV[10]))
local fa, sa, sta, wa = state(KEYS[2], tonumber(ARGV[6]), tonumber(ARGV[9]), 0)
local fb, sb, stb, wb = state(KEYS[3], tonumber(ARGV[7]), tonumber(ARGV[8]), 0)
if stp == -1 then return {-1, math.ceil(wp)} end
if known then sta, wa, stb, wb = 1, 0, 1, 0 end
if stp < 0 or sta < 0 or stb < 0 then return {-2, math.ceil(math.max(wp, wa, wb))} end
redis.call('HSET', KEYS[1], 'f', fp + 1, 's', sp, 't', ARGV[1])
redis.call('HSET', KEYS[2], 'f', fa + 1, 's', sa, 't', ARGV[1])
redis.call('HSET', KEYS[3], 'f', fb + 1, 's', sb, 't', ARGV[1])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[11]) end
return {1, fp + 1}
"""

# Clear the pair, give the account and the address their attempt back, remember the address as known.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
for i = 2, 3 do
  local f = tonumber(redis.call('HGET', KEYS[i], 'f') or '0')
  if f > 1 then redis.call('HSET', KEYS[i], 'f', f - 1) else redis.call('DEL', KEYS[i]) end
end
if tonumber(ARGV[1]) > 0 then redis.call('SET', KEYS[4], '1', 'EX', ARGV[1]) end
return 1
"""

_REDIS_SLACK_SECONDS: Final = 60


def _pair_name(account_key: bytes, address_key: bytes) -> str:
    return hashlib.sha256(len(account_key).to_bytes(2, "big") + account_key + address_key).hexdigest()


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
        pair = _pair_name(account_key, address_key)
        keys = (_PAIR + pair, _ACCOUNT + account_key.hex(), _ADDRESS + address_key.hex(), _KNOWN + pair)
        ttl = max(p.window_seconds, p.lockout_seconds) + _REDIS_SLACK_SECONDS
        status, value = await self._begin(
            keys=list(keys),
            args=[
                repr(self._clock()), p.base_delay_seconds, p.lockout_seconds, p.window_seconds,
                p.pair_free_failures, p.account_free_failures, p.address_free_failures,
                p.max_delay_seconds, p.account_max_delay_seconds, p.max_failures, ttl,
            ],
        )  # fmt: skip
        if status != 1:
            raise LoginThrottled(retry_after=max(1, int(value)), locked=status == -1)
        return Attempt(*keys, pair_failures=int(value))

    async def succeeded(self, attempt: Attempt) -> None:
        keys = [attempt.pair_key, attempt.account_key, attempt.address_key, attempt.known_key]
        await self._succeeded(keys=keys, args=[self._policy.known_address_seconds])

    def failed(self, attempt: Attempt) -> FailureOutcome:
        """The attempt was already counted by :meth:`begin`; say whether it locked the pair."""
        return FailureOutcome(attempt.pair_failures, attempt.pair_failures >= self._policy.max_failures)


def retry_after_header(error: LoginThrottled) -> dict[str, str]:
    """The ``Retry-After`` header for a 429 response."""
    return {"Retry-After": str(math.ceil(error.retry_after))}
