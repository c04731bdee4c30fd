"""argon2id hashing and TOTP against the RFC 6238 test vectors."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import argon2
import pytest

from vIOP.auth.passwords import (
    PasswordHasher,
    Totp,
    check_password_shape,
    hotp,
    new_totp_secret,
    provisioning_uri,
    totp_step,
)
from vIOP.errors import BadRequest

RFC_SECRET = b"12345678901234567890"


def test_hash_is_argon2id_and_verifies(password_hasher: PasswordHasher) -> None:
    hashed = password_hasher.hash("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert password_hasher.verify(hashed, "correct horse battery")
    assert not password_hasher.verify(hashed, "correct horse batterY")
    assert not password_hasher.verify("not a hash", "correct horse battery")
    assert password_hasher.hash("same") != password_hasher.hash("same")  # salted


def test_rehash_when_parameters_change(password_hasher: PasswordHasher) -> None:
    hashed = password_hasher.hash("correct horse battery")
    assert not password_hasher.needs_rehash(hashed)
    stronger = argon2.Parameters(
        type=argon2.Type.ID,
        version=19,
        salt_len=16,
        hash_len=32,
        time_cost=2,
        memory_cost=2048,
        parallelism=1,
    )
    assert PasswordHasher(stronger).needs_rehash(hashed)
    assert password_hasher.needs_rehash("garbage")


def test_only_argon2id() -> None:
    argon2i = argon2.Parameters(
        type=argon2.Type.I, version=19, salt_len=16, hash_len=32, time_cost=1, memory_cost=1024, parallelism=1
    )
    with pytest.raises(ValueError):
        PasswordHasher(argon2i)


@pytest.mark.parametrize("password", ["", "short", "x" * 11, "x" * 1025])
def test_password_shape_refused(password: str) -> None:
    with pytest.raises(BadRequest):
        check_password_shape(password)


def test_password_shape_accepted() -> None:
    check_password_shape("twelve chars")
    check_password_shape("é" * 1024)


@pytest.mark.parametrize(
    ("time", "code"),
    [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"), (1234567890, "89005924"),
     (2000000000, "69279037"), (20000000000, "65353130")],
)  # fmt: skip
def test_rfc6238_sha1_vectors(time: int, code: str) -> None:
    assert hotp(RFC_SECRET, totp_step(time), digits=8) == code


def test_totp_window_and_shape() -> None:
    now = 1_750_000_000.0
    code = hotp(RFC_SECRET, totp_step(now))
    totp = Totp(window=1)
    assert totp.match_step(RFC_SECRET, code, now) == totp_step(now)
    assert totp.match_step(RFC_SECRET, code, now + 30) == totp_step(now)  # one step of drift
    assert totp.match_step(RFC_SECRET, code, now - 30) == totp_step(now)
    assert totp.match_step(RFC_SECRET, code, now + 61) is None
    for bad in ("", "12345", "1234567", "abcdef", "１２３４５６", code + " "):
        assert totp.match_step(RFC_SECRET, bad, now) is None
    assert totp.match_step(b"another secret, 20 b", code, now) is None


def test_provisioning_uri() -> None:
    secret = new_totp_secret()
    assert len(secret) == 20
    uri = provisioning_uri(secret, "dr.lee@clinic")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert parts.path == "/vIOP:dr.lee@clinic"
    query = parse_qs(parts.query)
    encoded = query["secret"][0]
    assert base64.b32decode(encoded + "=" * (-len(encoded) % 8)) == secret
    assert query["issuer"] == ["vIOP"] and query["digits"] == ["6"] and query["period"] == ["30"]
