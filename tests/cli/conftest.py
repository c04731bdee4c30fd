"""The CLI tests use the storage fixtures (a migrated database on SQLite, and on PostgreSQL when
VIOP_TEST_POSTGRES_URL is set; the key file) and the auth ones (clock, a cheap password hasher)."""

from tests.auth.conftest import clock, password_hasher
from tests.storage.conftest import database_url, db, key_file, key_source, ring

__all__ = ["clock", "database_url", "db", "key_file", "key_source", "password_hasher", "ring"]
