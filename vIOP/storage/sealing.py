"""The narrow contract every store uses to keep PHI out of plaintext: seal/unseal bytes bound to a context.

Stores (Redis waiting rooms, presence, SQL records) depend only on :class:`Sealer`; the key ring in
``vIOP/storage/crypto.py`` decides which keys back it.
"""

from __future__ import annotations

import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vIOP.errors import VIOPError


class DecryptionError(VIOPError):
    """A sealed value failed authentication: tampered, truncated, moved, or under an unknown key."""

    code = "decryption_failed"
    http_status = 500


class Sealer(Protocol):
    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext``; ``context`` (e.g. the Redis key) is bound as AAD."""
        ...

    def unseal(self, blob: bytes, context: bytes) -> bytes:
        """Inverse of :meth:`seal`; raises :class:`DecryptionError`, never returns partial plaintext."""
        ...


_VERSION = b"\x01"
_NONCE = 12


class AesGcmSealer:
    """AES-256-GCM with a fresh random 96-bit nonce per value. Blob: version || nonce || ciphertext+tag."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context)

    def unseal(self, blob: bytes, context: bytes) -> bytes:
        if len(blob) < 1 + _NONCE + 16 or blob[:1] != _VERSION:
            raise DecryptionError("sealed value is truncated or of an unknown format")
        try:
            return self._aead.decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], context)
        except InvalidTag:
            raise DecryptionError("sealed value failed authentication") from None
