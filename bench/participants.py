"""A participant that behaves as docs/PROTOCOL.md asks a client to: it pings, and when its socket drops
(1001, 1011, 1013 or no close frame) it reconnects with a fresh ticket and its resume token, backing off
between attempts, and opens a new peer connection if it had one. Every step is timed.

Built on :class:`vIOP.client.session.RoomClient`; used by the fault-injection scenarios (``bench/faults.py``,
``tests/faults/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from dataclasses import dataclass, field

import httpx

from vIOP.client.media import ReceiveMode
from vIOP.client.session import RoomClient, TicketSource
from vIOP.client.signaling import ConnectRefused, SignalingClosed
from vIOP.errors import VIOPError
from vIOP.signaling import messages as m

RECONNECT_CODES = frozenset({1001, 1011, 1012, 1013, 1006, None})  # None: dropped without a close frame


@dataclass(frozen=True, slots=True)
class Reconnect:
    lost_at: float  # the socket was seen to close
    welcomed_at: float  # the next welcome arrived
    attempts: int
    resumed: bool  # welcome.resumed
    same_participant: bool


@dataclass(frozen=True, slots=True)
class Beat:
    sent_at: float
    answered_at: float
    ok: bool  # pong (True) or an error reply (False)


@dataclass
class Participant:
    name: str
    tickets: TicketSource
    origin: str
    media: bool = False  # open a (receive-only) peer connection once admitted, and again after a resume
    ping_seconds: float = 1.0
    give_up_seconds: float = 120.0  # reconnect attempts stop after this long (the grace window is shorter)
    reconnect: bool = True  # False: a dropped socket stays dropped (the person walked away)
    client: RoomClient = field(init=False)
    participant_id: str | None = None
    welcomes: list[m.Welcome] = field(default_factory=list)
    reconnects: list[Reconnect] = field(default_factory=list)
    beats: list[Beat] = field(default_factory=list)
    terminal: SignalingClosed | None = None  # closed with a code that means "do not reconnect"
    failure: str | None = None  # why reconnecting stopped, if it did
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _stopping: bool = False

    def __post_init__(self) -> None:
        self.client = RoomClient(self.tickets, origin=self.origin, receive=ReceiveMode.PACKETS)

    # --- life cycle --------------------------------------------------------------------------------

    async def join(self) -> m.Welcome:
        welcome = await self.client.join(audio=False, video=False)
        self.participant_id = welcome.participant_id
        self.welcomes.append(welcome)
        self._tasks.append(asyncio.create_task(self._supervise()))
        self._tasks.append(asyncio.create_task(self._ping()))
        return welcome

    async def enter_room(self) -> None:
        """Once admitted: open the peer connection (the room's `join`: the attendance interval opens)."""
        await self.client.wait_message(m.Admitted, within=30)
        if self.media:
            await self.client.start_media()

    async def stop(self, *, leave: bool = False) -> None:
        self._stopping = True
        if leave and self.client.closed is None:
            with contextlib.suppress(Exception):
                await self.client.send(m.Leave())
                await self.client.wait_closed(5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()

    @property
    def connected(self) -> bool:
        return self.client.closed is None and self.terminal is None

    @property
    def given_up(self) -> bool:
        """Closed for good, or reconnecting stopped (refused or out of time)."""
        return self.terminal is not None or (
            self.failure is not None and self.failure.startswith(("refused", "gave"))
        )

    # --- heartbeats ----------------------------------------------------------------------------------

    async def _ping(self) -> None:
        """Ping on a fixed period while a socket is up; each answer (pong or error) is one Beat."""
        await asyncio.sleep(random.uniform(0, self.ping_seconds))
        while not self._stopping:
            if self.client.closed is None and self.client.signaling is not None:
                beat_id = f"hb{next(self._ids)}"
                sent = time.monotonic()
                with contextlib.suppress(SignalingClosed, TimeoutError, VIOPError):
                    await self.client.send(m.Ping(id=beat_id))
                    reply = await self.client.wait_for(lambda msg, i=beat_id: msg.id == i, within=10)
                    self.beats.append(Beat(sent, time.monotonic(), isinstance(reply, m.Pong)))
            await asyncio.sleep(self.ping_seconds)

    def first_ok_beat_after(self, t: float) -> float | None:
        return next((b.answered_at for b in self.beats if b.sent_at >= t and b.ok), None)

    # --- reconnecting ----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        while not self._stopping:
            try:
                closed = await self.client.wait_closed(within=3600)
            except TimeoutError:
                continue
            if self._stopping or not self.reconnect:
                return
            if closed.close_code not in RECONNECT_CODES:
                self.terminal = closed
                return
            if not await self._reconnect(time.monotonic()):
                return

    async def _reconnect(self, lost_at: float) -> bool:
        had_media = self.client.media is not None
        backoff = 0.1
        for attempt in itertools.count(1):
            if time.monotonic() - lost_at > self.give_up_seconds:
                self.failure = "gave up"
                return False
            try:
                welcome = await self.client.join(resume=True, audio=False, video=False)
            except (ConnectRefused, httpx.HTTPError, OSError, TimeoutError) as exc:
                self.failure = type(exc).__name__  # the server is not back yet: try again
            except (RuntimeError, SignalingClosed, VIOPError) as exc:
                self.failure = f"refused: {exc}"  # e.g. resume_rejected: a new knock would be needed
                with contextlib.suppress(Exception):
                    if self.client.signaling is not None:
                        await self.client.signaling.close()
                return False
            else:
                self.failure = None
                self.welcomes.append(welcome)
                self.reconnects.append(
                    Reconnect(
                        lost_at=lost_at,
                        welcomed_at=time.monotonic(),
                        attempts=attempt,
                        resumed=welcome.resumed,
                        same_participant=welcome.participant_id == self.participant_id,
                    )
                )
                if had_media and welcome.resumed:
                    await self._media_again()
                return True
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(2.0, backoff * 2)
        return False  # unreachable (the loop ends by returning)

    async def _media_again(self) -> None:
        """A resumed participant opens a new peer connection (aiortc has no ICE restart)."""
        with contextlib.suppress(TimeoutError, SignalingClosed):
            await self.client.wait_message(m.Admitted, within=10)
            await self.client.start_media()
