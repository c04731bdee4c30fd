"""Envelope encryption of fields, the key ring, blind indexes and crypto-shredding.

Every sensitive value is AES-256-GCM ciphertext under a *data key*; data keys are stored in ``data_keys``
wrapped by a KEK from the :class:`~vIOP.storage.keys.KeySource`. A field blob is::

    0x01 | len(key id) | key id (ASCII) | 96-bit random nonce | ciphertext + 128-bit tag

with associated data = (format, key id, table, column, row id): a blob copied to another row or column,
or re-labelled with another key id, fails authentication. The blob names its data key; the data key's
row names its KEK id and version, so `keys rotate` re-wraps data keys without touching any field.

Keys: ``sys.fields`` (workforce accounts, room titles, audit IPs), ``sys.redis`` (values in Redis),
``sys.root`` (HKDF root for blind indexes and the audit chain), and one ``dk_...`` key per client.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from vIOP.errors import BadRequest, NotFound
from vIOP.storage.database import Database
from vIOP.storage.keys import KEY_BYTES, KekRef, KeySource
from vIOP.storage.schema import clients, data_keys
from vIOP.storage.sealing import AesGcmSealer, DecryptionError, Sealer

SYSTEM_ROOT = "sys.root"
SYSTEM_FIELDS = "sys.fields"
SYSTEM_REDIS = "sys.redis"
SYSTEM_KEYS = (SYSTEM_ROOT, SYSTEM_FIELDS, SYSTEM_REDIS)

_FORMAT = 1
_NONCE = 12
_TAG = 16
_PRELOAD_CHUNK = 500


class KeyScope(StrEnum):
    SYSTEM = "system"
    CLIENT = "client"


class UnknownDataKey(DecryptionError):
    code = "unknown_data_key"


class KeyDestroyed(DecryptionError):
    """The data key was crypto-shredded: the value is gone for good."""

    code = "key_destroyed"
    http_status = 410


@dataclass(frozen=True, slots=True)
class FieldRef:
    """Where a ciphertext lives; bound into its associated data."""

    table: str
    column: str
    row_id: str


def _lp(part: bytes) -> bytes:
    return len(part).to_bytes(2, "big") + part


def _aad(header: bytes, where: FieldRef) -> bytes:
    return (
        b"viop/field/v1"
        + _lp(header)
        + _lp(where.table.encode())
        + _lp(where.column.encode())
        + _lp(where.row_id.encode())
    )


def blob_key_id(blob: bytes) -> str:
    """The data key id a field blob names; DecryptionError if the blob is too short to name one."""
    if len(blob) < 2 or blob[0] != _FORMAT:
        raise DecryptionError("encrypted field is truncated or of an unknown format")
    end = 2 + blob[1]
    if len(blob) < end + _NONCE + _TAG:
        raise DecryptionError("encrypted field is truncated")
    try:
        return blob[2:end].decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionError("encrypted field names no valid key id") from None


class FieldCipher:
    """AES-256-GCM under one data key. Synchronous and allocation-light: the hot path of every store."""

    __slots__ = ("_aead", "_header", "key_id")

    def __init__(self, key_id: str, key: bytes) -> None:
        raw_id = key_id.encode("ascii")
        if not 0 < len(raw_id) < 256 or len(key) != KEY_BYTES:
            raise ValueError("a field cipher needs a 1..255 character key id and a 32-byte key")
        self.key_id = key_id
        self._header = bytes((_FORMAT, len(raw_id))) + raw_id
        self._aead = AESGCM(key)

    def encrypt(self, where: FieldRef, plaintext: str | bytes) -> bytes:
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        nonce = secrets.token_bytes(_NONCE)
        return self._header + nonce + self._aead.encrypt(nonce, data, _aad(self._header, where))

    def decrypt(self, where: FieldRef, blob: bytes) -> bytes:
        head = len(self._header)
        if len(blob) < head + _NONCE + _TAG or blob[:head] != self._header:
            raise DecryptionError("encrypted field is truncated or not under this data key")
        try:
            return self._aead.decrypt(
                blob[head : head + _NONCE], blob[head + _NONCE :], _aad(self._header, where)
            )
        except InvalidTag:
            raise DecryptionError(
                f"encrypted field {where.table}.{where.column} failed authentication "
                "(tampered, truncated, or copied from another row)"
            ) from None

    def decrypt_text(self, where: FieldRef, blob: bytes) -> str:
        try:
            return self.decrypt(where, blob).decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError("encrypted field is not text") from None


def _derive(root: bytes, purpose: str) -> bytes:
    info = b"viop/derive/v1/" + purpose.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(root)


def data_key_aad(key_id: str) -> bytes:
    """What a wrapped data key is bound to: its own id (a wrapped key moved to another row fails)."""
    return b"viop/data-key/v1\x00" + key_id.encode("ascii")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Cached:
    cipher: FieldCipher
    loaded_at: float


class KeyRing:
    """Data keys: creates them, unwraps them through the key source, caches them, destroys them.

    Client keys are cached for ``cache_ttl`` seconds, so a shred done by another process takes effect
    here within that time; system keys stay loaded. Build with :meth:`open`.
    """

    def __init__(
        self,
        db: Database,
        source: KeySource,
        *,
        cache_ttl: float = 60.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.source = source
        self._cache: dict[str, _Cached] = {}
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._clock = clock
        self._system: dict[str, FieldCipher] = {}
        self._system_raw: dict[str, bytes] = {}  # for HKDF and the Redis sealer only
        self._derived: dict[str, bytes] = {}

    @classmethod
    async def open(
        cls,
        db: Database,
        source: KeySource,
        *,
        cache_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> KeyRing:
        """Load (creating on first start) the system keys; KeySourceError/UnknownKek if keys are missing."""
        ring = cls(db, source, cache_ttl=cache_ttl, clock=clock)
        for key_id in SYSTEM_KEYS:
            try:
                async with db.begin() as conn:
                    if not await ring._exists(conn, key_id):
                        await ring.create_data_key(conn, KeyScope.SYSTEM, key_id=key_id)
            except IntegrityError:
                pass  # another process created it at the same moment
            raw = await ring._unwrap(key_id)
            ring._system_raw[key_id] = raw
            ring._system[key_id] = FieldCipher(key_id, raw)
        return ring

    @staticmethod
    async def _exists(conn: AsyncConnection, key_id: str) -> bool:
        row = await conn.execute(select(data_keys.c.id).where(data_keys.c.id == key_id))
        return row.first() is not None

    async def create_data_key(
        self, conn: AsyncConnection, scope: KeyScope = KeyScope.CLIENT, *, key_id: str | None = None
    ) -> str:
        """A new random data key, wrapped under the primary KEK, inserted in the caller's transaction."""
        key_id = key_id or f"dk_{secrets.token_urlsafe(12)}"
        key = secrets.token_bytes(KEY_BYTES)
        kek, wrapped = await self.source.wrap(key, data_key_aad(key_id))
        await conn.execute(
            insert(data_keys).values(
                id=key_id,
                scope=scope.value,
                kek_id=kek.kek_id,
                kek_version=kek.version,
                wrapped=wrapped,
                created_at=utc_now(),
            )
        )
        self._remember(FieldCipher(key_id, key))
        return key_id

    async def _unwrap(self, key_id: str) -> bytes:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        data_keys.c.kek_id,
                        data_keys.c.kek_version,
                        data_keys.c.wrapped,
                        data_keys.c.destroyed_at,
                    ).where(data_keys.c.id == key_id)
                )
            ).first()
        if row is None:
            raise UnknownDataKey(f"data key {key_id} does not exist")
        if row.destroyed_at is not None or row.wrapped is None:
            raise KeyDestroyed(f"data key {key_id} was destroyed (crypto-shredded)")
        key = await self.source.unwrap(KekRef(row.kek_id, row.kek_version), row.wrapped, data_key_aad(key_id))
        if len(key) != KEY_BYTES:
            raise DecryptionError(f"data key {key_id} unwrapped to the wrong length")
        return key

    def _remember(self, cipher: FieldCipher) -> None:
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))  # oldest first: dicts keep insertion order
        self._cache[cipher.key_id] = _Cached(cipher, self._clock())

    async def cipher(self, key_id: str) -> FieldCipher:
        """The field cipher of a data key (cached); UnknownDataKey, KeyDestroyed or UnknownKek."""
        system = self._system.get(key_id)
        if system is not None:
            return system
        cached = self._cache.get(key_id)
        if cached is not None and self._clock() - cached.loaded_at < self._cache_ttl:
            return cached.cipher
        self._cache.pop(key_id, None)
        cipher = FieldCipher(key_id, await self._unwrap(key_id))
        self._remember(cipher)
        return cipher

    async def preload(self, key_ids: Iterable[str]) -> None:
        """Load many data keys in a few queries (exports, reports); missing or destroyed ones are skipped
        here and raise their typed error when used."""
        wanted = sorted({k for k in key_ids if k not in self._system})
        for start in range(0, len(wanted), _PRELOAD_CHUNK):
            chunk = wanted[start : start + _PRELOAD_CHUNK]
            async with self.db.read() as conn:
                rows = (
                    await conn.execute(
                        select(
                            data_keys.c.id, data_keys.c.kek_id, data_keys.c.kek_version, data_keys.c.wrapped
                        ).where(data_keys.c.id.in_(chunk), data_keys.c.destroyed_at.is_(None))
                    )
                ).all()
            for row in rows:
                kek = KekRef(row.kek_id, row.kek_version)
                key = await self.source.unwrap(kek, row.wrapped, data_key_aad(row.id))
                self._remember(FieldCipher(row.id, key))

    def forget(self, key_id: str) -> None:
        self._cache.pop(key_id, None)

    @property
    def system_fields(self) -> FieldCipher:
        """For workforce accounts, room titles and audit IPs (no per-person shredding needed)."""
        return self._system[SYSTEM_FIELDS]

    async def encrypt_field(self, key_id: str, where: FieldRef, plaintext: str | bytes) -> bytes:
        return (await self.cipher(key_id)).encrypt(where, plaintext)

    async def decrypt_field(self, where: FieldRef, blob: bytes) -> bytes:
        """Decrypt any field blob: its header names the data key to use."""
        return (await self.cipher(blob_key_id(blob))).decrypt(where, blob)

    async def decrypt_text(self, where: FieldRef, blob: bytes) -> str:
        return (await self.cipher(blob_key_id(blob))).decrypt_text(where, blob)

    def redis_sealer(self) -> Sealer:
        """AEAD for values kept in Redis (waiting rooms, presence): the ``sys.redis`` data key."""
        return _ContextSealer(AesGcmSealer(self._system_raw[SYSTEM_REDIS]))

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` (HKDF-SHA256 from ``sys.root``); stable across KEK rotation."""
        derived = self._derived.get(purpose)
        if derived is None:
            derived = _derive(self._system_raw[SYSTEM_ROOT], purpose)
            self._derived[purpose] = derived
        return derived

    def blind_index(self, purpose: str, value: str) -> bytes:
        """HMAC-SHA256 of the NFKC-normalised, case-folded ``value`` under a per-purpose derived key.

        Equal inputs give equal indexes (so ``WHERE username_index = ?`` works); the plaintext is never
        stored. ``purpose`` (``"username"``, ``"email"``) keeps indexes of different columns unrelated.
        """
        if not purpose:
            raise BadRequest("blind index needs a purpose")
        normalised = unicodedata.normalize("NFKC", value).casefold()
        return hmac.new(
            self.derive_key(f"blind-index/{purpose}"), normalised.encode(), hashlib.sha256
        ).digest()


class _ContextSealer:
    """A domain-separated :class:`Sealer`: Redis contexts can never collide with another use of the key."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Sealer) -> None:
        self._inner = inner

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        return self._inner.seal(plaintext, b"viop/redis/v1\x00" + context)

    def unseal(self, blob: bytes, context: bytes) -> bytes:
        return self._inner.unseal(blob, b"viop/redis/v1\x00" + context)


@dataclass(frozen=True, slots=True)
class ShredResult:
    client_id: str
    data_key_id: str
    already_shredded: bool


async def shred_client(ring: KeyRing, client_id: str) -> ShredResult:
    """Destroy a client's data key: every field under it becomes unreadable, in every copy of the data.

    An action for after the retention period. Idempotent. Wrapped copies of the key remain in database
    backups made before now: they stay readable until the KEK that wrapped them is rotated and retired.
    """
    async with ring.db.begin() as conn:
        result = await shred_client_in(conn, client_id, utc_now())
    ring.forget(result.data_key_id)
    return result


async def shred_client_in(conn: AsyncConnection, client_id: str, now: datetime) -> ShredResult:
    """:func:`shred_client` inside the caller's transaction (the retention job shreds in its own); the
    caller then calls ``ring.forget(result.data_key_id)`` once it committed."""
    row = (
        await conn.execute(
            select(clients.c.data_key_id, clients.c.shredded_at).where(clients.c.id == client_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"no client {client_id}")
    await conn.execute(
        update(data_keys)
        .where(
            data_keys.c.id == row.data_key_id,
            data_keys.c.scope == KeyScope.CLIENT.value,
            data_keys.c.destroyed_at.is_(None),
        )
        .values(wrapped=None, kek_id=None, kek_version=None, destroyed_at=now)
    )
    await conn.execute(
        update(clients)
        .where(clients.c.id == client_id, clients.c.shredded_at.is_(None))
        .values(shredded_at=now)
    )
    return ShredResult(client_id, row.data_key_id, row.shredded_at is not None)
