"""Password hashing (argon2id) and time-based one-time passwords (TOTP, RFC 6238).

Argon2id parameters default to RFC 9106's low-memory profile (t=3, 64 MiB, p=4); tests pass a cheap
profile. TOTP is HMAC-SHA1, 6 digits, 30-second steps: what every authenticator app understands.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import secrets
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from hashlib import sha1
from typing import Final
from urllib.parse import quote, urlencode

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

from vIOP.errors import BadRequest

MIN_PASSWORD_CHARS: Final = 12
MAX_PASSWORD_CHARS: Final = 1024  # hashing megabytes of "password" is a denial of service


def check_password_shape(password: str) -> None:
    """Length only (NIST SP 800-63B: no composition rules); raises :class:`BadRequest`."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise BadRequest(
            f"a password must have between {MIN_PASSWORD_CHARS} and {MAX_PASSWORD_CHARS} characters"
        )


# argon2 releases the GIL but takes ~0.2 s of CPU and 64 MiB per call: never on the event loop, and at most
# two at a time, so a burst of sign-ins queues here instead of stalling signaling or exhausting memory.
_HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


class PasswordHasher:
    """argon2id hashes as PHC strings; verification never raises on a wrong password.

    The ``*_async`` methods run in a dedicated two-thread pool: use them inside the server.
    """

    __slots__ = ("_dummy", "_hasher")

    def __init__(self, parameters: argon2.Parameters = RFC_9106_LOW_MEMORY) -> None:
        if parameters.type is not argon2.Type.ID:
            raise ValueError("only argon2id is allowed")
        self._hasher = argon2.PasswordHasher.from_parameters(parameters)
        self._dummy: str | None = None  # made on first use: the CLI never needs it

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def verify_dummy(self, password: str) -> None:
        """Spend the time of one verification without an account (timing equalization)."""
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        self.verify(self._dummy, password)

    async def hash_async(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(_HASHING, self.hash, password)

    async def verify_async(self, password_hash: str, password: str) -> bool:
        return await asyncio.get_running_loop().run_in_executor(
            _HASHING, self.verify, password_hash, password
        )

    async def verify_dummy_async(self, password: str) -> None:
        await asyncio.get_running_loop().run_in_executor(_HASHING, self.verify_dummy, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True


TOTP_DIGITS: Final = 6
TOTP_STEP_SECONDS: Final = 30
TOTP_SECRET_BYTES: Final = 20  # 160 bits, RFC 4226's recommendation for HMAC-SHA1


def new_totp_secret() -> bytes:
    return secrets.token_bytes(TOTP_SECRET_BYTES)


def hotp(secret: bytes, counter: int, digits: int = TOTP_DIGITS) -> str:
    """RFC 4226: HMAC-SHA1 of the big-endian counter, dynamically truncated."""
    mac = hmac.new(secret, struct.pack(">Q", counter), sha1).digest()
    offset = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def totp_step(now: float) -> int:
    return int(now // TOTP_STEP_SECONDS)


@dataclass(frozen=True, slots=True)
class Totp:
    """Verification of TOTP codes with a tolerance of ``window`` steps either side for clock drift."""

    window: int = 1

    def match_step(self, secret: bytes, code: str, now: float) -> int | None:
        """The time step ``code`` belongs to, or None. Callers refuse steps already used (replay)."""
        if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
            return None
        current = totp_step(now)
        matched: int | None = None
        # Compare against every candidate step (constant work regardless of which one matches).
        for step in range(current - self.window, current + self.window + 1):
            if hmac.compare_digest(hotp(secret, step), code) and matched is None:
                matched = step
        return matched


def provisioning_uri(secret: bytes, account_name: str, issuer: str = "vIOP") -> str:
    """The ``otpauth://`` URI an authenticator app scans (shown once, at enrollment)."""
    label = quote(f"{issuer}:{account_name}", safe=":@")
    secret_b32 = base64.b32encode(secret).decode("ascii").rstrip("=")
    query = urlencode(
        {
            "secret": secret_b32,
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": TOTP_DIGITS,
            "period": TOTP_STEP_SECONDS,
        }
    )
    return f"otpauth://totp/{label}?{query}"
