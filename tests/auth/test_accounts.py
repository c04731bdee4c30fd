"""The account service: creation rules, sign-in with password + TOTP, uniform failures, lockout (audited),
disable and MFA reset. Throttle and TOTP replay run on the real Redis; accounts in the in-memory twin
(the SQL store passes the same contract in test_store_contracts.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time

import pytest
import redis.asyncio as aioredis

from tests.auth.support import CHEAP_ARGON2, ManualClock
from tests.auth.twins import MemoryAccountStore
from vIOP.auth.accounts import (
    AccountAdmin,
    Authenticator,
    FailureReason,
    LoginEvent,
    LoginFailed,
    LoginOutcome,
    normalize_username,
)
from vIOP.auth.passwords import PasswordHasher, hotp, totp_step
from vIOP.auth.permissions import Role
from vIOP.auth.throttle import LoginThrottle, LoginThrottled, ThrottlePolicy
from vIOP.auth.totp_replay import TotpReplayGuard
from vIOP.errors import BadRequest, Conflict, NotFound, Unauthenticated
from vIOP.storage.redis_auth import RedisThrottleCounters, RedisTotpSteps

PASSWORD = "a long enough passphrase"
IP = "203.0.113.7"


def index(value: str) -> bytes:
    return hashlib.sha256(b"test-key" + value.encode()).digest()


class Recorder:
    def __init__(self) -> None:
        self.events: list[LoginEvent] = []

    async def __call__(self, event: LoginEvent) -> None:
        self.events.append(event)

    def outcomes(self) -> list[tuple[LoginOutcome, FailureReason]]:
        return [(e.outcome, e.reason) for e in self.events]


class World:
    def __init__(
        self, redis: aioredis.Redis, clock: ManualClock, hasher: PasswordHasher, *, require_totp: bool
    ) -> None:
        self.store = MemoryAccountStore()
        self.clock = clock
        self.events = Recorder()
        self.admin = AccountAdmin(self.store, index, hasher, require_totp=require_totp, clock=clock)
        self.auth = Authenticator(
            self.store, index, lambda ip: index("addr:" + ip), hasher,
            LoginThrottle(RedisThrottleCounters(redis), ThrottlePolicy(max_failures=5, lockout_seconds=900), clock),
            TotpReplayGuard(RedisTotpSteps(redis)), require_totp=require_totp, events=self.events, clock=clock,
        )  # fmt: skip

    def code(self, secret: bytes | None) -> str:
        assert secret is not None
        return hotp(secret, totp_step(self.clock()))


@pytest.fixture
def world(redis_client: aioredis.Redis, clock: ManualClock, password_hasher: PasswordHasher) -> World:
    return World(redis_client, clock, password_hasher, require_totp=False)


@pytest.fixture
def production(redis_client: aioredis.Redis, clock: ManualClock, password_hasher: PasswordHasher) -> World:
    return World(redis_client, clock, password_hasher, require_totp=True)


async def failed(world: World, username: str, password: str, totp: str | None = None) -> None:
    with pytest.raises(LoginFailed) as caught:
        await world.auth.login(username, password, totp, IP)
    assert caught.value.http_status == 401
    assert caught.value.message == "the username, password or code is incorrect"


def test_usernames_are_normalized() -> None:
    assert normalize_username("  Dr.Lee@Clinic.ORG ") == "dr.lee@clinic.org"
    assert normalize_username("ＤＲ.ＬＥＥ") == "dr.lee"  # full-width folds to ASCII
    for bad in ("", "ab", "a" * 65, "dr lee", "-lee", "lee\x00", "léa", "<script>"):
        with pytest.raises(BadRequest):
            normalize_username(bad)


async def test_create_and_sign_in_without_totp_in_development(world: World) -> None:
    created = await world.admin.create(Role.CLINICIAN, "Dr.Lee", PASSWORD, with_totp=False)
    assert created.provisioning_uri is None and not created.account.mfa_enabled
    assert created.account.id.startswith("us_") and created.account.username == "dr.lee"
    assert created.account.password_hash.startswith("$argon2id$")
    account = await world.auth.login("DR.LEE", PASSWORD, None, IP)
    assert account.id == created.account.id and account.role is Role.CLINICIAN
    assert world.store.logins[account.id] == world.clock()
    assert world.events.outcomes() == [(LoginOutcome.SUCCEEDED, FailureReason.NONE)]
    assert world.events.events[0].user_id == account.id and world.events.events[0].address == IP


@pytest.mark.parametrize(
    ("role", "username", "password"),
    [(Role.CLIENT, "client1", PASSWORD), (Role.STAFF, "x", PASSWORD), (Role.STAFF, "staff1", "short")],
)
async def test_create_refuses_bad_input(world: World, role: Role, username: str, password: str) -> None:
    with pytest.raises(BadRequest):
        await world.admin.create(role, username, password, with_totp=False)
    assert await world.store.by_username_index(index(username)) is None


async def test_usernames_are_unique_case_insensitively(world: World) -> None:
    await world.admin.create(Role.STAFF, "front.desk", PASSWORD, with_totp=False)
    with pytest.raises(Conflict):
        await world.admin.create(Role.ADMIN, "Front.Desk", PASSWORD, with_totp=False)


async def test_production_requires_totp(production: World) -> None:
    with pytest.raises(BadRequest, match="TOTP"):
        await production.admin.create(Role.ADMIN, "root.admin", PASSWORD, with_totp=False)
    created = await production.admin.create(Role.ADMIN, "root.admin", PASSWORD, with_totp=True)
    assert created.provisioning_uri is not None and created.provisioning_uri.startswith("otpauth://totp/")
    await failed(production, "root.admin", PASSWORD)
    await production.auth.login("root.admin", PASSWORD, production.code(created.account.totp_secret), IP)


async def test_production_refuses_an_account_without_mfa(
    production: World, password_hasher: PasswordHasher
) -> None:
    dev_admin = AccountAdmin(production.store, index, password_hasher, require_totp=False)
    await dev_admin.create(Role.STAFF, "legacy.user", PASSWORD, with_totp=False)
    await failed(production, "legacy.user", PASSWORD)
    assert production.events.outcomes()[-1] == (LoginOutcome.FAILED, FailureReason.MFA_NOT_ENROLLED)


async def test_totp_flow(world: World) -> None:
    created = await world.admin.create(Role.CLINICIAN, "dr.kim", PASSWORD, with_totp=True)
    secret = created.account.totp_secret
    await failed(world, "dr.kim", PASSWORD)  # code missing
    await failed(world, "dr.kim", PASSWORD, "000000" if world.code(secret) != "000000" else "111111")
    code = world.code(secret)
    await world.auth.login("dr.kim", PASSWORD, code, IP)
    await failed(world, "dr.kim", PASSWORD, code)  # the same code again: replay
    world.clock.advance(30)
    await world.auth.login("dr.kim", PASSWORD, world.code(secret), IP)
    reasons = [r for _, r in world.events.outcomes()]
    assert reasons == [
        FailureReason.TOTP_MISSING, FailureReason.TOTP_INVALID, FailureReason.NONE,
        FailureReason.TOTP_REPLAYED, FailureReason.NONE,
    ]  # fmt: skip


async def test_failures_look_the_same_whatever_was_wrong(world: World) -> None:
    await world.admin.create(Role.STAFF, "staff.one", PASSWORD, with_totp=False)
    await failed(world, "nobody.here", PASSWORD)
    await failed(world, "staff.one", PASSWORD + "x")
    await failed(world, "not a valid name!", PASSWORD)
    assert [r for _, r in world.events.outcomes()] == [
        FailureReason.UNKNOWN_USER,
        FailureReason.BAD_PASSWORD,
        FailureReason.UNKNOWN_USER,
    ]


async def test_disabled_account(world: World) -> None:
    created = await world.admin.create(Role.CLINICIAN, "dr.gone", PASSWORD, with_totp=False)
    assert (await world.auth.active_account(created.account.id)).id == created.account.id
    assert (await world.admin.set_disabled("DR.GONE", True)).disabled
    await failed(world, "dr.gone", PASSWORD)
    assert world.events.outcomes()[-1] == (LoginOutcome.FAILED, FailureReason.DISABLED)
    with pytest.raises(Unauthenticated):
        await world.auth.active_account(created.account.id)
    await world.admin.set_disabled("dr.gone", False)
    await world.auth.login("dr.gone", PASSWORD, None, IP)


async def test_lockout_is_audited_and_holds_for_the_right_password(world: World) -> None:
    await world.admin.create(Role.CLINICIAN, "dr.target", PASSWORD, with_totp=False)
    for _ in range(5):
        world.clock.advance(60)  # slower than the slow-down
        await failed(world, "dr.target", "wrong password!")
    assert world.events.outcomes()[-2:] == [
        (LoginOutcome.FAILED, FailureReason.BAD_PASSWORD),
        (LoginOutcome.LOCKED, FailureReason.BAD_PASSWORD),
    ]
    world.clock.advance(60)
    with pytest.raises(LoginThrottled) as caught:
        await world.auth.login("dr.target", PASSWORD, None, IP)
    assert caught.value.locked and caught.value.retry_after == 900 - 60
    assert world.events.outcomes()[-1] == (LoginOutcome.THROTTLED, FailureReason.THROTTLED)
    world.clock.advance(900)
    await world.auth.login("dr.target", PASSWORD, None, IP)


async def test_unknown_usernames_lock_exactly_like_known_ones(world: World) -> None:
    await world.admin.create(Role.STAFF, "real.user", PASSWORD, with_totp=False)
    results: dict[str, list[str]] = {}
    for name in ("real.user", "ghost.user"):
        trace = []
        for _ in range(7):
            world.clock.advance(3)
            try:
                await world.auth.login(name, "wrong password!", None, f"198.51.100.{len(results)}")
            except LoginFailed:
                trace.append("failed")
            except LoginThrottled as throttled:
                trace.append(f"throttled {throttled.retry_after} locked={throttled.locked}")
        results[name] = trace
    assert results["real.user"] == results["ghost.user"]
    assert results["real.user"][-1].startswith("throttled") and "locked=True" in results["real.user"][-1]


async def test_password_is_rehashed_when_parameters_grow(
    world: World, redis_client: aioredis.Redis, clock: ManualClock
) -> None:
    created = await world.admin.create(Role.STAFF, "staff.two", PASSWORD, with_totp=False)
    stronger = PasswordHasher(dataclasses.replace(CHEAP_ARGON2, time_cost=2))
    auth = Authenticator(
        world.store, index, lambda ip: index(ip), stronger, LoginThrottle(RedisThrottleCounters(redis_client), clock=clock),
        TotpReplayGuard(RedisTotpSteps(redis_client)), require_totp=False, clock=clock,
    )  # fmt: skip
    await auth.login("staff.two", PASSWORD, None, IP)
    account = await world.store.get(created.account.id)
    assert account is not None and account.password_hash != created.account.password_hash
    assert "t=2" in account.password_hash


async def test_reset_mfa_replaces_the_secret(world: World) -> None:
    created = await world.admin.create(Role.ADMIN, "admin.one", PASSWORD, with_totp=True)
    old_code = world.code(created.account.totp_secret)
    reset = await world.admin.reset_mfa("admin.one")
    assert reset.provisioning_uri is not None and reset.account.totp_secret != created.account.totp_secret
    if old_code != world.code(reset.account.totp_secret):
        await failed(world, "admin.one", PASSWORD, old_code)
    await world.auth.login("admin.one", PASSWORD, world.code(reset.account.totp_secret), IP)


async def test_admin_actions_on_unknown_users(world: World) -> None:
    with pytest.raises(NotFound):
        await world.admin.set_disabled("nobody.here", True)
    with pytest.raises(NotFound):
        await world.admin.reset_mfa("nobody.here")


@pytest.mark.parametrize(("username", "password", "totp"), [("u" * 257, PASSWORD, None), ("user", "p" * 1025, None),
                                                              ("user", PASSWORD, "1" * 17)])  # fmt: skip
async def test_oversized_input_is_a_bad_request(
    world: World, username: str, password: str, totp: str | None
) -> None:
    with pytest.raises(BadRequest):
        await world.auth.login(username, password, totp, IP)
    assert world.events.events == []


async def test_sign_in_does_not_stall_the_event_loop(
    redis_client: aioredis.Redis, clock: ManualClock
) -> None:
    slow = PasswordHasher(dataclasses.replace(CHEAP_ARGON2, time_cost=4, memory_cost=32 * 1024))
    started = time.perf_counter()
    slow.hash(PASSWORD)
    one_hash = time.perf_counter() - started  # what a sign-in would freeze the loop for, if hashed on it
    world = World(redis_client, clock, slow, require_totp=False)
    await world.admin.create(Role.STAFF, "staff.three", PASSWORD, with_totp=False)
    longest_gap, done = 0.0, asyncio.Event()

    async def ticker() -> None:
        nonlocal longest_gap
        last = time.perf_counter()
        for _ in range(10**7):  # bounded; ends when the sign-in is done
            if done.is_set():
                return
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest_gap, last = max(longest_gap, now - last), now

    task = asyncio.create_task(ticker())
    await world.auth.login("staff.three", PASSWORD, None, IP)
    done.set()
    await task
    assert longest_gap < one_hash / 2, (longest_gap, one_hash)


# --- issue 11: nobody can lock a clinician out by knowing the username; a shared NAT recovers -----------

ATTACKER, CLINIC = "198.51.100.66", "192.0.2.10"


async def spray(world: World, address: str, accounts: int) -> None:
    """Failed sign-ins at ``accounts`` different (unknown) usernames from one address, each as soon as the
    throttle allows it."""
    for n in range(accounts):
        while True:
            try:
                await world.auth.login(f"sprayed.{n}", "wrong password!", None, address)
            except LoginFailed:
                break
            except LoginThrottled as slowed:
                if slowed.locked:
                    pytest.fail("an address spraying passwords is slowed, never locked")
                world.clock.advance(slowed.retry_after)


async def test_wrong_passwords_from_one_address_do_not_lock_the_account_elsewhere(world: World) -> None:
    created = await world.admin.create(Role.CLINICIAN, "dr.lee", PASSWORD, with_totp=False)
    for _ in range(5):
        world.clock.advance(60)
        with pytest.raises(LoginFailed):
            await world.auth.login("dr.lee", "wrong password!", None, ATTACKER)
    assert world.events.outcomes()[-1] == (LoginOutcome.LOCKED, FailureReason.BAD_PASSWORD)
    account = await world.auth.login("dr.lee", PASSWORD, None, CLINIC)  # the clinician, from elsewhere
    assert account.id == created.account.id
    with pytest.raises(LoginThrottled) as caught:  # the attacking address stays locked out of this account
        await world.auth.login("dr.lee", PASSWORD, None, ATTACKER)
    assert caught.value.locked
    throttled = world.events.events[-1]  # audited against the account under attack
    assert (throttled.outcome, throttled.user_id, throttled.address) == (
        LoginOutcome.THROTTLED, created.account.id, ATTACKER,
    )  # fmt: skip


async def test_a_sprayed_clinic_address_still_lets_a_colleague_in(world: World) -> None:
    await world.admin.create(Role.CLINICIAN, "dr.kim", PASSWORD, with_totp=False)
    await world.auth.login("dr.kim", PASSWORD, None, CLINIC)  # yesterday, from the clinic
    world.clock.advance(20 * 3600)
    await spray(world, CLINIC, 15)  # someone behind the same NAT tries passwords on many accounts
    with pytest.raises(LoginThrottled):
        await world.auth.login("sprayed.99", "wrong password!", None, CLINIC)  # spraying is slowed
    await world.auth.login("dr.kim", PASSWORD, None, CLINIC)  # the colleague is not


async def test_a_shared_address_recovers_within_fifteen_minutes(world: World) -> None:
    for name in ("dr.ana", "dr.ben", "dr.cy"):
        await world.admin.create(Role.CLINICIAN, name, PASSWORD, with_totp=False)
    started = world.clock()
    await spray(world, CLINIC, 20)
    world.clock.advance(started + 15 * 60 - world.clock())
    for name in ("dr.ana", "dr.ben", "dr.cy"):  # first sign-ins from here: a typo, then the right password
        with pytest.raises(LoginFailed):
            await world.auth.login(name, "typo password!", None, CLINIC)
        await world.auth.login(name, PASSWORD, None, CLINIC)
