from __future__ import annotations

from dataclasses import dataclass

import pytest

from vIOP.cluster.memory import MemoryNodeRegistry, MemoryRoomLeases
from vIOP.cluster.ports import NodeRegistry, RoomLeases
from vIOP.rooms.clock import ManualClock
from vIOP.storage.redis_cluster import RedisNodeRegistry, RedisRoomLeases


@dataclass
class Stores:
    registry: NodeRegistry
    leases: RoomLeases


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=["memory", "redis"])
def stores(request: pytest.FixtureRequest) -> Stores:
    """The contract: every test using this runs on the in-memory twins and on the real Redis stores."""
    if request.param == "memory":
        return Stores(MemoryNodeRegistry(), MemoryRoomLeases())
    client = request.getfixturevalue("redis_client")
    return Stores(RedisNodeRegistry(client), RedisRoomLeases(client))
