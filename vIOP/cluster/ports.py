"""What the cluster policy needs from storage. Redis: ``vIOP.storage.redis_cluster``; in memory:
``vIOP.cluster.memory``. The contract tests (``tests/cluster``) run on both.

Times are epoch seconds from the caller's clock; ``ttl`` is in seconds.
"""

from __future__ import annotations

from typing import Protocol

from vIOP.cluster.leases import RoomLease
from vIOP.cluster.nodes import Node, NodeState
from vIOP.ids import RoomId


class NodeRegistry(Protocol):
    async def announce(self, node: Node, ttl: float) -> NodeState:
        """Write or refresh ``node``'s record (its heartbeat). ``draining`` is sticky: once set (by the node
        or an operator) it stays until the record goes or a new process (another ``incarnation``) announces
        the id. Returns the state now in force."""
        ...

    async def nodes(self, now: float) -> list[Node]:
        """Every live node, by id."""
        ...

    async def get(self, node_id: str, now: float) -> Node | None:
        """The node's record while it is live, else None."""
        ...

    async def set_state(self, node_id: str, state: NodeState, now: float) -> bool:
        """Set a live node's state; False (and nothing changed) when no such node is live."""
        ...

    async def remove(self, node_id: str) -> None:
        """The node leaves (orderly shutdown)."""
        ...


class RoomLeases(Protocol):
    async def acquire(self, room_id: RoomId, node_id: str, now: float, ttl: float) -> RoomLease:
        """Grant the room's lease to ``node_id`` (a new, larger token) unless a live lease exists; returns
        the lease in force: ``node_id``'s when it got it (or already held it), else the other holder's."""
        ...

    async def renew(self, lease: RoomLease, now: float, ttl: float) -> RoomLease | None:
        """Extend ``lease`` if it is still the one in force (same node, same token, not expired); None when
        it is not (lost: its holder must stop carrying the room)."""
        ...

    async def release(self, lease: RoomLease) -> bool:
        """Give the lease up if it is still the one in force; the token is kept, so the next grant's is
        larger. False when it was not in force (nothing changed)."""
        ...

    async def take_over(self, stale: RoomLease, node_id: str, now: float, ttl: float) -> RoomLease:
        """Grant the room to ``node_id`` if ``stale`` (a dead node's lease) is still the one in force, even
        before it expires; returns the lease in force afterwards (``node_id``'s if it won)."""
        ...

    async def current(self, room_id: RoomId) -> RoomLease | None:
        """The room's last grant (perhaps expired); None when never granted or released."""
        ...
