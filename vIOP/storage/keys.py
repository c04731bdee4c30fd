"""Key-encryption keys (KEKs) and where they come from.

A :class:`KeySource` only wraps and unwraps data keys; callers never see KEK bytes, so a cloud KMS or Vault
transit (which never hand out their keys either) can be added as another implementation without touching
the key ring. Local sources keep KEKs in a small JSON document::

    {"format": "viop-keys/1", "primary": "local:2",
     "keys": {"local:1": "<base64 of 32 random bytes>", "local:2": "<...>"}}

Each label is ``<kek id>:<version>``. New data keys are wrapped under ``primary``; older versions stay
readable until ``keys retire`` removes them. The document lives in a file (:class:`FileKeySource`, created
0600) or in an environment variable (:class:`EnvKeySource`, read-only).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vIOP.errors import ConfigError, StartupError
from vIOP.storage.sealing import DecryptionError

if TYPE_CHECKING:
    from vIOP.settings import Settings

log = logging.getLogger("vIOP.storage.keys")

KEY_BYTES = 32
FORMAT = "viop-keys/1"
DEFAULT_KEK_ID = "local"
_LABEL = re.compile(r"^([A-Za-z0-9_.-]{1,40}):([1-9][0-9]{0,8})$")
_WRAP_VERSION = b"\x01"
_NONCE = 12


class KeySourceError(StartupError):
    """The key source is missing, unreadable or malformed. The message names the source, never a key."""

    code = "key_source_unavailable"
    http_status = 503


class ReadOnlyKeySource(KeySourceError):
    code = "key_source_read_only"


class UnknownKek(DecryptionError):
    """A data key is wrapped under a KEK version that the key source does not hold (retired or missing)."""

    code = "unknown_kek"


@dataclass(frozen=True, slots=True, order=True)
class KekRef:
    """Names one version of one KEK; stored next to every wrapped data key."""

    kek_id: str
    version: int

    def __str__(self) -> str:
        return f"{self.kek_id}:{self.version}"

    @classmethod
    def parse(cls, label: str) -> KekRef:
        match = _LABEL.match(label)
        if match is None:
            raise ValueError(f"KEK label {label!r} is not <id>:<version>")
        return cls(match.group(1), int(match.group(2)))


class KeySource(Protocol):
    """Wraps data keys under KEKs. Implementations: local JSON (file, env var); later KMS / Vault transit."""

    @property
    def description(self) -> str:
        """Where the keys come from, for messages (never key material)."""
        ...

    async def primary(self) -> KekRef: ...

    async def versions(self) -> frozenset[KekRef]:
        """Every KEK version this source can unwrap with."""
        ...

    async def wrap(self, data_key: bytes, aad: bytes) -> tuple[KekRef, bytes]:
        """Encrypt ``data_key`` under the primary KEK, bound to ``aad``."""
        ...

    async def unwrap(self, kek: KekRef, wrapped: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`wrap`: UnknownKek, or DecryptionError when tampered or bound elsewhere."""
        ...

    async def add_primary(self) -> KekRef:
        """Create a new KEK version and make it primary (ReadOnlyKeySource if this source cannot)."""
        ...

    async def retire(self, keks: Iterable[KekRef]) -> None:
        """Forget old versions; the primary cannot be retired."""
        ...


@dataclass(frozen=True, slots=True)
class KekSet:
    """A parsed key document: every KEK version and which one is primary."""

    primary: KekRef
    keys: Mapping[KekRef, bytes]

    @classmethod
    def generate(cls, kek_id: str = DEFAULT_KEK_ID) -> KekSet:
        ref = KekRef(kek_id, 1)
        return cls(ref, {ref: secrets.token_bytes(KEY_BYTES)})

    @classmethod
    def from_json(cls, text: str, where: str) -> KekSet:
        """Parse a key document; KeySourceError naming ``where`` (not the content) when malformed."""
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("format", FORMAT) != FORMAT:
                raise ValueError(f"format must be {FORMAT!r}")
            raw_keys = doc["keys"]
            if not isinstance(raw_keys, dict) or not raw_keys:
                raise ValueError("'keys' must be a non-empty object")
            keys: dict[KekRef, bytes] = {}
            for label, encoded in raw_keys.items():
                key = base64.b64decode(encoded, validate=True)
                if len(key) != KEY_BYTES:
                    raise ValueError(f"key {label!r} is not {KEY_BYTES} bytes")
                keys[KekRef.parse(label)] = key
            primary = KekRef.parse(doc["primary"])
            if primary not in keys:
                raise ValueError("'primary' names no key in 'keys'")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            # json's messages quote positions, not content; ours name labels only.
            reason = str(exc) if not isinstance(exc, KeyError) else f"missing {exc}"
            raise KeySourceError(f"{where} is not a valid vIOP key document: {reason}") from None
        return cls(primary, keys)

    def to_json(self) -> str:
        doc = {
            "format": FORMAT,
            "primary": str(self.primary),
            "keys": {str(ref): base64.b64encode(key).decode() for ref, key in sorted(self.keys.items())},
        }
        return json.dumps(doc, indent=2) + "\n"

    def with_new_primary(self) -> KekSet:
        version = 1 + max(ref.version for ref in self.keys if ref.kek_id == self.primary.kek_id)
        ref = KekRef(self.primary.kek_id, version)
        return KekSet(ref, {**self.keys, ref: secrets.token_bytes(KEY_BYTES)})

    def without(self, keks: Iterable[KekRef]) -> KekSet:
        drop = set(keks)
        if self.primary in drop:
            raise ValueError("the primary KEK cannot be retired")
        return KekSet(self.primary, {ref: key for ref, key in self.keys.items() if ref not in drop})


def _wrap_aad(kek: KekRef, aad: bytes) -> bytes:
    return b"viop/kek-wrap/v1\x00" + str(kek).encode() + b"\x00" + aad


def wrap_with(kek: KekRef, key: bytes, data_key: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return _WRAP_VERSION + nonce + AESGCM(key).encrypt(nonce, data_key, _wrap_aad(kek, aad))


def unwrap_with(kek: KekRef, key: bytes, wrapped: bytes, aad: bytes) -> bytes:
    if len(wrapped) < 1 + _NONCE + 16 or wrapped[:1] != _WRAP_VERSION:
        raise DecryptionError("wrapped data key is truncated or of an unknown format")
    try:
        return AESGCM(key).decrypt(wrapped[1 : 1 + _NONCE], wrapped[1 + _NONCE :], _wrap_aad(kek, aad))
    except InvalidTag:
        raise DecryptionError(f"wrapped data key failed authentication under KEK {kek}") from None


class StaticKeySource:
    """KEKs held in memory from a key document; read-only. Base of the file and env sources."""

    def __init__(self, keks: KekSet, description: str) -> None:
        self._keks = keks
        self._description = description

    @property
    def description(self) -> str:
        return self._description

    def _current(self) -> KekSet:
        return self._keks

    async def primary(self) -> KekRef:
        return self._current().primary

    async def versions(self) -> frozenset[KekRef]:
        return frozenset(self._current().keys)

    async def wrap(self, data_key: bytes, aad: bytes) -> tuple[KekRef, bytes]:
        keks = self._current()
        return keks.primary, wrap_with(keks.primary, keks.keys[keks.primary], data_key, aad)

    async def unwrap(self, kek: KekRef, wrapped: bytes, aad: bytes) -> bytes:
        key = self._current().keys.get(kek)
        if key is None:
            raise UnknownKek(f"KEK {kek} is not in {self._description} (retired, or the wrong key source)")
        return unwrap_with(kek, key, wrapped, aad)

    async def add_primary(self) -> KekRef:
        raise ReadOnlyKeySource(
            f"{self._description} is read-only: add a new key version to it, make it primary, "
            "restart vIOP, then run `keys rotate --no-new-kek`"
        )

    async def retire(self, keks: Iterable[KekRef]) -> None:
        raise ReadOnlyKeySource(f"{self._description} is read-only: remove retired versions from it yourself")


class EnvKeySource(StaticKeySource):
    """The key document in an environment variable (e.g. injected by the orchestrator's secret store)."""

    def __init__(self, var: str = "VIOP_KEYS", environ: Mapping[str, str] | None = None) -> None:
        text = (os.environ if environ is None else environ).get(var)
        if not text:
            raise KeySourceError(f"environment variable {var} is not set or empty")
        super().__init__(KekSet.from_json(text, f"environment variable {var}"), f"environment variable {var}")


def _is_inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


class FileKeySource(StaticKeySource):
    """The key document in a file, re-read when it changes (so a running app sees `keys rotate`)."""

    def __init__(self, path: Path, *, create: bool = False, data_dir: Path | None = None) -> None:
        self.path = path
        if create and not path.exists():
            self._create(path)
        if data_dir is not None and _is_inside(path, data_dir):
            log.warning(
                "KEYS STORED WITH THE DATA: the key file %s is inside the data folder %s. Anyone who copies "
                "the data folder (a backup, a stolen disk) can decrypt it: this is for development only. "
                "Production must keep keys apart (VIOP_KEY_FILE outside the data folder, or VIOP_KEYS).",
                path,
                data_dir,
            )
        self._stamp: tuple[int, int, int] | None = None
        super().__init__(self._read(), f"key file {path}")

    @staticmethod
    def _create(path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_new(tmp, KekSet.generate().to_json())
            os.link(tmp, path)  # atomic and exclusive: readers never see half a file
        except FileExistsError:
            return  # another process created it first: use theirs
        except OSError as exc:
            raise KeySourceError(f"cannot create the key file {path}: {exc.strerror}") from None
        finally:
            tmp.unlink(missing_ok=True)
        log.warning("created a new key file %s (mode 0600): back it up apart from the data", path)

    def _read(self) -> KekSet:
        try:
            st = self.path.stat()
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeySourceError(
                f"key file {self.path} does not exist: restore it from your key backup, or create one "
                "with `python -m vIOP keys init PATH`"
            ) from None
        except OSError as exc:
            raise KeySourceError(f"cannot read the key file {self.path}: {exc.strerror}") from None
        if stat.S_IMODE(st.st_mode) & 0o077:
            log.warning("key file %s is readable by other users: chmod 600 it", self.path)
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        return KekSet.from_json(text, f"key file {self.path}")

    def _current(self) -> KekSet:
        try:
            st = self.path.stat()
        except OSError:
            return self._keks  # keep serving what we hold; the next start-up reports the missing file
        if (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp:
            self._keks = self._read()
        return self._keks

    async def add_primary(self) -> KekRef:
        keks = self._current().with_new_primary()
        self._save(keks)
        return keks.primary

    async def retire(self, keks: Iterable[KekRef]) -> None:
        try:
            remaining = self._current().without(keks)
        except ValueError as exc:
            raise ConfigError("keys retire", str(exc)) from None
        self._save(remaining)

    def _save(self, keks: KekSet) -> None:
        """Atomic replace: a crash leaves the old or the new document, never half of one."""
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        try:
            _write_new(tmp, keks.to_json())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise KeySourceError(f"cannot write the key file {self.path}: {exc.strerror}") from None
        self._keks = keks
        self._current()


def _write_new(path: Path, text: str) -> None:
    """Write a new 0600 file; FileExistsError if it exists (fsync'd before the caller renames it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def key_source_for(settings: Settings) -> KeySource:
    """VIOP_KEY_FILE, else VIOP_KEYS, else (development) ``<data_dir>/keys.json``, created if missing."""
    if settings.key_file is not None:
        return FileKeySource(settings.key_file, data_dir=settings.data_dir)
    if settings.keys is not None:
        return StaticKeySource(KekSet.from_json(settings.keys, "VIOP_KEYS"), "VIOP_KEYS")
    if settings.env == "production":
        raise ConfigError("VIOP_KEY_FILE or VIOP_KEYS", "production needs keys kept outside the data folder")
    return FileKeySource(settings.data_dir / "keys.json", create=True, data_dir=settings.data_dir)
