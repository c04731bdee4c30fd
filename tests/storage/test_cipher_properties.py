"""Property tests: round trips for any input; every single-byte flip, AAD swap and truncation rejected."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vIOP.storage.crypto import FieldCipher, FieldRef, blob_key_id
from vIOP.storage.keys import KekRef, unwrap_with, wrap_with
from vIOP.storage.sealing import AesGcmSealer, DecryptionError

KEY = os.urandom(32)
CIPHER = FieldCipher("dk_test", KEY)
OTHER = FieldCipher("dk_other", os.urandom(32))
SEALER = AesGcmSealer(os.urandom(32))

names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)
refs = st.builds(FieldRef, names, names, names)
payloads = st.one_of(st.text(), st.binary())


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _every_flip(blob: bytes, mask: int) -> list[bytes]:
    return [blob[:i] + bytes([blob[i] ^ mask]) + blob[i + 1 :] for i in range(len(blob))]


@given(payload=payloads, where=refs)
def test_field_round_trip(payload: str | bytes, where: FieldRef) -> None:
    blob = CIPHER.encrypt(where, payload)
    assert CIPHER.decrypt(where, blob) == _as_bytes(payload)
    assert blob_key_id(blob) == "dk_test"
    if isinstance(payload, str):
        assert CIPHER.decrypt_text(where, blob) == payload


@given(payload=payloads, where=refs, mask=st.integers(1, 255))
@settings(max_examples=60)
def test_field_every_single_byte_flip_is_rejected(payload: str | bytes, where: FieldRef, mask: int) -> None:
    blob = CIPHER.encrypt(where, payload)
    for tampered in _every_flip(blob, mask):
        with pytest.raises(DecryptionError):
            CIPHER.decrypt(where, tampered)


@given(payload=payloads, where=refs, other=refs)
def test_field_aad_swaps_are_rejected(payload: str | bytes, where: FieldRef, other: FieldRef) -> None:
    blob = CIPHER.encrypt(where, payload)
    for moved in (
        FieldRef(other.table, where.column, where.row_id),
        FieldRef(where.table, other.column, where.row_id),
        FieldRef(where.table, where.column, other.row_id),
    ):
        if moved != where:
            with pytest.raises(DecryptionError):
                CIPHER.decrypt(moved, blob)


@given(payload=payloads, where=refs)
def test_field_every_truncation_is_rejected(payload: str | bytes, where: FieldRef) -> None:
    blob = CIPHER.encrypt(where, payload)
    for length in range(len(blob)):
        with pytest.raises(DecryptionError):
            CIPHER.decrypt(where, blob[:length])


@given(first=payloads, second=payloads, where=refs)
def test_field_swapped_nonce_and_foreign_key_are_rejected(
    first: str | bytes, second: str | bytes, where: FieldRef
) -> None:
    a, b = CIPHER.encrypt(where, first), CIPHER.encrypt(where, second)
    head = 2 + len("dk_test")
    swapped = a[:head] + b[head : head + 12] + a[head + 12 :]
    with pytest.raises(DecryptionError):
        CIPHER.decrypt(where, swapped)
    with pytest.raises(DecryptionError):
        OTHER.decrypt(where, a)  # names another data key


@given(
    payload=st.binary(),
    context=st.binary(max_size=64),
    other=st.binary(max_size=64),
    mask=st.integers(1, 255),
)
@settings(max_examples=60)
def test_redis_sealer_round_trip_flips_context_and_truncation(
    payload: bytes, context: bytes, other: bytes, mask: int
) -> None:
    blob = SEALER.seal(payload, context)
    assert SEALER.unseal(blob, context) == payload
    for tampered in _every_flip(blob, mask):
        with pytest.raises(DecryptionError):
            SEALER.unseal(tampered, context)
    for length in range(len(blob)):
        with pytest.raises(DecryptionError):
            SEALER.unseal(blob[:length], context)
    if other != context:
        with pytest.raises(DecryptionError):
            SEALER.unseal(blob, other)


@given(data_key=st.binary(min_size=32, max_size=32), mask=st.integers(1, 255))
@settings(max_examples=30)
def test_key_wrap_rejects_every_flip_and_truncation(data_key: bytes, mask: int) -> None:
    kek = KekRef("local", 1)
    wrapped = wrap_with(kek, KEY, data_key, b"dk_1")
    assert unwrap_with(kek, KEY, wrapped, b"dk_1") == data_key
    for tampered in [*_every_flip(wrapped, mask), *(wrapped[:n] for n in range(len(wrapped)))]:
        with pytest.raises(DecryptionError):
            unwrap_with(kek, KEY, tampered, b"dk_1")
    with pytest.raises(DecryptionError):
        unwrap_with(KekRef("local", 2), KEY, wrapped, b"dk_1")  # re-labelled as another KEK version


def test_errors_never_carry_plaintext() -> None:
    canary = "Canary Ζωή-7f3a"
    where = FieldRef("clients", "display_name", "cl_1")
    blob = CIPHER.encrypt(where, canary)
    for bad, at in [
        (blob[:-1], where),
        (blob[:5], where),
        (_every_flip(blob, 1)[-3], where),
        (blob, FieldRef("clients", "display_name", "cl_2")),
    ]:
        with pytest.raises(DecryptionError) as caught:
            CIPHER.decrypt(at, bad)
        assert canary not in str(caught.value)
        assert canary not in repr(caught.value.args)
