"""Fixtures for the identity and access tests."""

from __future__ import annotations

import pytest

from tests.auth.support import CHEAP_ARGON2, ManualClock
from vIOP.auth.passwords import PasswordHasher


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def password_hasher() -> PasswordHasher:
    return PasswordHasher(CHEAP_ARGON2)
