"""One node's part in the cluster: its heartbeat, the room leases it holds, and whether it takes a room.

Used by the serving process (``vIOP.session.node``): :meth:`NodeMembership.claim` when a room's first
participant here needs media, :meth:`heartbeat` and :meth:`renew` from a background loop. A room already
held is answered from memory (no store round trip on later offers).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace

from vIOP.cluster.leases import NotTakingRooms, RoomLease, RoomOnAnotherNode
from vIOP.cluster.nodes import Node, NodeLoad, NodeState, choose_node, placement_order
from vIOP.cluster.ports import NodeRegistry, RoomLeases
from vIOP.ids import RoomId
from vIOP.rooms.clock import Clock


@dataclass(frozen=True, slots=True)
class ClusterPolicy:
    """Seconds between heartbeats; how long a node's record lives without one; how long a room lease lives
    without a renewal (renewed every heartbeat); the most rooms a node takes. The rules between them (each
    TTL at least two heartbeats) are checked once, where they are read: ``vIOP.settings``."""

    heartbeat: float
    node_ttl: float
    lease_ttl: float
    capacity: int


class NodeMembership:
    def __init__(
        self,
        node_id: str,
        media_address: str,
        policy: ClusterPolicy,
        registry: NodeRegistry,
        leases: RoomLeases,
        clock: Clock,
    ) -> None:
        self.node_id = node_id
        self.media_address = media_address
        self.policy = policy
        self.registry = registry
        self.leases = leases
        self.clock = clock
        self.state = NodeState.SERVING
        self.incarnation = secrets.token_hex(8)  # this process's start (see Node.incarnation)
        self.held: dict[RoomId, RoomLease] = {}
        self.load = NodeLoad()  # as last announced
        self._claiming = asyncio.Lock()
        self._idle: set[RoomId] = set()  # held rooms without media here at the last release_idle
        # Whether a node still listens for media signaling (its inbox subscribed): a SIGKILLed node stops
        # at once, long before its record lapses. None: only the record says who is alive.
        self.listening: Callable[[str], Awaitable[bool]] | None = None

    def record(self, load: NodeLoad) -> Node:
        return Node(
            id=self.node_id,
            media_address=self.media_address,
            state=self.state,
            capacity=self.policy.capacity,
            expires_at=self.clock() + self.policy.node_ttl,
            load=load,
            incarnation=self.incarnation,
        )

    async def heartbeat(self, load: NodeLoad) -> NodeState:
        """Announce this node with its load; learn whether an operator put it in ``draining``."""
        self.load = load
        self.state = await self.registry.announce(self.record(load), self.policy.node_ttl)
        return self.state

    async def locate(self, room_id: RoomId) -> str:
        """The node whose relay carries ``room_id``'s media, or should: this node when it holds the lease
        (from memory), the holder when another live node holds it, else the least loaded serving node with
        room left (:func:`choose_node`), this node when it is as good by rooms and participants, or when no node
        is known (its :meth:`claim` then decides).
        Two store reads; called once per participant's media start, never per message."""
        if self.holds(room_id):
            return self.node_id
        now = self.clock()
        lease = await self.leases.current(room_id)
        elsewhere = lease is not None and lease.live(now) and lease.node_id != self.node_id
        if lease is not None and elsewhere and await self.holder_alive(lease.node_id):
            return lease.node_id
        nodes = await self.registry.nodes(now)
        if self.state is not NodeState.SERVING:  # known here before the registry hears it
            nodes = [n for n in nodes if n.id != self.node_id]
        chosen = choose_node(nodes, now)
        if chosen is None:
            return self.node_id
        here = next((n for n in nodes if n.id == self.node_id and n.accepts_rooms(now)), None)
        if here is not None and placement_order(here)[:2] <= placement_order(chosen)[:2]:
            return self.node_id  # as good as the best by rooms and people: no hop (CPU noise aside)
        return chosen.id

    async def holder_alive(self, node_id: str) -> bool:
        """A lease holder is alive while its record is and, when that can be asked, it still listens: a
        node whose process died has no subscriber on its inbox (Redis drops a closed connection's
        subscriptions at once), so its rooms need not wait for its record to lapse. Taking over a node that
        was only briefly away is safe: its next renewal is refused (fencing) and it stops the room."""
        if await self.registry.get(node_id, self.clock()) is None:
            return False
        return self.listening is None or await self.listening(node_id)

    def holds(self, room_id: RoomId) -> bool:
        lease = self.held.get(room_id)
        return lease is not None and lease.held_by(self.node_id, self.clock())

    async def claim(self, room_id: RoomId) -> RoomLease:
        """This node carries ``room_id``'s media: its lease, taken now unless already held. Refused with
        :class:`RoomOnAnotherNode` when another live node holds it, :class:`NotTakingRooms` when this node
        is draining or full. A lease left by a dead node (its heartbeat lapsed) is taken over."""
        lease = self.held.get(room_id)
        if lease is not None and lease.held_by(self.node_id, self.clock()):
            return lease
        async with self._claiming:
            if self.state is not NodeState.SERVING:
                raise NotTakingRooms("this server is draining and takes no new rooms; try again")
            live_rooms = [r for r, held in self.held.items() if held.live(self.clock()) and r != room_id]
            if len(live_rooms) >= self.policy.capacity:
                raise NotTakingRooms("this server is at its room capacity; try again shortly")
            ttl = self.policy.lease_ttl
            lease = await self.leases.acquire(room_id, self.node_id, self.clock(), ttl)
            if lease.node_id != self.node_id:
                if await self.holder_alive(lease.node_id):
                    raise RoomOnAnotherNode()
                lease = await self.leases.take_over(lease, self.node_id, self.clock(), ttl)
                if lease.node_id != self.node_id:
                    raise RoomOnAnotherNode()  # another node took it over first
            self.held[room_id] = lease
            # The registry hears of the new room now, not at the next heartbeat: rooms placed in a burst
            # (a program's evening block starting) must see each other in the load (choose_node).
            self.load = replace(self.load, rooms=len(self.held))
            with contextlib.suppress(Exception):  # the heartbeat tries again
                self.state = await self.registry.announce(self.record(self.load), self.policy.node_ttl)
            return lease

    async def renew(self) -> list[RoomId]:
        """Renew every held lease; returns the rooms lost to another node (their media must stop here).
        A lease the store no longer has in force with no other live holder (Redis restarted without its
        data, or this node's renewals were late) is granted again, under a new token: the media here goes on."""
        lost = []
        for room_id, lease in list(self.held.items()):
            now, ttl = self.clock(), self.policy.lease_ttl
            renewed = await self.leases.renew(lease, now, ttl)
            if renewed is None:
                renewed = await self.leases.acquire(room_id, self.node_id, now, ttl)
            if self.held.get(room_id) is not lease:
                continue  # released or re-claimed meanwhile
            if renewed.node_id != self.node_id:
                del self.held[room_id]
                lost.append(room_id)
            else:
                self.held[room_id] = renewed
        return lost

    async def release_idle(self, with_media: Callable[[], Collection[RoomId]]) -> list[RoomId]:
        """Release the leases of rooms that had no media here at this call and the one before (a moment
        between a participant's peer connections does not give the room away). ``with_media`` is read
        under the claim lock, so a room cannot gain media between the check and its release."""
        released = []
        async with self._claiming:
            active = set(with_media())
            idle = {room for room in self.held if room not in active}
            for room_id in idle & self._idle:
                lease = self.held.pop(room_id)
                released.append(room_id)
                await self.leases.release(lease)
            self._idle = idle - set(released)
        return released

    async def release(self, room_id: RoomId) -> None:
        async with self._claiming:
            lease = self.held.pop(room_id, None)
            if lease is not None:
                await self.leases.release(lease)

    def stop_taking_rooms(self) -> None:
        """Draining from now on, here at once; the registry hears it with the next heartbeat (sticky)."""
        self.state = NodeState.DRAINING

    async def drain(self) -> None:
        """Take no new rooms from now on, and say so in the registry now."""
        self.stop_taking_rooms()
        await self.registry.set_state(self.node_id, NodeState.DRAINING, self.clock())

    async def leave(self) -> None:
        """Orderly shutdown: give up every lease, then the registry record."""
        for room_id in list(self.held):
            await self.release(room_id)
        await self.registry.remove(self.node_id)
