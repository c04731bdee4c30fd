"""A client's network goes: the socket aborted without a close frame, or the client frozen (SIGSTOP) so not a
packet flows. Within the grace window it resumes as itself; past it, the others see it leave."""

from __future__ import annotations

from pathlib import Path

from bench.faults import network_cut
from tests.faults.conftest import report


async def test_network_cut_then_resumed_or_left_after_the_grace_window(tmp_path: Path) -> None:
    grace = 10.0
    figures = await network_cut(tmp_path, grace=grace)
    report(figures)
    assert figures["others_saw_leaver_reconnecting"] is True
    assert figures["returner_resumed_same_participant"] is True
    assert figures["returner_intervals"] == 1  # a resume continues the interval
    assert figures["returner_interval_open"] is True
    assert figures["leaver_left_with_timeout"] is True
    assert grace <= figures["leaver_left_after_s"] <= grace + 5
    assert figures["leaver_intervals"] == 1
    # Attendance ends when the network went, not when the grace window ran out.
    assert figures["leaver_left_at_minus_cut_s"] is not None
    assert abs(figures["leaver_left_at_minus_cut_s"]) <= 2
    assert figures["frozen_marked_reconnecting"] is True
    assert figures["frozen_resumed_same_participant"] is True
    assert figures["nobody_reconnecting_after"] is True
    assert figures["server_log_errors"] == []
