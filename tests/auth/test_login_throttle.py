"""Failed-login throttling on the real Redis with an injectable clock: slow-down, lockout of one source,
known addresses, windows that decay within minutes, recovery."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import redis.asyncio as aioredis

from tests.auth.support import ManualClock
from vIOP.auth.throttle import LoginThrottle, LoginThrottled, ThrottlePolicy, retry_after_header
from vIOP.storage.redis_auth import RedisThrottleCounters

ACCOUNT, ADDRESS = b"\x01" * 32, b"\x02" * 32
POLICY = ThrottlePolicy(
    max_failures=5, lockout_seconds=900, pair_free_failures=2, account_free_failures=20,
    address_free_failures=10, base_delay_seconds=1.0, max_delay_seconds=60, account_max_delay_seconds=30,
    window_seconds=3600,
)  # fmt: skip


@pytest.fixture
def throttle(redis_client: aioredis.Redis, clock: ManualClock) -> LoginThrottle:
    return LoginThrottle(RedisThrottleCounters(redis_client), POLICY, clock)


async def fail(throttle: LoginThrottle, account: bytes = ACCOUNT, address: bytes = ADDRESS) -> bool:
    """One failed attempt; returns whether it locked the account."""
    return throttle.failed(await throttle.begin(account, address)).locked_now


async def throttled(
    throttle: LoginThrottle, account: bytes = ACCOUNT, address: bytes = ADDRESS
) -> LoginThrottled:
    with pytest.raises(LoginThrottled) as caught:
        await throttle.begin(account, address)
    assert caught.value.http_status == 429
    return caught.value


def test_delay_schedule() -> None:
    assert [POLICY.delay_after(n, 2) for n in range(9)] == [0, 0, 0, 1, 2, 4, 8, 16, 32]
    assert POLICY.delay_after(40, 2) == 60


async def test_slow_down_then_lockout(throttle: LoginThrottle, clock: ManualClock) -> None:
    assert not await fail(throttle)
    assert not await fail(throttle)
    assert not await fail(throttle)  # three quick typos are free
    refused = await throttled(throttle)
    assert (refused.retry_after, refused.locked) == (1, False)
    clock.advance(1)
    assert not await fail(throttle)
    assert (await throttled(throttle)).retry_after == 2
    clock.advance(2)
    assert await fail(throttle)  # the fifth failure locks the account
    locked = await throttled(throttle)
    assert locked.locked and locked.retry_after == 900
    assert retry_after_header(locked) == {"Retry-After": "900"}
    clock.advance(899)
    assert (await throttled(throttle)).retry_after == 1
    clock.advance(1)
    attempt = await throttle.begin(ACCOUNT, ADDRESS)  # the lock has run out: a fresh start
    assert attempt.pair_failures == 1


async def test_lockout_holds_for_the_right_password_too(throttle: LoginThrottle, clock: ManualClock) -> None:
    for _ in range(5):
        clock.advance(60)
        await fail(throttle)
    clock.advance(60)
    assert (await throttled(throttle)).locked  # refused before any password is checked


async def test_success_clears_the_account(throttle: LoginThrottle, redis_client: aioredis.Redis) -> None:
    await fail(throttle)
    await fail(throttle)
    await throttle.succeeded(await throttle.begin(ACCOUNT, ADDRESS))
    assert (await throttle.begin(ACCOUNT, ADDRESS)).pair_failures == 1
    assert int(await redis_client.hget("viop:throttle:address:" + ADDRESS.hex(), "f")) == 3


async def test_other_accounts_are_not_affected(throttle: LoginThrottle) -> None:
    for _ in range(3):
        await fail(throttle)
    await throttled(throttle)
    assert (await throttle.begin(b"\x03" * 32, b"\x04" * 32)).pair_failures == 1


async def test_address_slows_down_password_spraying(throttle: LoginThrottle, clock: ManualClock) -> None:
    for n in range(11):  # one guess each at 11 different accounts from one address
        await fail(throttle, account=bytes([n]) * 32)
    refused = await throttled(throttle, account=b"\xee" * 32)
    assert not refused.locked and refused.retry_after == 1
    clock.advance(1)
    await fail(throttle, account=b"\xef" * 32)
    assert (await throttled(throttle, account=b"\xf0" * 32)).retry_after == 2
    # An address is slowed, never locked: after the longest delay it may try again.
    for n in range(12):
        clock.advance(60)
        await fail(throttle, account=bytes([0x80 + n]) * 32)


async def test_successes_give_a_shared_address_its_attempts_back(throttle: LoginThrottle) -> None:
    for n in range(40):  # forty colleagues behind one NAT sign in successfully
        await throttle.succeeded(await throttle.begin(bytes([n]) * 32, ADDRESS))
    assert (await throttle.begin(b"\xaa" * 32, ADDRESS)).pair_failures == 1


async def test_parallel_burst_gets_only_the_free_attempts(throttle: LoginThrottle) -> None:
    results = await asyncio.gather(
        *(throttle.begin(ACCOUNT, ADDRESS) for _ in range(20)), return_exceptions=True
    )
    admitted = [r for r in results if not isinstance(r, BaseException)]
    assert len(admitted) == 3
    assert all(isinstance(r, LoginThrottled) for r in results if isinstance(r, BaseException))


async def test_failures_are_forgotten_when_their_window_ends(
    throttle: LoginThrottle, clock: ManualClock
) -> None:
    for _ in range(3):
        await fail(throttle)
    clock.advance(3600)
    assert (await throttle.begin(ACCOUNT, ADDRESS)).pair_failures == 1


async def test_redis_sees_only_opaque_keys(throttle: LoginThrottle, redis_client: aioredis.Redis) -> None:
    await fail(throttle)
    keys = sorted(k.decode() for k in await redis_client.keys("*"))
    pair = hashlib.sha256(b"\x00\x20" + ACCOUNT + ADDRESS).hexdigest()
    assert keys == [
        "viop:throttle:account:" + ACCOUNT.hex(), "viop:throttle:address:" + ADDRESS.hex(),
        "viop:throttle:pair:" + pair,
    ]  # fmt: skip
    assert all(0 < ttl <= 3600 + 60 for ttl in [await redis_client.ttl(key) for key in keys])
    await throttle.succeeded(await throttle.begin(ACCOUNT, ADDRESS))
    assert 0 < await redis_client.ttl("viop:throttle:known:" + pair) <= POLICY.known_address_seconds


@pytest.mark.parametrize(
    "changes",
    [
        {"max_failures": 0},
        {"lockout_seconds": 0},
        {"base_delay_seconds": 0},
        {"account_free_failures": -1},
        {"pair_free_failures": -1},
        {"window_seconds": 0},
    ],
)
def test_policy_validation(changes: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ThrottlePolicy(**changes)  # type: ignore[arg-type]


# --- issue 11: a guesser locks only their own source; shared addresses recover within minutes -------------

OTHER_ADDRESS = b"\x05" * 32


async def test_a_lockout_holds_only_for_the_attacking_address(
    throttle: LoginThrottle, clock: ManualClock
) -> None:
    for _ in range(5):
        clock.advance(60)
        await fail(throttle)
    assert (await throttled(throttle)).locked  # from the attacker's address: locked, right password or not
    attempt = await throttle.begin(ACCOUNT, OTHER_ADDRESS)  # the clinician elsewhere: not even slowed
    assert attempt.pair_failures == 1
    await throttle.succeeded(attempt)
    assert (await throttled(throttle)).locked  # and the attacker stays locked


async def test_guessing_from_many_addresses_slows_the_account_but_never_locks_it(
    throttle: LoginThrottle, clock: ManualClock
) -> None:
    home = b"\x06" * 32
    await throttle.succeeded(await throttle.begin(ACCOUNT, home))  # the clinician's usual address
    for n in range(21):  # a botnet: one guess from each of 21 addresses
        await fail(throttle, address=bytes([0x40 + n]) * 32)
    slowed = await throttled(throttle, address=b"\x99" * 32)
    assert not slowed.locked and slowed.retry_after == 1
    attempt = await throttle.begin(ACCOUNT, home)  # a known address is not slowed at all
    await throttle.succeeded(attempt)
    for n in range(30):  # however long it goes on, a new address waits at most the account cap
        clock.advance(30)
        await fail(throttle, address=bytes([0x80 + n]) * 32)
    assert (await throttled(throttle, address=b"\x98" * 32)).retry_after <= 30


async def test_a_correct_sign_in_from_a_sprayed_address_is_not_slowed(
    throttle: LoginThrottle, clock: ManualClock
) -> None:
    """A clinic behind one NAT: someone there sprays passwords; a colleague who signed in from the clinic
    before still gets in at once. Only that colleague's account under attack from the clinic would lock."""
    colleague = b"\x07" * 32
    await throttle.succeeded(await throttle.begin(colleague, ADDRESS))
    clock.advance(3600 * 5)
    for n in range(15):
        try:
            await fail(throttle, account=bytes([0x10 + n]) * 32)
        except LoginThrottled as slowed:
            clock.advance(slowed.retry_after)
            await fail(throttle, account=bytes([0x10 + n]) * 32)
    assert not (await throttled(throttle, account=b"\xee" * 32)).locked  # a new account from here: slowed
    await throttle.succeeded(await throttle.begin(colleague, ADDRESS))  # the colleague: at once


async def test_a_shared_address_recovers_within_one_window(
    redis_client: aioredis.Redis, clock: ManualClock
) -> None:
    """The production defaults: a burst of failures from one address slows it for at most 15 minutes."""
    throttle = LoginThrottle(RedisThrottleCounters(redis_client), ThrottlePolicy(), clock)
    started = clock()
    for n in range(20):  # twenty failures at different accounts, each as soon as allowed
        while True:
            try:
                await fail(throttle, account=bytes([n]) * 32)
                break
            except LoginThrottled as slowed:
                if slowed.locked:
                    pytest.fail("an address spraying passwords is slowed, never locked")
                clock.advance(slowed.retry_after)
    assert clock() - started < 15 * 60
    clock.advance(started + 15 * 60 - clock())
    for n in range(5):  # the morning rush: five colleagues' typos in the same second, none refused
        await fail(throttle, account=bytes([0xA0 + n]) * 32)
