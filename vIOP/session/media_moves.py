"""Moving a room's media to another node: after a node's loss (:class:`MediaNodeWatch`, on every node) and
on a drain (:func:`move_rooms_away`, on the draining node, make-before-break; docs/SCALING.md).

Node loss as a socket node sees it: the media node of some of its participants died, so their media moves.

A participant whose socket is on this node and whose room's media is on another node (signaling on any
node, ``vIOP.session.media_route``) loses its media when that node dies; its socket, seat and attendance
are here and go on. :class:`MediaNodeWatch` notices the death and tells each such participant
``media_moved`` (reason ``node_lost``): the client opens a new peer connection with a new ``offer``, which
this node places as any first offer (``NodeMembership.locate``: the dead holder is skipped, the least
loaded serving node chosen) and whose claim takes the dead node's lease over by compare-and-set on its
token (``NodeMembership.claim``). Two socket nodes that choose different nodes cannot split the room: one
wins the compare-and-set, the other's offer is refused with ``unavailable`` and the client's retry reaches
the winner.

Who is dead is read on a timer, never per message, and only while some local participant's media is on
another node: every ``LISTEN_CHECK_SECONDS``, one ``PUBSUB NUMSUB`` for those nodes' inboxes and one
record read per node. A node whose process died has no subscriber on its inbox at once (Redis drops a
closed connection's subscriptions), so it is taken for dead at the second look without one (about a
second), long before its record lapses; a machine that vanished without closing its connections is
caught by its record lapsing (read again just after its announced expiry). A relayed message that reached
no subscriber wakes the watch at once. The claim that follows applies the same test
(``NodeMembership.holder_alive``), so the dead node's lease is taken over at once too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from asyncio import FIRST_COMPLETED

from vIOP.cluster.membership import NodeMembership
from vIOP.cluster.nodes import choose_node
from vIOP.session.node import rooms_with_media, stop_media_of
from vIOP.session.services import Services
from vIOP.signaling import messages as m

log = logging.getLogger("vIOP.media_moves")

# After a record's announced expiry, how long to wait before reading it again (clock granularity, the
# registry's own expiry check).
AFTER_EXPIRY_SECONDS = 0.05
# How often a node whose participants' media is on other nodes asks whether those still listen (one PUBSUB
# NUMSUB and one record read per such node: a timer, never per message).
LISTEN_CHECK_SECONDS = 0.5


class MediaNodeWatch:
    """This node's watch over the media nodes its local participants use (see the module docstring)."""

    def __init__(self, services: Services, node: NodeMembership) -> None:
        self.services = services
        self.node = node
        self._wake = asyncio.Event()
        self.moved = 0  # participants told to move so far (tests, metrics)
        self._silent: set[str] = set()  # remote media nodes whose inbox had no subscriber at the last look

    def wake(self) -> None:
        """A relayed message found nobody listening on a media node's inbox: look now."""
        self._wake.set()

    def remote_media_nodes(self) -> set[str]:
        """The nodes (other than this one) carrying the media of participants whose sockets are here."""
        here = self.node.node_id
        return {
            session.media_node
            for session in self.services.live.signal_sessions
            if session.media_node is not None and session.media_node != here
        }

    async def check(self) -> float | None:
        """Look at the remote media nodes in use; move the participants of dead ones. Returns how long to
        wait before the next look (None: no remote media node in use)."""
        registry, clock = self.node.registry, self.node.clock
        remote = sorted(self.remote_media_nodes())
        if not remote:
            self._silent = set()
            return None
        router = self.services.media_router
        listening = set(remote) if router is None else await router.channel.listening(remote)
        silent: set[str] = set()
        wait = LISTEN_CHECK_SECONDS
        for node_id in remote:
            record = await registry.get(node_id, clock())
            if record is None:
                self.media_node_lost(node_id)
            elif node_id not in listening:
                # Its inbox has no subscriber: a dead process (Redis dropped its connection). Twice in a
                # row, so an inbox resubscribing after a Redis blip is not taken for dead.
                if node_id in self._silent:
                    self.media_node_lost(node_id)
                else:
                    silent.add(node_id)
            else:
                wait = min(wait, max(0.0, record.expires_at - clock()) + AFTER_EXPIRY_SECONDS)
        self._silent = silent
        return wait

    def media_node_lost(self, node_id: str) -> None:
        """Everyone here whose media was on ``node_id`` renegotiates: their next ``offer`` is placed anew."""
        moved = 0
        for session in list(self.services.live.signal_sessions):
            if session.media_node != node_id:
                continue
            session.media_node = None  # the next offer is placed, not relayed to the dead node
            if session.pid is not None and session.conn.send(
                m.MediaMoved(reason=m.MediaMoveReason.NODE_LOST)
            ):
                moved += 1
        self.moved += moved
        log.warning("media node lost; its participants here renegotiate", extra={"moved": moved})

    async def run(self) -> None:
        stop = self.services.stopping
        heartbeat = self.node.policy.heartbeat
        while not stop.is_set():
            self._wake.clear()
            wait = heartbeat
            try:
                next_look = await self.check()
                if next_look is not None:
                    wait = min(heartbeat, next_look)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("media node watch failed; will retry")
            waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
            try:
                await asyncio.wait(waits, timeout=wait, return_when=FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiting


# --- drain: this node moves its rooms away, make-before-break -------------------------------------------

# The longest a drain waits for the moved rooms' new holders before it stops them here anyway.
MOVE_TIMEOUT_SECONDS = 20.0
# Then the old connections flow until every client closed its own (it switched to the new connection: at
# the latest SWITCH_BOUND_SECONDS after its new answer, vIOP.client and the web client), at most this long.
OVERLAP_BOUND_SECONDS = 15.0
# Then the renegotiations the new nodes sent through this node's sockets are answered, at most this long.
ANSWERS_BOUND_SECONDS = 5.0
POLL_SECONDS = 0.1


async def move_rooms_away(services: Services, node: NodeMembership) -> None:
    """Drain (SIGTERM, ``nodes drain``): every room whose media is here moves to a serving node while its
    media goes on. For each room: the participants are marked leaving (their old connection here keeps
    flowing, but this node no longer negotiates it), the lease is released (the first new offer places the
    room on the least loaded serving node, whose claim takes a new grant: a larger token), and each is told
    ``media_moved {reason: "drain"}``. Once every moved room has a live holder elsewhere (or after
    ``MOVE_TIMEOUT_SECONDS``), the old connections flow until their clients have closed them (switched to
    the new node), at most ``OVERLAP_BOUND_SECONDS``, then stop here."""
    relay, router = services.relay, services.media_router
    if relay is None or router is None:
        return
    rooms = sorted(rooms_with_media(services))
    if not rooms:
        return
    others = [
        n
        for n in await node.registry.nodes(node.clock())
        if n.id != node.node_id and await node.holder_alive(n.id)  # alive and listening
    ]
    if choose_node(others, node.clock()) is None:
        # No serving node to move to (one node, or all draining): the rooms end with this node, as before.
        log.warning("draining: no other serving node; rooms are not moved", extra={"rooms": len(rooms)})
        return
    moved = m.MediaMoved(reason=m.MediaMoveReason.DRAIN)
    for room_id in rooms:
        pids = [pid for pid in relay.participants() if relay.room_of(pid) == room_id]
        router.leaving.update(pids)
        await node.release(room_id)
        for pid in pids:
            router.send(pid, moved)
    log.info("draining: rooms moving away", extra={"rooms": len(rooms)})
    clock = node.clock
    deadline = asyncio.get_running_loop().time() + MOVE_TIMEOUT_SECONDS
    pending = set(rooms)
    while pending and asyncio.get_running_loop().time() < deadline:
        for room_id in sorted(pending):
            lease = await node.leases.current(room_id)
            if lease is not None and lease.node_id not in ("", node.node_id) and lease.live(clock()):
                pending.discard(room_id)
        if pending:
            await asyncio.sleep(POLL_SECONDS)
    if pending:
        log.warning("draining: some rooms found no new node in time", extra={"rooms": len(pending)})
    # The old connections flow while the clients switch; each client closes its own once switched.
    moving = [pid for pid in relay.participants() if pid in router.leaving]
    overlap_ends = asyncio.get_running_loop().time() + OVERLAP_BOUND_SECONDS
    while asyncio.get_running_loop().time() < overlap_ends:
        if all(relay.connection_ended(pid) for pid in moving):
            break
        await asyncio.sleep(POLL_SECONDS)
    # The sockets here close next (the drain's later step): first let the new nodes' renegotiations relayed
    # through here be answered, or they would wait for an answer that never comes.
    answers_due = asyncio.get_running_loop().time() + ANSWERS_BOUND_SECONDS
    while True:  # answers arrive as socket messages on their sessions: a short poll of the set
        if not router.offers_unanswered or asyncio.get_running_loop().time() >= answers_due:
            break
        await asyncio.sleep(POLL_SECONDS)
    for room_id in rooms:
        # Still `leaving`: the removals (done in the background) must not renegotiate the participants
        # left here, whose clients negotiate with the new node now. The heartbeat forgets them once gone.
        stop_media_of(services, room_id, tell=False)
