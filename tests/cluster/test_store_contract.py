"""The node registry and room lease contracts, on the in-memory twins and on a real redis-server."""

from __future__ import annotations

import asyncio
import dataclasses

from tests.cluster.conftest import Stores
from vIOP.cluster.leases import RoomLease
from vIOP.cluster.nodes import Node, NodeLoad, NodeState
from vIOP.ids import RoomId, new_room_id
from vIOP.rooms.clock import ManualClock

TTL = 6.0
LEASE = 10.0


def record(node_id: str, clock: ManualClock, state: NodeState = NodeState.SERVING, rooms: int = 0) -> Node:
    return Node(node_id, "192.0.2.7", state, 50, clock() + TTL, NodeLoad(rooms, 4 * rooms, 12 * rooms, 0.25))


# --- nodes --------------------------------------------------------------------------------------------


async def test_a_node_is_listed_while_its_heartbeat_lasts(stores: Stores, clock: ManualClock) -> None:
    reg = stores.registry
    assert await reg.announce(record("b", clock), TTL) is NodeState.SERVING
    assert await reg.announce(record("a", clock, rooms=2), TTL) is NodeState.SERVING
    listed = await reg.nodes(clock())
    assert [n.id for n in listed] == ["a", "b"]
    assert listed[0] == record("a", clock, rooms=2)  # the whole record comes back as announced
    clock.advance(TTL - 1)
    await reg.announce(record("a", clock), TTL)  # a heartbeats, b does not
    clock.advance(2)
    assert [n.id for n in await reg.nodes(clock())] == ["a"]
    assert await reg.get("b", clock()) is None
    got = await reg.get("a", clock())
    assert got is not None and got.alive(clock())


async def test_draining_is_sticky_until_the_node_leaves(stores: Stores, clock: ManualClock) -> None:
    reg = stores.registry
    await reg.announce(record("a", clock), TTL)
    assert await reg.set_state("a", NodeState.DRAINING, clock())
    # The node's next heartbeat still says serving (it has not heard yet): the drain stays, and it learns.
    assert await reg.announce(record("a", clock), TTL) is NodeState.DRAINING
    got = await reg.get("a", clock())
    assert got is not None and got.state is NodeState.DRAINING
    await reg.remove("a")
    assert await reg.nodes(clock()) == []
    assert await reg.announce(record("a", clock), TTL) is NodeState.SERVING  # a fresh start serves


async def test_a_drain_belongs_to_the_process_it_was_put_on(stores: Stores, clock: ManualClock) -> None:
    """A node drained by an operator and then killed leaves its record for a TTL; the same id started again
    (a new process: another incarnation) serves at once, while the drained process's own heartbeats kept
    the drain (regression: the new process inherited it and stayed draining, its /readyz 503, for good,
    since its own heartbeats kept the record alive)."""
    reg = stores.registry
    first = dataclasses.replace(record("a", clock), incarnation="first")
    await reg.announce(first, TTL)
    assert await reg.set_state("a", NodeState.DRAINING, clock())
    assert await reg.announce(first, TTL) is NodeState.DRAINING  # the drained process keeps it
    again = dataclasses.replace(record("a", clock), incarnation="again")  # killed, started again at once
    assert await reg.announce(again, TTL) is NodeState.SERVING
    got = await reg.get("a", clock())
    assert got is not None and got.state is NodeState.SERVING and got.incarnation == "again"


async def test_draining_an_unknown_or_dead_node_changes_nothing(stores: Stores, clock: ManualClock) -> None:
    reg = stores.registry
    assert not await reg.set_state("ghost", NodeState.DRAINING, clock())
    await reg.announce(record("a", clock), TTL)
    clock.advance(TTL)
    assert not await reg.set_state("a", NodeState.DRAINING, clock())
    assert await reg.nodes(clock()) == []


# --- room leases --------------------------------------------------------------------------------------


async def test_acquire_renew_release(stores: Stores, clock: ManualClock) -> None:
    leases, room = stores.leases, new_room_id()
    assert await leases.current(room) is None
    first = await leases.acquire(room, "a", clock(), LEASE)
    assert (first.node_id, first.token, first.expires_at) == ("a", 1, clock() + LEASE)
    assert await leases.current(room) == first
    # Holding it already: acquire answers the lease in force, same token.
    assert await leases.acquire(room, "a", clock(), LEASE) == first
    clock.advance(LEASE - 1)
    renewed = await leases.renew(first, clock(), LEASE)
    assert renewed == RoomLease(room, "a", 1, clock() + LEASE)
    assert await leases.release(renewed)
    assert await leases.current(room) is None
    assert not await leases.release(renewed)  # twice: nothing to release
    assert await leases.renew(renewed, clock(), LEASE) is None  # released: not renewable
    again = await leases.acquire(room, "b", clock(), LEASE)
    assert (again.node_id, again.token) == ("b", 2)  # the token counts on across a release


async def test_a_live_lease_is_not_granted_to_another_node(stores: Stores, clock: ManualClock) -> None:
    leases, room = stores.leases, new_room_id()
    held = await leases.acquire(room, "a", clock(), LEASE)
    assert await leases.acquire(room, "b", clock(), LEASE) == held
    clock.advance(LEASE)  # expired without a renewal: free for the next one
    taken = await leases.acquire(room, "b", clock(), LEASE)
    assert (taken.node_id, taken.token) == ("b", 2)
    assert await leases.renew(held, clock(), LEASE) is None  # a's lease is gone for good


async def test_a_stale_token_is_refused(stores: Stores, clock: ManualClock) -> None:
    leases, room = stores.leases, new_room_id()
    old = await leases.acquire(room, "a", clock(), LEASE)
    clock.advance(LEASE)
    new = await leases.acquire(room, "a", clock(), LEASE)  # the same node, a new grant
    assert new.token == old.token + 1
    assert await leases.renew(old, clock(), LEASE) is None  # same node, stale token: refused
    assert not await leases.release(old)
    assert await leases.current(room) == new  # and nothing changed
    forged = RoomLease(room, "b", new.token, new.expires_at)  # right token, wrong node
    assert await leases.renew(forged, clock(), LEASE) is None
    assert await leases.current(room) == new


async def test_an_expired_lease_is_not_renewed(stores: Stores, clock: ManualClock) -> None:
    leases, room = stores.leases, new_room_id()
    lease = await leases.acquire(room, "a", clock(), LEASE)
    clock.advance(LEASE)
    assert await leases.renew(lease, clock(), LEASE) is None


async def test_take_over_from_a_dead_node_raises_the_token(stores: Stores, clock: ManualClock) -> None:
    leases, room = stores.leases, new_room_id()
    dead = await leases.acquire(room, "a", clock(), LEASE)
    clock.advance(1)  # still live by its expiry, but node a is known dead (its heartbeat lapsed)
    won = await leases.take_over(dead, "b", clock(), LEASE)
    assert (won.node_id, won.token) == ("b", dead.token + 1)
    # A second taker with the same stale view loses to the first: the lease in force comes back.
    assert await leases.take_over(dead, "c", clock(), LEASE) == won
    assert await leases.renew(dead, clock(), LEASE) is None  # the dead node, back from a pause: fenced
    assert await leases.current(room) == won


async def test_two_nodes_racing_for_a_room_get_one_lease(stores: Stores, clock: ManualClock) -> None:
    leases = stores.leases
    rooms = [new_room_id() for _ in range(20)]
    nodes = ["a", "b", "c", "d"]
    for room in rooms:
        results = await asyncio.gather(*(leases.acquire(room, n, clock(), LEASE) for n in nodes))
        assert len(set(results)) == 1  # every racer sees the same one grant
        assert results[0].token == 1 and results[0].node_id in nodes


async def test_racing_takeovers_grant_once(stores: Stores, clock: ManualClock) -> None:
    leases, room = stores.leases, RoomId(new_room_id())
    dead = await leases.acquire(room, "dead", clock(), LEASE)
    results = await asyncio.gather(*(leases.take_over(dead, n, clock(), LEASE) for n in ("a", "b", "c")))
    assert len(set(results)) == 1
    assert results[0].token == dead.token + 1
