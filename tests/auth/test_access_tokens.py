"""Access tokens: every bad token kind is refused for the right reason; idle and absolute timeouts and
logout are enforced server-side (real Redis, injectable clock, no sleeps)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import OctKey

from tests.auth.support import ManualClock
from vIOP.auth.permissions import Principal, Role
from vIOP.auth.tokens import AccessTokens, TokenFailure, TokenKeys, TokenPolicy, TokenRejected
from vIOP.errors import Unauthenticated
from vIOP.ids import UserId
from vIOP.storage.redis_auth import RedisSessionStore

SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
SESSION_KEY = bytes(range(2, 34))
USER = UserId("us_alice")
POLICY = TokenPolicy(idle_seconds=900, lifetime_seconds=12 * 3600)
CLAIM_NAMES = ["iss", "aud", "sub", "role", "exp", "nbf", "iat", "jti", "x"]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture
def keys() -> TokenKeys:
    return TokenKeys("k1", SEED)


@pytest.fixture
def tokens(keys: TokenKeys, redis_client: aioredis.Redis, clock: ManualClock) -> AccessTokens:
    return AccessTokens(keys, RedisSessionStore(redis_client), POLICY, clock, session_key=SESSION_KEY)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{signature}"


def good_claims(clock: ManualClock, **changes: Any) -> dict[str, Any]:
    now = int(clock())
    claims = {
        "iss": "viop", "aud": "viop-api", "sub": USER, "role": "clinician", "iat": now, "nbf": now,
        "exp": now + 3600, "jti": "j1",
    }  # fmt: skip
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def signed(keys: TokenKeys, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    header = header or {"alg": "Ed25519", "kid": keys.signing_kid}
    return jwt.encode(header, claims, keys.signing_key(), algorithms=[header["alg"]])


async def rejected(tokens: AccessTokens, token: str) -> TokenFailure:
    with pytest.raises(TokenRejected) as caught:
        await tokens.verify(token)
    assert isinstance(caught.value, Unauthenticated)
    assert caught.value.http_status == 401
    assert caught.value.as_dict()["error"]["code"] == "unauthenticated"
    return caught.value.reason


async def test_issue_and_verify(tokens: AccessTokens, clock: ManualClock) -> None:
    issued = await tokens.issue(USER, Role.CLINICIAN)
    assert issued.expires_in == 12 * 3600
    claims = await tokens.verify(issued.token)
    assert claims == issued.claims
    assert claims.subject == USER and claims.role is Role.CLINICIAN
    assert claims.expires_at == int(clock()) + 12 * 3600
    assert claims.principal == Principal(Role.CLINICIAN, USER)
    header = json.loads(base64.urlsafe_b64decode(issued.token.split(".")[0] + "=="))
    assert header == {"typ": "JWT", "alg": "Ed25519", "kid": "k1"}


async def test_clients_never_get_access_tokens(tokens: AccessTokens) -> None:
    with pytest.raises(ValueError):
        await tokens.issue(UserId("cl_x"), Role.CLIENT)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c", "a.b.c.d", "é.é.é", "x" * 5000, "eyJhbGciOiJFZDI1NTE5In0.e30"],
)
async def test_malformed(tokens: AccessTokens, token: str) -> None:
    assert await rejected(tokens, token) is TokenFailure.MALFORMED


@pytest.mark.parametrize("cut", [1, 10, 40, 86, 120])
async def test_truncated(tokens: AccessTokens, cut: int) -> None:
    token = (await tokens.issue(USER, Role.STAFF)).token
    assert await rejected(tokens, token[:-cut]) in (TokenFailure.MALFORMED, TokenFailure.BAD_SIGNATURE)


async def test_truncated_signature_segment(tokens: AccessTokens) -> None:
    token = (await tokens.issue(USER, Role.STAFF)).token
    head, body, _ = token.split(".")
    assert await rejected(tokens, f"{head}.{body}.") is TokenFailure.BAD_SIGNATURE


async def test_wrong_signature(tokens: AccessTokens, clock: ManualClock) -> None:
    impostor = TokenKeys("k1", OTHER_SEED)  # same kid, different key
    assert await rejected(tokens, signed(impostor, good_claims(clock))) is TokenFailure.BAD_SIGNATURE


async def test_tampered_payload(tokens: AccessTokens) -> None:
    token = (await tokens.issue(USER, Role.STAFF)).token
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["role"] = "admin"
    assert await rejected(tokens, f"{head}.{b64(json.dumps(claims).encode())}.{sig}") is (
        TokenFailure.BAD_SIGNATURE
    )


async def test_alg_none(tokens: AccessTokens, clock: ManualClock) -> None:
    for header in ({"alg": "none"}, {"alg": "none", "kid": "k1"}, {"alg": "None", "kid": "k1"}):
        assert await rejected(tokens, unsigned(header, good_claims(clock))) is TokenFailure.MALFORMED


async def test_key_confusion_hmac_with_public_key(
    tokens: AccessTokens, keys: TokenKeys, clock: ManualClock
) -> None:
    public_x = keys.signing_key().as_dict(private=False)["x"]
    for secret in (public_x.encode(), base64.urlsafe_b64decode(public_x + "=")):
        forged = jwt.encode(
            {"alg": "HS256", "kid": "k1"}, good_claims(clock), OctKey.import_key(secret), algorithms=["HS256"]
        )
        assert await rejected(tokens, forged) is TokenFailure.MALFORMED


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
async def test_other_algorithm_names_are_refused(
    tokens: AccessTokens, keys: TokenKeys, clock: ManualClock
) -> None:
    # Same Ed25519 key and a valid signature, but the deprecated "EdDSA" name: the algorithm is pinned.
    forged = signed(keys, good_claims(clock), {"alg": "EdDSA", "kid": "k1"})
    assert await rejected(tokens, forged) is TokenFailure.MALFORMED


async def test_embedded_key_headers_are_refused(
    tokens: AccessTokens, keys: TokenKeys, clock: ManualClock
) -> None:
    jwk = TokenKeys("k9", OTHER_SEED).signing_key().as_dict(private=False)
    forged = signed(keys, good_claims(clock), {"alg": "Ed25519", "kid": "k1", "jwk": jwk})
    assert await rejected(tokens, forged) is TokenFailure.MALFORMED


async def test_unknown_or_missing_kid(tokens: AccessTokens, clock: ManualClock) -> None:
    stranger = TokenKeys("k2", OTHER_SEED)
    assert await rejected(tokens, signed(stranger, good_claims(clock))) is TokenFailure.UNKNOWN_KEY
    no_kid = signed(stranger, good_claims(clock), {"alg": "Ed25519"})
    assert await rejected(tokens, no_kid) is TokenFailure.UNKNOWN_KEY


async def test_expired(tokens: AccessTokens, keys: TokenKeys, clock: ManualClock) -> None:
    stale = good_claims(clock, iat=int(clock()) - 3600, nbf=int(clock()) - 3600, exp=int(clock()) - 1)
    assert await rejected(tokens, signed(keys, stale)) is TokenFailure.EXPIRED


async def test_not_yet_valid(tokens: AccessTokens, keys: TokenKeys, clock: ManualClock) -> None:
    future = int(clock()) + 60
    assert await rejected(tokens, signed(keys, good_claims(clock, nbf=future))) is TokenFailure.NOT_YET_VALID
    assert await rejected(tokens, signed(keys, good_claims(clock, iat=future))) is TokenFailure.NOT_YET_VALID
    # Within the leeway for skew between processes, the token is accepted (signature and claims only).
    skewed = good_claims(clock, nbf=int(clock()) + 3, iat=int(clock()) + 3)
    assert tokens.decode(signed(keys, skewed)).jti == "j1"


async def test_wrong_audience_and_issuer(tokens: AccessTokens, keys: TokenKeys, clock: ManualClock) -> None:
    assert (
        await rejected(tokens, signed(keys, good_claims(clock, aud="other-api")))
        is TokenFailure.WRONG_AUDIENCE
    )
    assert await rejected(tokens, signed(keys, good_claims(clock, aud=["viop-api", "x"]))) is (
        TokenFailure.INVALID_CLAIMS
    )
    assert await rejected(tokens, signed(keys, good_claims(clock, iss="evil"))) is TokenFailure.WRONG_ISSUER


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "role", "exp", "nbf", "iat", "jti"])
async def test_missing_claim(tokens: AccessTokens, keys: TokenKeys, clock: ManualClock, claim: str) -> None:
    claims = good_claims(clock)
    del claims[claim]
    assert await rejected(tokens, signed(keys, claims)) is TokenFailure.INVALID_CLAIMS


@pytest.mark.parametrize(
    "changes",
    [{"role": "client"}, {"role": "root"}, {"exp": "tomorrow"}, {"iat": 1.5}, {"sub": 7}, {"exp": True}],
)
async def test_invalid_claim_values(
    tokens: AccessTokens, keys: TokenKeys, clock: ManualClock, changes: dict[str, Any]
) -> None:
    assert await rejected(tokens, signed(keys, good_claims(clock, **changes))) is TokenFailure.INVALID_CLAIMS


async def test_signed_token_claiming_a_longer_life_is_refused(
    tokens: AccessTokens, keys: TokenKeys, clock: ManualClock
) -> None:
    too_long = good_claims(clock, exp=int(clock()) + 13 * 3600)
    assert await rejected(tokens, signed(keys, too_long)) is TokenFailure.EXPIRED


async def test_valid_signature_without_server_session_is_refused(
    tokens: AccessTokens, keys: TokenKeys, clock: ManualClock
) -> None:
    # Signed with our key but never issued (or its session lost): no activity record, no access.
    assert await rejected(tokens, signed(keys, good_claims(clock))) is TokenFailure.UNKNOWN_SESSION


async def test_idle_timeout(tokens: AccessTokens, clock: ManualClock) -> None:
    token = (await tokens.issue(USER, Role.CLINICIAN)).token
    for _ in range(6):  # activity every 14 minutes keeps the session alive past the idle limit
        clock.advance(14 * 60)
        await tokens.verify(token)
    clock.advance(15 * 60 + 1)
    assert await rejected(tokens, token) is TokenFailure.IDLE
    clock.advance(-15 * 60)  # coming back "earlier" does not resurrect it
    assert await rejected(tokens, token) is TokenFailure.UNKNOWN_SESSION


async def test_idle_boundary_is_inclusive(tokens: AccessTokens, clock: ManualClock) -> None:
    token = (await tokens.issue(USER, Role.CLINICIAN)).token
    clock.advance(15 * 60)
    await tokens.verify(token)


async def test_keep_alive_counts_as_activity(tokens: AccessTokens, clock: ManualClock) -> None:
    issued = await tokens.issue(USER, Role.CLINICIAN)
    for _ in range(10):  # a 140-minute group session with no HTTP requests, only socket heartbeats
        clock.advance(14 * 60)
        assert await tokens.keep_alive(issued.claims.jti)
    await tokens.verify(issued.token)
    clock.advance(16 * 60)
    assert not await tokens.keep_alive(issued.claims.jti)


async def test_inactive_heartbeats_keep_nothing_alive_but_see_the_end(
    tokens: AccessTokens, clock: ManualClock
) -> None:
    """Issue 11: an open console pinged on a timer and so defeated the idle timeout. Heartbeats of an
    unattended page (``active=False``) check the sign-in but do not renew it."""
    issued = await tokens.issue(USER, Role.CLINICIAN)
    for _ in range(14):  # fourteen minutes of an open, unattended console: still signed in
        clock.advance(60)
        assert await tokens.keep_alive(issued.claims.jti, active=False)
    clock.advance(60)
    assert await tokens.keep_alive(issued.claims.jti, active=True)  # someone touched it: renewed
    for _ in range(15):
        clock.advance(60)
        assert await tokens.keep_alive(issued.claims.jti, active=False)
    clock.advance(1)
    assert not await tokens.keep_alive(issued.claims.jti, active=False)  # 15 min since the last activity
    assert await rejected(tokens, issued.token) is TokenFailure.UNKNOWN_SESSION


async def test_absolute_lifetime(tokens: AccessTokens, clock: ManualClock) -> None:
    token = (await tokens.issue(USER, Role.STAFF)).token
    for _ in range(12 * 4 - 1):  # busy all day: a request every 15 minutes
        clock.advance(15 * 60)
        await tokens.verify(token)
    clock.advance(15 * 60)  # exactly 12 h after issue
    assert await rejected(tokens, token) is TokenFailure.EXPIRED


async def test_logout_revokes_only_that_token(tokens: AccessTokens, redis_client: aioredis.Redis) -> None:
    first = await tokens.issue(USER, Role.CLINICIAN)
    second = await tokens.issue(USER, Role.CLINICIAN)
    await tokens.revoke(first.claims)
    assert await rejected(tokens, first.token) is TokenFailure.REVOKED
    assert not await tokens.keep_alive(first.claims.jti)
    assert (await tokens.verify(second.token)).jti == second.claims.jti
    ttl = await redis_client.ttl(f"viop:auth:revoked:{first.claims.jti}")
    assert 12 * 3600 <= ttl <= 12 * 3600 + 60


async def test_key_rotation_keeps_previous_tokens_valid(
    redis_client: aioredis.Redis, keys: TokenKeys, clock: ManualClock
) -> None:
    old = await AccessTokens(
        keys, RedisSessionStore(redis_client), POLICY, clock, session_key=SESSION_KEY
    ).issue(USER, Role.ADMIN)
    rotated = AccessTokens(
        TokenKeys("k2", OTHER_SEED, previous={"k1": SEED}),
        RedisSessionStore(redis_client),
        POLICY,
        clock,
        session_key=SESSION_KEY,
    )
    assert (await rotated.verify(old.token)).jti == old.claims.jti
    new = await rotated.issue(USER, Role.ADMIN)
    assert '"k2"' in base64.urlsafe_b64decode(new.token.split(".")[0] + "==").decode()
    retired = AccessTokens(
        TokenKeys("k2", OTHER_SEED), RedisSessionStore(redis_client), POLICY, clock, session_key=SESSION_KEY
    )
    assert await rejected(retired, old.token) is TokenFailure.UNKNOWN_KEY


async def test_redis_holds_only_opaque_ids(tokens: AccessTokens, redis_client: aioredis.Redis) -> None:
    issued = await tokens.issue(USER, Role.CLINICIAN)
    await tokens.revoke(issued.claims)
    await tokens.issue(USER, Role.CLINICIAN)
    keys = [k.decode() for k in await redis_client.keys("*")]
    assert keys and all(k.startswith(("viop:auth:active:", "viop:auth:revoked:")) for k in keys)
    for key in keys:
        if key.startswith("viop:auth:active:"):  # {t: last use, m: the record's MAC}
            record = await redis_client.hgetall(key)
            assert set(record) == {b"t", b"m"} and record[b"t"].decode().isdigit() and len(record[b"m"]) == 32
            continue
        value = await redis_client.get(key)
        assert value is not None and value.decode().isdigit()  # a time or a flag, never the token
    assert all(issued.token not in k and USER not in k for k in keys)


def test_policy_and_keys_are_validated() -> None:
    with pytest.raises(ValueError):
        TokenPolicy(idle_seconds=0)
    with pytest.raises(ValueError):
        TokenPolicy(idle_seconds=100, lifetime_seconds=50)
    with pytest.raises(ValueError):
        TokenKeys("k1", b"short")
    with pytest.raises(ValueError):
        TokenKeys("k1", SEED, previous={"k1": OTHER_SEED})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.one_of(
        st.dictionaries(
            st.sampled_from(["alg", "kid", "typ", "crit", "b64", "jku"]), JSON_VALUES, max_size=4
        ),
        JSON_VALUES,
    ),
    claims=st.one_of(st.dictionaries(st.sampled_from(CLAIM_NAMES), JSON_VALUES, max_size=9), JSON_VALUES),
    signature=st.text(alphabet="ABCabc0123-_=+/.", max_size=90),
)
def test_hostile_tokens_only_ever_get_a_401(
    keys: TokenKeys, header: Any, claims: Any, signature: str
) -> None:
    tokens = AccessTokens(
        keys, RedisSessionStore(aioredis.Redis()), POLICY, session_key=SESSION_KEY
    )  # decode() never touches Redis
    token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{signature}"
    with pytest.raises(TokenRejected):
        tokens.decode(token)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(max_size=300))
def test_arbitrary_text_only_ever_gets_a_401(keys: TokenKeys, token: str) -> None:
    with pytest.raises(TokenRejected):
        AccessTokens(keys, RedisSessionStore(aioredis.Redis()), POLICY, session_key=SESSION_KEY).decode(token)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claims=st.dictionaries(st.sampled_from(CLAIM_NAMES), JSON_VALUES, max_size=9))
def test_hostile_claims_with_a_valid_signature_only_ever_get_a_401(
    keys: TokenKeys, claims: dict[str, Any]
) -> None:
    with pytest.raises(TokenRejected) as caught:
        AccessTokens(keys, RedisSessionStore(aioredis.Redis()), POLICY, session_key=SESSION_KEY).decode(
            signed(keys, claims)
        )
    assert caught.value.reason in (TokenFailure.INVALID_CLAIMS, TokenFailure.WRONG_ISSUER,
                                   TokenFailure.WRONG_AUDIENCE, TokenFailure.EXPIRED,
                                   TokenFailure.NOT_YET_VALID)  # fmt: skip
