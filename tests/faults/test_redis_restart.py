"""redis-server SIGKILLed mid-session and started again: nobody in a lobby or a room is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fault_world import Shape
from bench.faults import PRESENCE_BACK_LIMIT_S, redis_restart
from tests.faults.conftest import report


@pytest.mark.parametrize("persistent", [True, False], ids=["aof", "empty"])
async def test_redis_sigkill_and_restart_loses_no_lobby_entry_admission_or_interval(
    tmp_path: Path, shape: Shape, persistent: bool
) -> None:
    figures = await redis_restart(tmp_path, shape, persistent=persistent)
    report(figures)
    assert figures["presence_after"] == figures["presence_before"]  # lobby order, seats, states
    assert figures["presence_back_s"] is not None
    assert figures["presence_back_s"] <= PRESENCE_BACK_LIMIT_S
    assert figures["intervals_before"] == shape.rooms * (shape.seated + 1)  # clients in the room + hosts
    assert figures["intervals_lost"] == []
    assert figures["intervals_added"] == []
    assert figures["heartbeat_not_back"] == 0
    assert figures["sockets_dropped"] == 0, figures["closed_for_good"]  # hosts' sign-ins included
    assert figures["waiting_client_admitted_after"] is True
    assert figures["server_log_errors"] == []
