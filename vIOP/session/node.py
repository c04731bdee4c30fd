"""This process as a cluster node (docs/SCALING.md): its heartbeat with its load, the renewal and release of
the room leases it holds, and the media it stops when another node took a room over.

One background loop (:class:`NodeHeartbeat`, started by ``vIOP.app.start_live``) every
``VIOP_NODE_HEARTBEAT_SECONDS``: announce the node, renew its leases, release those of rooms without media
here. Offers reach :meth:`vIOP.cluster.membership.NodeMembership.claim` (``vIOP.session.signal``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Callable

from vIOP.cluster.membership import NodeMembership
from vIOP.cluster.nodes import NodeLoad, NodeState
from vIOP.ids import RoomId
from vIOP.session.services import Services
from vIOP.signaling import messages as m

log = logging.getLogger("vIOP.node")

LEAVE_TIMEOUT_SECONDS = 3.0  # shutdown does not wait longer on a Redis that is away


class CpuMeter:
    """The share of one core this process used since the last reading (process time over wall time)."""

    def __init__(self) -> None:
        self._cpu, self._wall = time.process_time(), time.monotonic()

    def read(self) -> float:
        cpu, wall = time.process_time(), time.monotonic()
        share = (cpu - self._cpu) / (wall - self._wall) if wall > self._wall else 0.0
        self._cpu, self._wall = cpu, wall
        return round(share, 3)


def rooms_with_media(services: Services) -> set[RoomId]:
    relay = services.relay
    if relay is None:
        return set()
    return {RoomId(room) for pid in relay.participants() if (room := relay.room_of(pid)) is not None}


def node_load(services: Services, node: NodeMembership, cpu: CpuMeter) -> NodeLoad:
    relay = services.relay
    stats = relay.stats() if relay is not None else None
    return NodeLoad(
        rooms=len(node.held),
        participants=stats.participants if stats else 0,
        streams=stats.legs if stats else 0,
        cpu=cpu.read(),
    )


def stop_media_of(services: Services, room_id: RoomId, *, tell: bool = True) -> None:
    """Another node holds ``room_id`` now (this one was taken for dead): its media stops here at once, and
    each participant is told to offer again (``media_moved``), which reaches the new holder (unless they
    were told already: ``tell``)."""
    relay, delivery = services.relay, services.live.delivery
    if relay is None or delivery is None:
        return
    moved = m.MediaMoved(reason=m.MediaMoveReason.NODE_LOST)
    router = services.media_router
    for pid in relay.participants():
        if relay.room_of(pid) == room_id:
            if not tell:
                pass
            elif router is not None:
                router.send(pid, moved)
            else:
                services.connections.send_to(pid, moved)
            delivery.controls.stop_media(pid)


async def node_round(services: Services, node: NodeMembership, cpu: CpuMeter) -> bool:
    """One heartbeat round; True when an operator's drain (``nodes drain``) reached this node in it."""
    before = node.state
    state = await node.heartbeat(node_load(services, node, cpu))
    newly_draining = state is NodeState.DRAINING and before is NodeState.SERVING
    if newly_draining:
        log.info("node draining: no new rooms", extra={"node_id": node.node_id})
    for room_id in await node.renew():
        log.warning("room lease lost to another node; media stopped here", extra={"room_id": room_id})
        stop_media_of(services, room_id)
    await node.release_idle(lambda: rooms_with_media(services))
    if services.media_router is not None:
        services.media_router.forget_gone()
    return newly_draining


class NodeHeartbeat:
    """The node's loop: a round at once (the node registers at start), then one per heartbeat interval or
    when woken (:meth:`stop_taking_rooms`), ending between rounds once ``services.stopping`` is set. A failed
    round (Redis away) is logged and the next one tries again; leases not renewed meanwhile are granted
    again or reported lost then."""

    def __init__(self, services: Services, node: NodeMembership) -> None:
        self.services = services
        self.node = node
        self._wake = asyncio.Event()
        self.on_draining: Callable[[], object] | None = None  # an operator drained this node (move its rooms)

    def stop_taking_rooms(self) -> None:
        """Shutdown begins: no new rooms here from now on; the registry hears it from the next round, which
        starts now. Nothing awaited: a drain hook must not wait on Redis."""
        self.node.stop_taking_rooms()
        self._wake.set()

    async def run(self) -> None:
        cpu = CpuMeter()
        stop = self.services.stopping
        while not stop.is_set():
            self._wake.clear()
            try:
                if await node_round(self.services, self.node, cpu) and self.on_draining is not None:
                    self.on_draining()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("node heartbeat failed; will retry", extra={"node_id": self.node.node_id})
            waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
            try:
                await asyncio.wait(waits, timeout=self.node.policy.heartbeat, return_when=FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()


async def leave_cluster(node: NodeMembership) -> None:
    """Shutdown: release the leases and the registry record (they would lapse on their own otherwise)."""
    try:
        await asyncio.wait_for(node.leave(), LEAVE_TIMEOUT_SECONDS)
    except Exception:
        log.warning("could not leave the cluster cleanly; the node record lapses by itself")
