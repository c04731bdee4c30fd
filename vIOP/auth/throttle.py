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
password is even checked, in one atomic step over all counters (:class:`ThrottleCounters`), so a burst of
parallel guesses cannot all slip through before the first failure is recorded. :meth:`LoginThrottle.succeeded` then clears the pair, gives
the account and address their attempt back and marks the address known for the account.

The counters (:class:`vIOP.storage.redis_auth.RedisThrottleCounters`: Redis hashes and a Lua script per
step) hold failures in the window, the window start and the time of the last attempt, from the injectable
clock, and known-address markers; the callers pass opaque keys (blind indexes), never a username or an
IP, and a pair is named by a hash of both.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from vIOP.errors import RateLimited


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
    pair_failures: int  # of this account from this address, including this attempt


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    failures: int
    locked_now: bool  # this failure locked the account for this address: audit it


class ThrottleCounters(Protocol):
    """The three counters and the known-address markers (:class:`vIOP.storage.redis_auth.RedisThrottleCounters`)."""

    async def begin(
        self, pair: str, account: str, address: str, now: float, policy: ThrottlePolicy, ttl_seconds: int
    ) -> tuple[int, int]:
        """Atomically, by ``policy``: refuse while the pair is locked or any counter's slow-down runs (a
        known address skips the account and address ones), else count the attempt on all three (kept
        ``ttl_seconds``). Returns (1, pair failures), (-1, seconds locked) or (-2, seconds to wait)."""
        ...

    async def succeeded(self, pair: str, account: str, address: str, known_seconds: int) -> None:
        """Clear the pair, give account and address their attempt back, mark the address known."""
        ...


_REDIS_SLACK_SECONDS: Final = 60


def _pair_name(account_key: bytes, address_key: bytes) -> str:
    return hashlib.sha256(len(account_key).to_bytes(2, "big") + account_key + address_key).hexdigest()


class LoginThrottle:
    def __init__(
        self,
        counters: ThrottleCounters,
        policy: ThrottlePolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy or ThrottlePolicy()
        self._clock = clock
        self._counters = counters

    @property
    def policy(self) -> ThrottlePolicy:
        return self._policy

    async def begin(self, account_key: bytes, address_key: bytes) -> Attempt:
        """Admit one login attempt (counted as a failure until :meth:`succeeded`) or raise LoginThrottled."""
        p = self._policy
        pair = _pair_name(account_key, address_key)
        keys = (pair, account_key.hex(), address_key.hex())
        ttl = max(p.window_seconds, p.lockout_seconds) + _REDIS_SLACK_SECONDS
        status, value = await self._counters.begin(*keys, self._clock(), p, ttl)
        if status != 1:
            raise LoginThrottled(retry_after=max(1, value), locked=status == -1)
        return Attempt(*keys, pair_failures=value)

    async def succeeded(self, attempt: Attempt) -> None:
        await self._counters.succeeded(
            attempt.pair_key, attempt.account_key, attempt.address_key, self._policy.known_address_seconds
        )

    def failed(self, attempt: Attempt) -> FailureOutcome:
        """The attempt was already counted by :meth:`begin`; say whether it locked the pair."""
        return FailureOutcome(attempt.pair_failures, attempt.pair_failures >= self._policy.max_failures)


def retry_after_header(error: LoginThrottled) -> dict[str, str]:
    """The ``Retry-After`` header for a 429 response."""
    return {"Retry-After": str(math.ceil(error.retry_after))}
