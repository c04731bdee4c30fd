"""Compliance fixtures: the storage fixtures (real SQLite; PostgreSQL with VIOP_TEST_POSTGRES_URL), the live
HTTP API, and a :class:`Storage` with an audit log over the test's key ring."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import api
from tests.storage.conftest import database_url, db, key_file, key_source, ring
from vIOP.storage.audit import AuditLog
from vIOP.storage.bootstrap import Storage
from vIOP.storage.crypto import KeyRing

__all__ = ["api", "database_url", "db", "key_file", "key_source", "ring", "storage"]


@pytest.fixture
def storage(ring: KeyRing, tmp_path: Path) -> Storage:
    return Storage(ring.db, ring, AuditLog(ring, checkpoint_path=tmp_path / "checkpoints.jsonl"))
