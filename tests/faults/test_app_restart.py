"""The vIOP process SIGKILLed and started again on the same data folder and Redis: every client resumes as
the same participant, and attendance is neither split nor counted twice."""

from __future__ import annotations

from pathlib import Path

from bench.fault_world import Shape
from bench.faults import app_restart
from tests.faults.conftest import report


async def test_app_sigkill_and_restart_clients_resume_with_the_same_identity(
    tmp_path: Path, shape: Shape
) -> None:
    figures = await app_restart(tmp_path, shape)
    report(figures)
    sockets = figures["sockets"]
    assert figures["reconnected"] == sockets, figures["not_reconnected"]
    assert figures["resumed_same_participant"] == sockets
    assert figures["presence_after"] == figures["presence_before"]
    assert figures["intervals_lost"] == []
    assert figures["intervals_added"] == []  # no second interval for anyone
    assert figures["waiting_client_admitted_after"] is True
    assert figures["server_log_errors"] == []
