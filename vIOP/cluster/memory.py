"""In-memory twins of the cluster ports, for fast policy tests and the placement simulation. Same contract
as the Redis stores (``tests/cluster`` runs on both); one process only, nothing survives it."""

from __future__ import annotations

import dataclasses

from vIOP.cluster.leases import RoomLease
from vIOP.cluster.nodes import Node, NodeState
from vIOP.ids import RoomId


class MemoryNodeRegistry:
    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}

    async def announce(self, node: Node, ttl: float) -> NodeState:
        previous = self._nodes.get(node.id)
        state = node.state
        if (
            previous is not None
            and previous.state is NodeState.DRAINING
            and previous.incarnation == node.incarnation
        ):
            state = NodeState.DRAINING
        self._nodes[node.id] = dataclasses.replace(node, state=state)
        return state

    async def nodes(self, now: float) -> list[Node]:
        return sorted((n for n in self._nodes.values() if n.alive(now)), key=lambda n: n.id)

    async def get(self, node_id: str, now: float) -> Node | None:
        node = self._nodes.get(node_id)
        return node if node is not None and node.alive(now) else None

    async def set_state(self, node_id: str, state: NodeState, now: float) -> bool:
        node = await self.get(node_id, now)
        if node is None:
            return False
        self._nodes[node_id] = dataclasses.replace(node, state=state)
        return True

    async def remove(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)


@dataclasses.dataclass(slots=True)
class _Grant:
    node_id: str  # "" once released
    token: int
    expires_at: float


class MemoryRoomLeases:
    def __init__(self) -> None:
        self._grants: dict[RoomId, _Grant] = {}

    def _lease(self, room_id: RoomId, grant: _Grant) -> RoomLease:
        return RoomLease(room_id, grant.node_id, grant.token, grant.expires_at)

    def _grant(self, room_id: RoomId, node_id: str, now: float, ttl: float) -> RoomLease:
        previous = self._grants.get(room_id)
        grant = _Grant(node_id, (previous.token if previous else 0) + 1, now + ttl)
        self._grants[room_id] = grant
        return self._lease(room_id, grant)

    def _in_force(self, lease: RoomLease) -> _Grant | None:
        grant = self._grants.get(lease.room_id)
        if grant is None or grant.node_id != lease.node_id or grant.token != lease.token:
            return None
        return grant

    async def acquire(self, room_id: RoomId, node_id: str, now: float, ttl: float) -> RoomLease:
        grant = self._grants.get(room_id)
        if grant is not None and grant.node_id and now < grant.expires_at:
            return self._lease(room_id, grant)
        return self._grant(room_id, node_id, now, ttl)

    async def renew(self, lease: RoomLease, now: float, ttl: float) -> RoomLease | None:
        grant = self._in_force(lease)
        if grant is None or now >= grant.expires_at:
            return None
        grant.expires_at = now + ttl
        return self._lease(lease.room_id, grant)

    async def release(self, lease: RoomLease) -> bool:
        grant = self._in_force(lease)
        if grant is None:
            return False
        grant.node_id, grant.expires_at = "", 0.0
        return True

    async def take_over(self, stale: RoomLease, node_id: str, now: float, ttl: float) -> RoomLease:
        grant = self._grants.get(stale.room_id)
        free = grant is None or not grant.node_id or now >= grant.expires_at
        if free or self._in_force(stale) is not None:
            return self._grant(stale.room_id, node_id, now, ttl)
        assert grant is not None
        return self._lease(stale.room_id, grant)  # someone else's live grant: it stays

    async def current(self, room_id: RoomId) -> RoomLease | None:
        grant = self._grants.get(room_id)
        return self._lease(room_id, grant) if grant is not None and grant.node_id else None
