from __future__ import annotations

import base64
import json
import logging
import stat
from pathlib import Path

import pytest

from vIOP.errors import ConfigError
from vIOP.settings import Settings
from vIOP.storage.keys import (
    EnvKeySource,
    FileKeySource,
    KekRef,
    KekSet,
    KeySourceError,
    ReadOnlyKeySource,
    StaticKeySource,
    UnknownKek,
    key_source_for,
)
from vIOP.storage.sealing import DecryptionError

DATA_KEY = bytes(range(32))


def test_key_document_round_trips_and_names_versions() -> None:
    keks = KekSet.generate().with_new_primary()
    parsed = KekSet.from_json(keks.to_json(), "test")
    assert parsed == keks
    assert parsed.primary == KekRef("local", 2)
    assert set(parsed.keys) == {KekRef("local", 1), KekRef("local", 2)}


@pytest.mark.parametrize(
    "doc",
    [
        "not json",
        "[]",
        '{"format": "other/9", "primary": "a:1", "keys": {"a:1": "AAAA"}}',
        '{"primary": "a:1", "keys": {}}',
        '{"primary": "a:1", "keys": {"a:1": "not base64!"}}',
        '{"primary": "a:1", "keys": {"a:1": "AAAA"}}',  # 3 bytes, not 32
        '{"primary": "b:1", "keys": {"a:1": "' + base64.b64encode(DATA_KEY).decode() + '"}}',
        '{"primary": "a:0", "keys": {"a:0": "' + base64.b64encode(DATA_KEY).decode() + '"}}',
        '{"keys": {"a:1": "' + base64.b64encode(DATA_KEY).decode() + '"}}',
    ],
)
def test_malformed_key_documents_are_typed_errors_without_key_material(doc: str) -> None:
    with pytest.raises(KeySourceError, match="not a valid vIOP key document") as caught:
        KekSet.from_json(doc, "VIOP_KEYS")
    assert base64.b64encode(DATA_KEY).decode() not in str(caught.value)


async def test_wrap_unwrap_round_trip_and_binding() -> None:
    source = StaticKeySource(KekSet.generate(), "test")
    kek, wrapped = await source.wrap(DATA_KEY, b"dk_1")
    assert kek == KekRef("local", 1)
    assert DATA_KEY not in wrapped
    assert await source.unwrap(kek, wrapped, b"dk_1") == DATA_KEY
    with pytest.raises(DecryptionError):
        await source.unwrap(kek, wrapped, b"dk_2")  # moved to another data key row
    with pytest.raises(DecryptionError):
        await source.unwrap(kek, wrapped[:-1], b"dk_1")
    with pytest.raises(UnknownKek, match="local:7"):
        await source.unwrap(KekRef("local", 7), wrapped, b"dk_1")
    other = StaticKeySource(KekSet.generate(), "other")
    with pytest.raises(DecryptionError):
        await other.unwrap(kek, wrapped, b"dk_1")  # same label, different key material


def test_file_source_created_owner_only_with_loud_warning_inside_data_dir(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = data_dir / "keys.json"
    with caplog.at_level(logging.WARNING, logger="vIOP.storage.keys"):
        FileKeySource(path, create=True, data_dir=data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "KEYS STORED WITH THE DATA" in caplog.text
    assert json.loads(path.read_text())["primary"] == "local:1"


def test_file_source_outside_data_dir_does_not_warn(
    data_dir: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="vIOP.storage.keys"):
        FileKeySource(key_file, create=True, data_dir=data_dir)
    assert "KEYS STORED WITH THE DATA" not in caplog.text


def test_missing_key_file_is_a_typed_error(key_file: Path) -> None:
    with pytest.raises(KeySourceError, match="does not exist"):
        FileKeySource(key_file)
    assert not key_file.exists()


async def test_add_primary_persists_and_a_running_source_sees_it(key_file: Path) -> None:
    writer = FileKeySource(key_file, create=True)
    reader = FileKeySource(key_file)  # another process
    assert await reader.primary() == KekRef("local", 1)
    new = await writer.add_primary()
    assert new == KekRef("local", 2)
    assert await reader.primary() == new
    assert await reader.versions() == {KekRef("local", 1), new}
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    await writer.retire([KekRef("local", 1)])
    assert await reader.versions() == {new}
    with pytest.raises(ConfigError, match="primary"):
        await writer.retire([new])


async def test_env_source_reads_the_document_and_is_read_only() -> None:
    doc = KekSet.generate("kms-a").to_json()
    source = EnvKeySource("VIOP_KEYS", {"VIOP_KEYS": doc})
    assert await source.primary() == KekRef("kms-a", 1)
    with pytest.raises(ReadOnlyKeySource, match="read-only"):
        await source.add_primary()
    with pytest.raises(KeySourceError, match="VIOP_KEYS is not set"):
        EnvKeySource("VIOP_KEYS", {})


def test_key_source_for_settings(data_dir: Path, key_file: Path) -> None:
    dev = key_source_for(Settings(data_dir=data_dir))
    assert isinstance(dev, FileKeySource)
    assert dev.path == data_dir / "keys.json"
    with pytest.raises(ConfigError, match="VIOP_KEY_FILE"):
        key_source_for(Settings(env="production", data_dir=data_dir))
    with pytest.raises(KeySourceError, match="does not exist"):
        key_source_for(Settings(env="production", data_dir=data_dir, key_file=key_file))
    env = key_source_for(Settings(data_dir=data_dir, keys=KekSet.generate().to_json()))
    assert env.description == "VIOP_KEYS"
