"""A whole participant for tests, benchmarks and ``python -m vIOP.client``: signaling plus media.

:class:`RoomClient` owns one signaling socket and one peer connection. A background reader answers the
server's renegotiation offers by itself and keeps every other message, so callers wait for what they care
about with :meth:`RoomClient.wait_for` instead of sleeping. A ``media_moved`` (the room's media node died,
docs/SCALING.md) is followed by itself too: a new peer connection, retried while the server answers
``unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import httpx
from aiortc import MediaStreamTrack

from vIOP.client.media import FrameCounter, MediaPeer, ReceiveMode
from vIOP.client.signaling import SignalingClient, SignalingClosed
from vIOP.client.simulcast import SimulcastLayer
from vIOP.media.aiortc_internals import DatagramTap
from vIOP.signaling import messages as m

T = TypeVar("T", bound=m.ServerMessage)

# How long a renegotiation after ``media_moved`` keeps retrying an offer answered ``unavailable`` (the
# room's lease is being taken over), and the pause between tries.
MOVE_RETRY_SECONDS = 30.0
RETRY_PAUSE_SECONDS = 0.25
# On a drain's move, the old connection closes once the new one delivers video from every publisher the
# old one delivered within the last WATCHED_WITHIN_SECONDS, at the latest after SWITCH_BOUND_SECONDS.
SWITCH_BOUND_SECONDS = 5.0
WATCHED_WITHIN_SECONDS = 3.0
OLD_LINGER_SECONDS = 2.0
TicketSource = Callable[[], Awaitable[str]]
"""Returns a fresh ``ws_url`` (with its single-use ticket) for each connection attempt."""


class OfferRefused(RuntimeError):
    """The server answered our ``offer`` with an error (``code``: its signaling error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"offer refused: {code}: {message}")
        self.code = code


class RoomClient:
    def __init__(
        self,
        tickets: TicketSource,
        *,
        origin: str,
        tracks: Callable[[], Sequence[MediaStreamTrack]] = tuple,
        host_addresses: Sequence[str] = ("127.0.0.1",),
        receive: ReceiveMode = ReceiveMode.DECODE,
        counter: FrameCounter | None = None,
        tap: DatagramTap | None = None,
        simulcast: Callable[[], Sequence[SimulcastLayer]] | None = None,
    ) -> None:
        """``simulcast``: a factory of video layers (best first) sent as simulcast after ``tracks``."""
        self.tickets = tickets
        self.simulcast = simulcast
        self.tap = tap  # in the UDP path of every peer connection (impaired links in tests and benchmarks)
        self.origin = origin
        self.tracks = (
            tracks  # a factory: each peer connection (a reconnect makes a new one) gets fresh tracks
        )
        self.host_addresses = tuple(host_addresses)
        self.receive = receive
        self.counter = counter or FrameCounter()
        self.signaling: SignalingClient | None = None
        self.media: MediaPeer | None = None
        self.welcome: m.Welcome | None = None
        self.messages: list[m.ServerMessage] = []
        self.arrivals: list[float] = []  # time.monotonic() at which each of ``messages`` arrived
        self.closed: SignalingClosed | None = None
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self._renegotiation: asyncio.Task[None] | None = None
        # Connections a move replaced that still flow (make-before-break); closed by the move or by close(),
        # whichever comes first (a move cancelled by a second one or by close() must not leave one open).
        self._outgoing: list[MediaPeer] = []
        self.renegotiated: list[float] = []  # time.monotonic() when each move's new answer was accepted

    @property
    def participant_id(self) -> str:
        assert self.welcome is not None, "join first"
        return self.welcome.participant_id

    # --- connecting ------------------------------------------------------------------------------

    async def join(self, *, resume: bool = False, audio: bool = True, video: bool = True) -> m.Welcome:
        """Open a socket with a fresh ticket and send ``join`` (with the resume token when resuming)."""
        url = await self.tickets()
        self.signaling = await SignalingClient.connect(url, origin=self.origin)
        self.closed = None
        self.messages = []  # "since joining": request ids restart with each socket
        self.arrivals = []
        token = self.welcome.resume_token if resume and self.welcome else None
        reply = await self.signaling.request(m.Join(resume_token=token, audio=audio, video=video))
        if isinstance(reply, m.ErrorMessage):
            raise RuntimeError(f"join refused: {reply.code}: {reply.message}")
        assert isinstance(reply, m.Welcome), reply
        self.welcome = reply
        self._reader = asyncio.get_running_loop().create_task(self._read(self.signaling))
        return reply

    async def start_media(self, *, retry_within: float = 0.0) -> None:
        """Offer our tracks once admitted; a new offer always opens a new peer connection (reconnect).
        With ``retry_within``, an offer answered ``unavailable`` (the room's media node is being replaced)
        is tried again until that many seconds have passed."""
        deadline = time.monotonic() + retry_within
        while True:
            if self.media is not None:
                await self.media.close()
            self.media = self._new_peer(self.counter)
            try:
                await self._negotiate(self.media)
                return
            except OfferRefused as refused:
                if refused.code != "unavailable" or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(RETRY_PAUSE_SECONDS)

    async def move_media(self, *, retry_within: float = MOVE_RETRY_SECONDS) -> None:
        """Make-before-break (``media_moved`` on a drain): a new peer connection to the room's new node
        while the old one still flows (we publish on both); the old one closes :data:`OLD_LINGER_SECONDS`
        after the new one delivers video from everyone the old one did (or :data:`SWITCH_BOUND_SECONDS`
        passed), so those still receiving us through the old node have switched too."""
        old = self.media
        if old is not None:
            self._outgoing.append(old)
        try:
            await self._switch_to_new_peer(old, retry_within)
        except BaseException:
            # Refused: the old connection stays ours. Cancelled (a second move, or close()) after the new
            # one was made: the old one is outgoing still, and close() closes it.
            if old is not None and self.media is old:
                self._outgoing.remove(old)
            raise
        if old is not None:
            self._outgoing.remove(old)
            await old.close()

    async def _switch_to_new_peer(self, old: MediaPeer | None, retry_within: float) -> None:
        watched = self.counter.recent_publishers("video", within=WATCHED_WITHIN_SECONDS)
        deadline = time.monotonic() + retry_within
        while True:
            mine = FrameCounter(self.counter.clock, also=self.counter)
            new = self.media = self._new_peer(mine)  # the new node's renegotiations are for this one
            try:
                await self._negotiate(new)
                break
            except OfferRefused as refused:
                await new.close()
                self.media = old
                if refused.code != "unavailable" or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
        switch_by = time.monotonic() + SWITCH_BOUND_SECONDS
        while True:  # frames arrive on aiortc's tasks, not as messages: a short poll
            if watched <= mine.publishers("video") or time.monotonic() >= switch_by:
                break
            await asyncio.sleep(0.02)
        if old is not None:
            # Others may still receive us through the old node until they switch too: keep publishing there
            # a moment longer (the draining node stops the old connections once all are closed).
            await asyncio.sleep(OLD_LINGER_SECONDS)

    def _new_peer(self, counter: FrameCounter) -> MediaPeer:
        peer = MediaPeer(
            host_addresses=self.host_addresses, receive=self.receive, counter=counter, tap=self.tap
        )
        tracks = self.tracks()
        if tracks:
            peer.publish(*tracks)
        if self.simulcast is not None:
            peer.publish_simulcast(self.simulcast())
        elif not tracks:
            peer.receive_only("audio", "video")
        return peer

    async def _negotiate(self, peer: MediaPeer) -> None:
        assert self.signaling is not None
        request_id = self.signaling.next_id()
        await self.signaling.send(m.Offer(sdp=await peer.create_offer(), id=request_id))
        # aiortc builds and gathers the server's answer: allow for a busy machine.
        answer = await self.wait_for(
            lambda msg: msg.id == request_id and isinstance(msg, m.ServerAnswer | m.ErrorMessage), within=30
        )
        if isinstance(answer, m.ErrorMessage):
            raise OfferRefused(answer.code, answer.message)
        assert isinstance(answer, m.ServerAnswer)
        await peer.accept_answer(answer.sdp)

    async def send(self, message: m.ClientMessage) -> None:
        assert self.signaling is not None
        await self.signaling.send(message)

    async def drop(self) -> None:
        """Lose the socket without a close handshake (a network blip), keeping the peer connection."""
        assert self.signaling is not None
        transport = getattr(self.signaling._ws, "transport", None)
        if transport is not None:
            transport.abort()
        with contextlib.suppress(asyncio.TimeoutError, SignalingClosed):
            await self.wait_closed(5)

    async def close(self) -> None:
        if self._renegotiation is not None:
            self._renegotiation.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renegotiation
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self.signaling is not None:
            with contextlib.suppress(Exception):
                await self.signaling.close()
        for peer in [*self._outgoing, *([self.media] if self.media is not None else [])]:
            await peer.close()
        self._outgoing.clear()

    # --- reading ---------------------------------------------------------------------------------

    async def _read(self, signaling: SignalingClient) -> None:
        try:
            while True:
                message = await signaling.recv(within=None)
                arrived = time.monotonic()
                if isinstance(message, m.ServerOffer) and self.media is not None:
                    answer = await self.media.accept_offer(message.sdp)
                    await signaling.send(m.Answer(sdp=answer))
                elif isinstance(message, m.MediaMoved) and self.media is not None:
                    self._follow_move(message.reason)
                async with self._changed:
                    self.messages.append(message)
                    self.arrivals.append(arrived)
                    self._changed.notify_all()
        except SignalingClosed as closed:
            async with self._changed:
                self.closed = closed
                self._changed.notify_all()

    def _follow_move(self, reason: m.MediaMoveReason) -> None:
        """The room's media moved: a new peer connection, beside the reader (it must keep reading the
        answer meanwhile): at once after a node's loss, make-before-break on a drain. A second move while
        one is under way starts over."""
        if self._renegotiation is not None:
            self._renegotiation.cancel()

        async def renegotiate() -> None:
            if reason is m.MediaMoveReason.DRAIN:
                await self.move_media()
            else:
                await self.start_media(retry_within=MOVE_RETRY_SECONDS)
            self.renegotiated.append(time.monotonic())

        self._renegotiation = asyncio.get_running_loop().create_task(renegotiate())

    async def wait_for(
        self, predicate: Callable[[m.ServerMessage], bool], within: float = 10.0
    ) -> m.ServerMessage:
        """The first received message (since joining) matching ``predicate``."""
        async with asyncio.timeout(within), self._changed:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                if self.closed is not None:
                    raise self.closed
                await self._changed.wait()

    async def wait_message(
        self, kind: type[T], within: float = 10.0, where: Callable[[T], bool] | None = None
    ) -> T:
        found = await self.wait_for(
            lambda msg: isinstance(msg, kind) and (where is None or where(msg)), within
        )
        assert isinstance(found, kind)
        return found

    def received_since(self, kind: type[T], since: float) -> list[tuple[float, T]]:
        """(arrival time, message) of every ``kind`` message that arrived at or after ``since``."""
        return [
            (at, message)
            for at, message in zip(self.arrivals, self.messages, strict=True)
            if at >= since and isinstance(message, kind)
        ]

    def latest(self, kind: type[T]) -> T | None:
        for message in reversed(self.messages):
            if isinstance(message, kind):
                return message
        return None

    async def wait_closed(self, within: float = 10.0) -> SignalingClosed:
        async with asyncio.timeout(within), self._changed:
            while self.closed is None:
                await self._changed.wait()
            return self.closed

    async def wait_frames(self, publisher: str, kind: str, at_least: int = 1, within: float = 10.0) -> int:
        """Poll the frame counter (frames arrive on aiortc's tasks, not as messages) until enough came."""
        deadline = time.monotonic() + within
        while True:
            count = self.counter.frames(publisher, kind)
            if count >= at_least:
                return count
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} {kind} frames from {publisher} after {within} s")
            await asyncio.sleep(0.02)


# --- the HTTP side (login, tickets), for the command line and the load benchmarks ----------------------


class HttpApi:
    """The few HTTP calls a participant makes (docs/API.md)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, trust_env=False)

    async def login(self, username: str, password: str, totp: str | None = None) -> str:
        body: dict[str, str] = {"username": username, "password": password}
        if totp:
            body["totp"] = totp
        response = await self.http.post("/api/v1/auth/login", json=body)
        response.raise_for_status()
        return str(response.json()["access_token"])

    async def exchange_invite(self, invite_token: str) -> str:
        """Trade an invite link's token, once, for a device credential (``vdev_...``) used as the bearer."""
        response = await self.http.post("/api/v1/invites/exchange", json={"invite_token": invite_token})
        response.raise_for_status()
        return str(response.json()["device_token"])

    async def signal_ticket(self, bearer: str, room_id: str) -> str:
        response = await self.http.post(
            "/api/v1/signal-tickets", json={"room_id": room_id}, headers={"Authorization": f"Bearer {bearer}"}
        )
        response.raise_for_status()
        return str(response.json()["ws_url"])

    def ticket_source(self, bearer: str, room_id: str) -> TicketSource:
        async def next_url() -> str:
            return await self.signal_ticket(bearer, room_id)

        return next_url

    async def close(self) -> None:
        await self.http.aclose()
