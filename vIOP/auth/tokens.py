"""Access tokens: Ed25519-signed JWTs (joserfc) plus a server-side session record (:class:`SessionStore`;
in Redis, :class:`vIOP.storage.redis_auth.RedisSessionStore`).

- The algorithm is pinned to ``Ed25519`` (RFC 9864) and the key is chosen by ``kid`` from our own key set,
  so ``alg: none``, HMAC-with-the-public-key and any other key confusion cannot verify. Headers other than
  ``typ``/``alg``/``kid`` (``jku``, ``jwk``, ``crit``...) are refused.
- Claims: ``iss aud sub role exp nbf iat jti``, all required. ``exp`` is the absolute lifetime (default 12 h).
- Idle timeout (default 15 min) is enforced server-side: each token has an activity record in Redis,
  ``viop:auth:active:{jti}`` = last use (epoch seconds from the injectable clock). A use after more than
  ``idle_seconds`` of silence ends the session. Logout writes ``viop:auth:revoked:{jti}`` (the denylist)
  until the token's ``exp``. Redis keys hold opaque ids and times only.
- Redis is not trusted to vouch for a session: the activity record is a hash ``{t: last use, m: MAC}``
  whose HMAC-SHA256 (a key derived from the key ring) binds it to its ``jti``; a record without a valid MAC
  (written straight into Redis) is an unknown session. Checked in constant time.
- An account revocation (:mod:`vIOP.auth.revocation`: disable, MFA reset...) voids every token of that
  account issued at or before it; tokens carry whole seconds, so one issued within the same second as the
  revocation is refused too (sign in again).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol, TypeGuard

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import GuestProtocol, OKPKey

from vIOP.auth.permissions import ACCOUNT_ROLES, Principal, Role
from vIOP.errors import Unauthenticated
from vIOP.ids import UserId

ALGORITHM: Final = "Ed25519"
MAX_TOKEN_CHARS: Final = 4096
_ALLOWED_HEADERS: Final = frozenset({"typ", "alg", "kid"})
_REQUIRED_CLAIMS: Final = ("iss", "aud", "sub", "role", "exp", "nbf", "iat", "jti")
SESSION_KEY_PURPOSE: Final = "access-token/session-record-hmac/v1"  # ``ring.derive_key(...)``
_REDIS_SLACK_SECONDS: Final = 60  # Redis TTLs run on the real clock: keep records a little longer


class TokenFailure(StrEnum):
    """Why a token was refused: for audit and tests; clients only ever see a 401."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_ISSUER = "wrong_issuer"
    INVALID_CLAIMS = "invalid_claims"
    REVOKED = "revoked"
    IDLE = "idle"
    UNKNOWN_SESSION = "unknown_session"


_MESSAGES: Final = {
    TokenFailure.EXPIRED: "the session has reached its maximum lifetime; sign in again",
    TokenFailure.IDLE: "the session ended after inactivity; sign in again",
    TokenFailure.REVOKED: "the session was signed out; sign in again",
    TokenFailure.UNKNOWN_SESSION: "the session is no longer known; sign in again",
}


class TokenRejected(Unauthenticated):
    def __init__(self, reason: TokenFailure) -> None:
        super().__init__(_MESSAGES.get(reason, "the access token is invalid"))
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    issuer: str = "viop"
    audience: str = "viop-api"
    idle_seconds: int = 15 * 60
    lifetime_seconds: int = 12 * 3600
    leeway_seconds: int = 5  # clock skew between processes, for nbf/iat only

    def __post_init__(self) -> None:
        if not 0 < self.idle_seconds <= self.lifetime_seconds:
            raise ValueError("idle timeout must be positive and no longer than the lifetime")


class TokenKeys:
    """The signing key (newest) and every key still accepted for verification, by ``kid``.

    Keys are Ed25519 seeds (32 bytes) the caller takes from the key ring; rotating means adding a new
    primary and keeping the previous one verifiable until its tokens have expired (<= lifetime).
    """

    __slots__ = ("_signing", "_signing_kid", "_verifying")

    def __init__(self, primary_kid: str, primary_seed: bytes, previous: Mapping[str, bytes] | None = None):
        if primary_kid in (previous or {}):
            raise ValueError("the primary key id is also among the previous keys")
        self._signing_kid = primary_kid
        self._signing = _okp(primary_seed)
        public = {primary_kid: OKPKey.import_key(self._signing.as_dict(private=False))}
        for kid, seed in (previous or {}).items():
            public[kid] = OKPKey.import_key(_okp(seed).as_dict(private=False))
        self._verifying = public

    @property
    def signing_kid(self) -> str:
        return self._signing_kid

    def signing_key(self) -> OKPKey:
        return self._signing

    def verifying_key(self, kid: str) -> OKPKey | None:
        return self._verifying.get(kid)


def _okp(seed: bytes) -> OKPKey:
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    return OKPKey.import_key(Ed25519PrivateKey.from_private_bytes(seed))


@dataclass(frozen=True, slots=True)
class AccessClaims:
    subject: UserId
    role: Role
    jti: str
    issued_at: int
    expires_at: int

    @property
    def principal(self) -> Principal:
        return Principal(role=self.role, subject=self.subject)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    claims: AccessClaims


class _HeaderRefused(Exception):
    def __init__(self, reason: TokenFailure) -> None:
        self.reason = reason


class SessionStore(Protocol):
    """Activity records and the logout denylist (:class:`vIOP.storage.redis_auth.RedisSessionStore`)."""

    async def write(self, jti: str, last_use: int, mac: bytes, ttl_seconds: int) -> None:
        """(Re)write the activity record of ``jti``: last use and the record's MAC."""
        ...

    async def exists(self, jti: str) -> bool: ...

    async def sign_out(self, jti: str, ttl_seconds: int) -> None:
        """Deny ``jti`` for ``ttl_seconds`` and drop its activity record, in one step."""
        ...

    async def touch(
        self, jti: str, subject: str | None, issued_at: int | None, now: int, idle_seconds: int, record: bool
    ) -> tuple[str, bytes | None]:
        """Atomically: ``("revoked", None)`` if signed out or ``issued_at`` is at or before an account
        revocation of ``subject``; ``("unknown", None)`` without a record; ``("idle", None)`` (record
        dropped) after more than ``idle_seconds`` of silence; else ``("ok", the record's MAC)``, recording
        this use at ``now`` when ``record``."""
        ...


_TOUCH_RESULTS: Final = {
    "revoked": TokenFailure.REVOKED,
    "unknown": TokenFailure.UNKNOWN_SESSION,
    "idle": TokenFailure.IDLE,
}


class AccessTokens:
    """Issue, verify (signature, claims, denylist, idle) and revoke access tokens."""

    def __init__(
        self,
        keys: TokenKeys,
        sessions: SessionStore,
        policy: TokenPolicy | None = None,
        clock: Callable[[], float] = time.time,
        *,
        session_key: bytes,
    ) -> None:
        self._keys = keys
        self._sessions = sessions
        self._policy = policy or TokenPolicy()
        self._clock = clock
        if len(session_key) < 32:
            raise ValueError("the session record MAC key has at least 32 bytes")
        self._session_key = session_key

    @property
    def policy(self) -> TokenPolicy:
        return self._policy

    async def issue(self, user_id: UserId, role: Role) -> IssuedToken:
        if role not in ACCOUNT_ROLES:
            raise ValueError("access tokens are for accounts; clients use invites")
        now = int(self._clock())
        policy = self._policy
        claims = AccessClaims(
            subject=user_id,
            role=role,
            jti=secrets.token_urlsafe(16),
            issued_at=now,
            expires_at=now + policy.lifetime_seconds,
        )
        payload = {
            "iss": policy.issuer,
            "aud": policy.audience,
            "sub": user_id,
            "role": role.value,
            "iat": now,
            "nbf": now,
            "exp": claims.expires_at,
            "jti": claims.jti,
        }
        header = {"alg": ALGORITHM, "kid": self._keys.signing_kid}
        token = jwt.encode(header, payload, self._keys.signing_key(), algorithms=[ALGORITHM])
        await self._write_session(claims.jti, now)
        return IssuedToken(token=token, expires_in=policy.lifetime_seconds, claims=claims)

    def decode(self, token: str) -> AccessClaims:
        """Signature and claims only (pure, no Redis): use :meth:`verify` to authenticate a request."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii() or token.count(".") != 2:
            raise TokenRejected(TokenFailure.MALFORMED)
        try:
            decoded = jwt.decode(token, self._key_for, algorithms=[ALGORITHM])
        except _HeaderRefused as refused:
            raise TokenRejected(refused.reason) from None
        except JoseError as error:
            raise TokenRejected(_failure_of(error)) from None
        except (ValueError, TypeError, UnicodeError):  # undecodable base64/JSON inside the library
            raise TokenRejected(TokenFailure.MALFORMED) from None
        return self._validate_claims(decoded.claims)

    async def verify(self, token: str) -> AccessClaims:
        """Authenticate one use of ``token``: counts as activity for the idle timeout."""
        claims = self.decode(token)
        await self._check_session(claims.jti, claims.subject, claims.issued_at)
        return claims

    async def keep_alive(self, jti: str, *, active: bool = True) -> bool:
        """A live socket's heartbeat; False once the session is over. Only ``active`` heartbeats (the person
        is using the page) count as activity: an open but unattended page must not defeat the idle timeout,
        so its heartbeats only check that the sign-in is still alive."""
        try:
            await self._check_session(jti, touch=active)
        except TokenRejected:
            return False
        return True

    async def reassert(self, jti: str) -> bool:
        """Redis lost its data while a socket of this sign-in was live: put the session back (as active
        now) unless Redis still knows it. True if it was put back. Only for sessions proven live a moment
        ago; the token's own ``exp`` still bounds every HTTP use, but a socket's sign-in then lives at most
        one token lifetime from now (its true end was lost with the data)."""
        if await self._sessions.exists(jti):
            return False
        await self._write_session(jti, int(self._clock()))
        return True

    async def revoke(self, claims: AccessClaims) -> None:
        """Logout: deny this ``jti`` until the token would have expired anyway."""
        remaining = max(1, claims.expires_at - int(self._clock()))
        await self._sessions.sign_out(claims.jti, remaining + _REDIS_SLACK_SECONDS)

    def _session_mac(self, jti: str) -> bytes:
        return hmac.new(self._session_key, b"session\x00" + jti.encode(), hashlib.sha256).digest()

    async def _write_session(self, jti: str, now: int) -> None:
        ttl = self._policy.lifetime_seconds + _REDIS_SLACK_SECONDS
        await self._sessions.write(jti, now, self._session_mac(jti), ttl)

    async def _check_session(
        self, jti: str, subject: str | None = None, issued_at: int | None = None, *, touch: bool = True
    ) -> None:
        status, mac = await self._sessions.touch(
            jti, subject, issued_at, int(self._clock()), self._policy.idle_seconds, touch
        )
        failure = _TOUCH_RESULTS.get(status)
        if failure is not None:
            raise TokenRejected(failure)
        if mac is None or not hmac.compare_digest(mac, self._session_mac(jti)):
            raise TokenRejected(TokenFailure.UNKNOWN_SESSION)  # a record the app did not write

    def _key_for(self, obj: GuestProtocol) -> OKPKey:
        headers = obj.headers()
        if not set(headers) <= _ALLOWED_HEADERS or headers.get("alg") != ALGORITHM:
            raise _HeaderRefused(TokenFailure.MALFORMED)
        kid = headers.get("kid")
        key = self._keys.verifying_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise _HeaderRefused(TokenFailure.UNKNOWN_KEY)
        return key

    def _validate_claims(self, claims: dict[str, Any]) -> AccessClaims:
        policy = self._policy
        now = int(self._clock())
        if any(claims.get(name) in (None, "") for name in _REQUIRED_CLAIMS):
            raise TokenRejected(TokenFailure.INVALID_CLAIMS)
        issued, not_before, expires = claims["iat"], claims["nbf"], claims["exp"]
        texts = (claims["iss"], claims["aud"], claims["sub"], claims["role"], claims["jti"])
        if not all(_is_int(v) for v in (issued, not_before, expires)) or not all(
            isinstance(v, str) for v in texts
        ):
            raise TokenRejected(TokenFailure.INVALID_CLAIMS)
        if claims["iss"] != policy.issuer:
            raise TokenRejected(TokenFailure.WRONG_ISSUER)
        if claims["aud"] != policy.audience:
            raise TokenRejected(TokenFailure.WRONG_AUDIENCE)
        if not_before > now + policy.leeway_seconds or issued > now + policy.leeway_seconds:
            raise TokenRejected(TokenFailure.NOT_YET_VALID)
        # exp is the absolute lifetime; a token never outlives the policy even if it claims to.
        if (
            now >= expires
            or expires - issued > policy.lifetime_seconds
            or now - issued >= policy.lifetime_seconds
        ):
            raise TokenRejected(TokenFailure.EXPIRED)
        try:
            role = Role(claims["role"])
        except ValueError:
            raise TokenRejected(TokenFailure.INVALID_CLAIMS) from None
        if role not in ACCOUNT_ROLES:
            raise TokenRejected(TokenFailure.INVALID_CLAIMS)
        return AccessClaims(
            subject=UserId(claims["sub"]), role=role, jti=claims["jti"], issued_at=issued, expires_at=expires
        )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _failure_of(error: JoseError) -> TokenFailure:
    if isinstance(error, BadSignatureError):
        return TokenFailure.BAD_SIGNATURE
    return TokenFailure.MALFORMED
