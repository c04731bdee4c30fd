from __future__ import annotations

import pytest

from tests.rooms.support import Backend, memory_backend, new_sealer, redis_backend
from vIOP.rooms.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, clock: ManualClock) -> Backend:
    """The contract: every test using this runs on the in-memory twin and on the real Redis stores."""
    if request.param == "memory":
        return memory_backend(clock)
    client = request.getfixturevalue("redis_client")
    return redis_backend(client, new_sealer(), clock)
