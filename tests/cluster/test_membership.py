"""One node's part (``NodeMembership``): claim, renew, release, drain; run on both store contracts."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from tests.cluster.conftest import Stores
from vIOP.cluster.leases import NotTakingRooms, RoomOnAnotherNode
from vIOP.cluster.membership import ClusterPolicy, NodeMembership
from vIOP.cluster.nodes import NodeLoad, NodeState
from vIOP.ids import new_room_id
from vIOP.rooms.clock import ManualClock
from vIOP.storage.redis_cluster import RedisNodeRegistry, RedisRoomLeases

POLICY = ClusterPolicy(heartbeat=2, node_ttl=6, lease_ttl=10, capacity=3)


def member(
    stores: Stores, clock: ManualClock, node_id: str, policy: ClusterPolicy = POLICY
) -> NodeMembership:
    return NodeMembership(node_id, "192.0.2.1", policy, stores.registry, stores.leases, clock)


async def test_the_first_claim_places_the_room_here(stores: Stores, clock: ManualClock) -> None:
    a = member(stores, clock, "a")
    await a.heartbeat(NodeLoad())
    room = new_room_id()
    lease = await a.claim(room)
    assert lease.node_id == "a" and a.holds(room)
    assert await a.claim(room) is lease  # answered from memory
    assert await stores.leases.current(room) == lease


async def test_a_room_held_by_a_live_node_is_refused(stores: Stores, clock: ManualClock) -> None:
    a, b = member(stores, clock, "a"), member(stores, clock, "b")
    await a.heartbeat(NodeLoad())
    await b.heartbeat(NodeLoad())
    room = new_room_id()
    held = await a.claim(room)
    with pytest.raises(RoomOnAnotherNode) as refused:
        await b.claim(room)
    assert refused.value.code == "unavailable"
    assert not b.holds(room)
    assert await stores.leases.current(room) == held


async def test_a_dead_nodes_room_is_taken_over_and_the_old_holder_is_fenced(
    stores: Stores, clock: ManualClock
) -> None:
    a, b = member(stores, clock, "a"), member(stores, clock, "b")
    await a.heartbeat(NodeLoad())
    room = new_room_id()
    old = await a.claim(room)
    clock.advance(POLICY.node_ttl)  # a stops heartbeating (its lease itself has 4 s left)
    await b.heartbeat(NodeLoad())
    new = await b.claim(room)
    assert new.node_id == "b" and new.token > old.token
    # a wakes up from its pause: its renewal is refused, the room is reported lost.
    assert await a.renew() == [room]
    assert not a.holds(room)


async def test_renew_keeps_a_live_room_and_release_frees_it(stores: Stores, clock: ManualClock) -> None:
    a, b = member(stores, clock, "a"), member(stores, clock, "b")
    await a.heartbeat(NodeLoad())
    room = new_room_id()
    await a.claim(room)
    for _ in range(10):  # far past the first lease's TTL, renewed each heartbeat
        clock.advance(POLICY.heartbeat)
        await a.heartbeat(NodeLoad(rooms=1))
        assert await a.renew() == []
    assert a.holds(room)
    await a.release(room)
    assert not a.holds(room)
    assert (await b.claim(room)).node_id == "b"


async def test_draining_or_full_nodes_take_no_new_rooms(stores: Stores, clock: ManualClock) -> None:
    a = member(stores, clock, "a")
    await a.heartbeat(NodeLoad())
    rooms = [new_room_id() for _ in range(POLICY.capacity)]
    for room in rooms:
        await a.claim(room)
    with pytest.raises(NotTakingRooms, match="capacity"):
        await a.claim(new_room_id())
    await a.release(rooms[0])
    await a.claim(new_room_id())
    await stores.registry.set_state("a", NodeState.DRAINING, clock())  # the operator's `nodes drain`
    assert await a.heartbeat(NodeLoad()) is NodeState.DRAINING
    with pytest.raises(NotTakingRooms):
        await a.claim(new_room_id())
    assert await a.claim(rooms[1])  # a room it holds keeps its media


async def test_leaving_releases_everything(stores: Stores, clock: ManualClock) -> None:
    a = member(stores, clock, "a")
    await a.heartbeat(NodeLoad())
    room = new_room_id()
    await a.claim(room)
    await a.drain()
    node = await stores.registry.get("a", clock())
    assert node is not None and node.state is NodeState.DRAINING
    await a.leave()
    assert await stores.registry.nodes(clock()) == []
    assert await stores.leases.current(room) is None


async def test_a_lease_the_store_lost_is_granted_again(stores: Stores, clock: ManualClock) -> None:
    """Redis restarted without its data (here: the grant vanished behind the node's back): the node that
    carries the room's media takes a new grant instead of stopping the media."""
    a = member(stores, clock, "a")
    await a.heartbeat(NodeLoad())
    room = new_room_id()
    old = await a.claim(room)
    assert await stores.leases.release(old)
    assert await a.renew() == []
    assert a.holds(room) and a.held[room].token > old.token


async def test_idle_rooms_are_released_after_two_rounds(stores: Stores, clock: ManualClock) -> None:
    a = member(stores, clock, "a")
    await a.heartbeat(NodeLoad())
    busy, idle = new_room_id(), new_room_id()
    await a.claim(busy)
    await a.claim(idle)
    assert await a.release_idle(lambda: {busy}) == []  # first round without media: kept
    assert a.holds(idle)
    assert await a.release_idle(lambda: {busy}) == [idle]
    assert not a.holds(idle) and a.holds(busy)
    assert await stores.leases.current(idle) is None
    # A room that gets media back between two rounds is kept.
    assert await a.release_idle(set) == []
    assert await a.release_idle(lambda: {busy}) == []
    assert a.holds(busy)


async def test_two_nodes_on_their_own_redis_connections_race_for_the_same_rooms(
    redis_url: str, redis_client: object, clock: ManualClock
) -> None:
    """Two processes' worth of clients (separate connection pools) claim the same 30 rooms at once: every
    room gets exactly one holder; the loser is told the room is on another server."""
    clients = [aioredis.from_url(redis_url), aioredis.from_url(redis_url)]
    try:
        roomy = ClusterPolicy(heartbeat=2, node_ttl=6, lease_ttl=10, capacity=100)
        nodes = [
            NodeMembership(
                name, "192.0.2.1", roomy, RedisNodeRegistry(client), RedisRoomLeases(client), clock
            )
            for name, client in zip(("a", "b"), clients, strict=True)
        ]
        for node in nodes:
            await node.heartbeat(NodeLoad())
        rooms = [new_room_id() for _ in range(30)]
        outcomes = await asyncio.gather(
            *(node.claim(room) for room in rooms for node in nodes), return_exceptions=True
        )
        leases = RedisRoomLeases(clients[0])
        for i, room in enumerate(rooms):
            a, b = outcomes[2 * i], outcomes[2 * i + 1]
            won = [o for o in (a, b) if not isinstance(o, BaseException)]
            lost = [o for o in (a, b) if isinstance(o, BaseException)]
            assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], RoomOnAnotherNode)
            assert await leases.current(room) == won[0]
            assert won[0].token == 1
        assert len(nodes[0].held) + len(nodes[1].held) == 30
    finally:
        for client in clients:
            await client.aclose()


async def test_locate_names_the_holder_else_the_least_loaded_node_and_here_on_a_tie(
    stores: Stores, clock: ManualClock
) -> None:
    """Signaling on any node: where a room's media is, or goes (issue 14)."""
    a, b = member(stores, clock, "a"), member(stores, clock, "b")
    await a.heartbeat(NodeLoad())
    await b.heartbeat(NodeLoad(cpu=0.0))
    first, second, third = new_room_id(), new_room_id(), new_room_id()
    assert await a.locate(first) == "a"  # both empty: no hop, even though b's id or CPU might win
    await a.claim(first)  # the registry hears of a's new room at once, not at the next heartbeat
    assert await a.locate(first) == "a"
    assert await b.locate(first) == "a"  # held by a live node
    assert await a.locate(second) == "b"  # a has one room, b none
    await b.claim(second)
    assert await a.locate(third) == "a"  # level again
    clock.advance(POLICY.node_ttl)  # a's heartbeat lapses: its room goes to a live node
    await b.heartbeat(NodeLoad(rooms=1))
    assert await b.locate(first) == "b"
