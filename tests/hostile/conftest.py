"""Hostile-input fixtures: the HTTP API fixture of tests/api, reused."""

from __future__ import annotations

from tests.api.conftest import api

__all__ = ["api"]
