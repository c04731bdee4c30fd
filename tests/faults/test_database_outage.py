"""The database unavailable for 10 s mid-session: room changes go on, what they must write is written after,
HTTP writes are retried or refused with 503 (never 500), and nothing is silently lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import db_outage
from bench.harness import PostgresProcess
from tests.faults.conftest import report

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=pytest.mark.skipif(not PostgresProcess.available(), reason="PostgreSQL binaries not installed"),
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_database_unavailable_for_10_seconds(tmp_path: Path, backend: str) -> None:
    figures = await db_outage(tmp_path, backend=backend, outage=10.0)
    report(figures)
    assert figures["admitted_during_outage"] is True
    assert figures["left_during_outage"] is True
    assert figures["lobby_message_during_outage"] is True
    for name, probe in figures["http_during_outage"].items():
        assert probe["status"] in (200, 201, 503), (name, probe)
        if probe["status"] == 503:
            assert probe.get("retry_after"), (name, probe)
    assert all(p["status"] in (200, 201) for p in figures["http_after"].values()), figures["http_after"]
    assert figures["ledger_written_s_after_recovery"] is not None
    assert figures["interval_opened_during_outage"] is True
    assert figures["interval_closed_during_outage"] is True
    assert figures["audit_admit_recorded"] is True
