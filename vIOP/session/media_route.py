"""Signaling on any node: the media half of a participant's signaling runs on the room's media node.

A room's media lives on one node (its lease holder, docs/SCALING.md); a participant's WebSocket may land on
any node. The media messages (``offer``, ``answer``, ``candidate``, ``set_subscriptions``, ``save_data``)
run through :func:`offer_here` and friends on the node whose relay carries the room: on this node when it
does (no Redis round trip: the common single-node case is exactly as before), else they are sent to that
node over its sealed pub/sub inbox (``vIOP.storage.redis_media_signal``), which runs them and sends what its
relay has to say to the participant (the answer, server offers, ``active_speaker``, ``audio_only``, errors)
back to the socket's node, which writes it to the socket. Host actions (mute, remove, return to the lobby,
end) need no relaying: they are room events, which every node follows, and the media node applies them to
its relay (``vIOP.session.delivery``). The client never learns which node carries its media: the answer's
SDP names the media node's address.

On the media node, messages of one participant run one after another, in the order sent, as they would
on its own socket; what goes back to socket nodes leaves through one queue, in the order produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import TypeAlias

import msgspec

from vIOP.cluster.leases import NotTakingRooms, RoomOnAnotherNode
from vIOP.errors import BadRequest, Conflict, Unavailable, VIOPError
from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.participant import ParticipantState
from vIOP.session.services import Services
from vIOP.signaling import messages as m
from vIOP.signaling.codec import encode_text, error_reply
from vIOP.storage.outage import is_store_outage
from vIOP.storage.redis_media_signal import RedisMediaSignalChannel

log = logging.getLogger("vIOP.media_route")

Reply = Callable[[m.ServerMessage], object]
MediaMessage: TypeAlias = m.Offer | m.Answer | m.Candidate | m.SetSubscriptions | m.SaveData

# How long a socket's node waits for the media node to finish an offer (aiortc builds and gathers the
# answer; the client itself waits 30 s): then the client gets `unavailable` and retries.
OFFER_TIMEOUT_SECONDS = 20.0


class MediaNodeUnreachable(RoomOnAnotherNode):
    """The room's media node did not take the message (not subscribed) or did not finish an offer in
    time; to the client it is the same as before signaling crossed nodes: try again."""


class ToMediaNode(msgspec.Struct, frozen=True, tag="in", tag_field="k"):
    """A participant's media message, for the room's media node; ``request`` (non-zero) asks for a
    completion notice, ``save_data`` carries the participant's audio-only choice to their first offer."""

    room: str
    participant: str
    reply_to: str  # the socket's node
    message: MediaMessage
    request: int = 0
    save_data: bool = False


class ToSocketNode(msgspec.Struct, frozen=True, tag="out", tag_field="k"):
    """Messages for participants whose sockets are on the receiving node; ``request`` (non-zero, with no
    messages) completes that node's request of that number."""

    room: str
    participants: tuple[str, ...]
    messages: tuple[m.ServerMessage, ...] = ()
    request: int = 0


Envelope: TypeAlias = ToMediaNode | ToSocketNode
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Envelope).decode


# --- the media half of signaling, run where the room's media is ---------------------------------------


async def offer_here(
    services: Services, room_id: RoomId, pid: ParticipantId, msg: m.Offer, reply: Reply
) -> None:
    relay = services.relay
    if relay is None:
        raise Conflict("this server runs without media")
    rooms = services.rooms
    room = await rooms.room(room_id)
    me = room.participant(pid)
    if not me.is_seated:
        raise Conflict("media starts once you are admitted")
    controls = services.live.room_delivery().controls
    if pid not in relay.participants():
        node = services.node
        if node is not None:
            # The room's media lease (from memory once held): refused with `unavailable` when another
            # live node carries this room's media, or this node is draining or full (docs/SCALING.md).
            await node.claim(room_id)
        await relay.add_participant(pid, room=room_id)
        # A host's mutes live with the participant: they outlive a reconnect and a return to the lobby.
        controls.media_started(me)
    answer = await relay.handle_offer(pid, msg.sdp)
    reply(m.ServerAnswer(sdp=answer, id=msg.id))
    floor = relay.active_speaker(room_id, relay.group_of(pid))
    if floor is not None:  # joining mid-session: who has been speaking, before the next change
        reply(m.ActiveSpeaker(speaker=floor.speaker, recent=floor.recent))
    if me.state is ParticipantState.ADMITTED:
        await rooms.join(room_id, pid)


async def answer_here(services: Services, pid: ParticipantId, msg: m.Answer) -> None:
    relay = services.relay
    if relay is None or pid not in relay.participants():
        raise Conflict("no media negotiation in progress")
    await relay.handle_answer(pid, msg.sdp)


async def candidate_here(services: Services, pid: ParticipantId, msg: m.Candidate) -> None:
    relay = services.relay
    if relay is None or pid not in relay.participants():
        raise Conflict("send an offer first")
    await relay.add_remote_candidate(
        pid, {"candidate": msg.candidate, "sdpMid": msg.sdp_mid, "sdpMLineIndex": msg.sdp_mline_index}
    )


async def subscriptions_here(
    services: Services, room_id: RoomId, pid: ParticipantId, msg: m.SetSubscriptions
) -> None:
    relay = services.relay
    if relay is None or pid not in relay.participants():
        raise Conflict("send an offer first")
    tiles: dict[ParticipantId, tuple[int, int]] = {}
    for tile in msg.tiles:
        if ParticipantId(tile.participant) in tiles:
            raise BadRequest("set_subscriptions: a participant appears in two tiles")
        tiles[ParticipantId(tile.participant)] = (tile.width, tile.height)
    with_media = set(relay.participants())
    not_started = [other for other in tiles if other not in with_media]
    if not_started:
        # Someone on the client's roster whose media has not started (or has ended): a tile for them is
        # kept for when it does. Someone not in this room at all is an error. (Read only then.)
        room = await services.rooms.room(room_id)
        for other in not_started:
            room.participant(other)  # ParticipantNotFound: not in this room
    relay.set_subscriptions(pid, tiles, not_started=not_started)


# --- between nodes ------------------------------------------------------------------------------------


class MediaRouter:
    """This node's side of signaling on any node: it sends media messages of local sockets to the room's
    media node, runs those other nodes send here, and carries the relay's messages back."""

    def __init__(self, services: Services, channel: RedisMediaSignalChannel) -> None:
        self.services = services
        self.channel = channel
        # On a media node: the node of each participant's socket, for those whose socket is elsewhere
        # (learnt from their messages; the newest wins, so a reconnect to another node moves it).
        self.remote_sockets: dict[ParticipantId, str] = {}
        self._requests: dict[int, asyncio.Future[None]] = {}
        self._numbers = itertools.count(1)
        self._chains: dict[ParticipantId, asyncio.Task[None]] = {}
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        # Called when a media node's inbox had no subscriber (it may be dead): the node-loss watch looks
        # at once instead of at its next round (``vIOP.session.media_moves``).
        self.on_unreachable: Callable[[], object] | None = None
        # Participants whose room this node is moving away (drain, make-before-break): their old peer
        # connection here keeps flowing but is no longer negotiated, and their new offer goes to the room's
        # new node even though this relay still carries them.
        self.leaving: set[ParticipantId] = set()
        # Local sockets with a relayed server offer (another node's) not answered yet: a drain closes its
        # sockets only once these are answered, or that node's renegotiation would wait for ever.
        self.offers_unanswered: set[ParticipantId] = set()

    @property
    def node_id(self) -> str:
        return self.channel.node_id

    # --- the socket's side -----------------------------------------------------------------------

    async def offer(
        self, room_id: RoomId, pid: ParticipantId, msg: m.Offer, reply: Reply, *, save_data: bool
    ) -> str | None:
        """Run ``msg`` where the room's media is; returns that node's id, None when it is this one."""
        relay, node = self.services.relay, self.services.node
        target = None
        if (
            relay is not None
            and node is not None
            and (pid not in relay.participants() or pid in self.leaving)
        ):
            target = await node.locate(room_id)  # from memory when this node holds the room
        if target is None or target == self.node_id:
            if pid in self.leaving:
                # Moving away from here: the new connection must not replace the old one on this relay.
                raise NotTakingRooms("this server is draining and takes no new rooms; try again")
            await offer_here(self.services, room_id, pid, msg, reply)
            return None
        await self.send_to_media(target, room_id, pid, msg, wait=True, save_data=save_data)
        return target

    def answered(self, pid: ParticipantId) -> None:
        """``pid``'s socket here answered a relayed server offer."""
        self.offers_unanswered.discard(pid)

    async def send_to_media(
        self,
        node_id: str,
        room_id: RoomId,
        pid: ParticipantId,
        msg: MediaMessage,
        *,
        wait: bool = False,
        save_data: bool = False,
    ) -> None:
        """Hand ``msg`` to the media node; with ``wait``, until it has been run there (its replies are
        written to the socket as they come). Raises ``unavailable`` when that node does not listen or
        does not finish in time: nothing changed, the client retries."""
        number = next(self._numbers) if wait else 0
        envelope = ToMediaNode(room_id, pid, self.node_id, msg, request=number, save_data=save_data)
        done: asyncio.Future[None] | None = None
        if wait:
            done = self._requests[number] = asyncio.get_running_loop().create_future()
        try:
            if await self.channel.publish(node_id, _encode(envelope)) == 0:
                if self.on_unreachable is not None:
                    self.on_unreachable()
                raise MediaNodeUnreachable()
            if done is not None:
                try:
                    await asyncio.wait_for(done, OFFER_TIMEOUT_SECONDS)
                except TimeoutError:
                    raise MediaNodeUnreachable() from None
        finally:
            if wait:
                self._requests.pop(number, None)

    def _deliver_here(self, envelope: ToSocketNode) -> None:
        """The media node's messages for sockets on this node."""
        if envelope.request:
            done = self._requests.get(envelope.request)
            if done is not None and not done.done():
                done.set_result(None)
        connections = self.services.connections
        delivery = self.services.live.delivery
        for message in envelope.messages:
            if isinstance(message, m.AudioOnly) and delivery is not None:
                # The person's own roster line (and this node's hosts' rosters) show it, as on the media node.
                room_id = RoomId(envelope.room)
                whose = ParticipantId(message.participant_id)
                delivery.controls.set_audio_only(room_id, whose, message.reason if message.on else None)
                delivery.mark_dirty(room_id)
            for pid in envelope.participants:
                if connections.send_to(ParticipantId(pid), message) and isinstance(message, m.ServerOffer):
                    self.offers_unanswered.add(ParticipantId(pid))

    # --- the media node's side -------------------------------------------------------------------

    def send(self, pid: ParticipantId, message: m.ServerMessage) -> bool:
        """To ``pid``'s socket: here, or on the node it is on (False: neither is known)."""
        if pid in self.leaving and isinstance(message, m.ServerOffer | m.ServerCandidate):
            return (
                True  # the client negotiates with the room's new node now; the old connection is kept as is
            )
        if self.services.connections.send_to(pid, message):
            return True
        node_id = self.remote_sockets.get(pid)
        if node_id is None:
            return False
        room = self.services.relay.room_of(pid) if self.services.relay is not None else None
        self._queue(node_id, ToSocketNode(room or "", (pid,), (message,)))
        return True

    def send_many(self, pids: Iterable[ParticipantId], message: m.ServerMessage, room_id: str) -> None:
        """One message to many participants: encoded once for this node's sockets, one envelope per other
        node (``active_speaker`` on every change in a room)."""
        connections = self.services.connections
        elsewhere: dict[str, list[str]] = {}
        frame: str | None = None
        for pid in pids:
            connection = connections.get(pid)
            if connection is not None:
                if frame is None:
                    frame = encode_text(message)
                connection.send_frame(frame)
            elif (node_id := self.remote_sockets.get(pid)) is not None:
                elsewhere.setdefault(node_id, []).append(pid)
        for node_id, recipients in elsewhere.items():
            self._queue(node_id, ToSocketNode(room_id, tuple(recipients), (message,)))

    def _queue(self, node_id: str, envelope: ToSocketNode) -> None:
        self._outbox.put_nowait((node_id, _encode(envelope)))

    def forget_gone(self) -> None:
        """Drop the socket nodes (and the leaving marks) of participants the relay no longer carries (each
        heartbeat)."""
        relay = self.services.relay
        carried = set(relay.participants()) if relay is not None else set()
        for pid in [pid for pid in self.remote_sockets if pid not in carried]:
            del self.remote_sockets[pid]
        self.leaving &= carried
        connections = self.services.connections
        self.offers_unanswered = {pid for pid in self.offers_unanswered if connections.get(pid) is not None}

    def _run_here(self, envelope: ToMediaNode) -> None:
        pid = ParticipantId(envelope.participant)
        if self.services.connections.get(pid) is None:
            self.remote_sockets[pid] = envelope.reply_to
        before = self._chains.get(pid)
        task = asyncio.get_running_loop().create_task(self._run_after(before, envelope))
        self._chains[pid] = task

        def forget(finished: asyncio.Task[None]) -> None:
            if self._chains.get(pid) is finished:
                del self._chains[pid]

        task.add_done_callback(forget)

    async def _run_after(self, before: asyncio.Task[None] | None, envelope: ToMediaNode) -> None:
        if before is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(before)
        room_id, pid, msg = RoomId(envelope.room), ParticipantId(envelope.participant), envelope.message
        origin = envelope.reply_to

        def reply(message: m.ServerMessage) -> None:
            self._queue(origin, ToSocketNode(room_id, (pid,), (message,)))

        try:
            await self._run(room_id, pid, msg, envelope.save_data, reply)
        except VIOPError as exc:
            reply(error_reply(exc, msg.id))
        except Exception as exc:
            if is_store_outage(exc):
                reply(error_reply(Unavailable("a data store is unavailable; try again"), msg.id))
            else:
                log.exception("relayed media message failed", extra={"room_id": room_id})
                reply(
                    m.ErrorMessage(
                        code="internal", message="the server could not do that; try again", id=msg.id
                    )
                )
        finally:
            if envelope.request:
                self._queue(origin, ToSocketNode(room_id, (), request=envelope.request))

    async def _run(
        self, room_id: RoomId, pid: ParticipantId, msg: MediaMessage, save_data: bool, reply: Reply
    ) -> None:
        services = self.services
        if isinstance(msg, m.Offer):
            if save_data:  # chosen on the socket's node before this offer: applies from its start
                services.live.room_delivery().controls.set_save_data(room_id, pid, True)
            await offer_here(services, room_id, pid, msg, reply)
        elif isinstance(msg, m.Answer):
            await answer_here(services, pid, msg)
        elif isinstance(msg, m.Candidate):
            await candidate_here(services, pid, msg)
        elif isinstance(msg, m.SetSubscriptions):
            await subscriptions_here(services, room_id, pid, msg)
        else:
            services.live.room_delivery().controls.set_save_data(room_id, pid, msg.on)

    # --- the loops -------------------------------------------------------------------------------

    async def run_inbox(self) -> None:
        """Every envelope other nodes send here, for the life of the app."""
        async for payload in self.channel.inbox():
            try:
                envelope = _decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("skipped a malformed media signal")
                continue
            if isinstance(envelope, ToMediaNode):
                self._run_here(envelope)
            else:
                self._deliver_here(envelope)

    async def run_outbox(self) -> None:
        """Publish what this node sends to other nodes, one at a time, in order. A node that is gone
        (nobody subscribed) loses its messages: its sockets are gone too."""
        while True:
            node_id, payload = await self._outbox.get()
            try:
                await self.channel.publish(node_id, payload)
            except Exception as exc:
                if not is_store_outage(exc):
                    raise
                log.warning("media signal not sent: Redis unavailable")

    async def close(self) -> None:
        for task in list(self._chains.values()):
            task.cancel()
        for done in self._requests.values():
            if not done.done():
                done.set_exception(MediaNodeUnreachable())
