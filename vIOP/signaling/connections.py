"""Live signaling sockets of this process: who is connected, in which room, and how frames reach them.

Each :class:`Connection` owns a bounded send queue drained by its own writer task, so a fan-out only
appends to queues and never waits on a slow client. A client that stops reading fills its queue and is
closed with 1013 (it can resume); it never holds up the room. Inbound frames pass a token-bucket rate
limit and refresh the heartbeat stamp used to close silent sockets.

The registry is per process; which participants exist is room state kept elsewhere (Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from vIOP.ids import ParticipantId, RoomId
from vIOP.signaling.codec import encode_text
from vIOP.signaling.messages import CloseCode, ServerMessage
from vIOP.signaling.ratelimit import Clock, InboundLimiter, InboundVerdict, MessageRateLimit


class FrameSink(Protocol):
    """The sending half of a WebSocket; Starlette's ``WebSocket`` satisfies it."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class ConnectionState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # no new frames accepted; queued frames still go out, then the close frame
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    send_queue_frames: int = 256
    send_timeout_seconds: float = 10.0
    close_timeout_seconds: float = 2.0
    heartbeat_seconds: float = 10.0  # the client pings this often (told in `welcome`)
    heartbeat_timeout_seconds: float = 30.0  # silent this long: the socket is closed 1001
    inbound: MessageRateLimit = field(default_factory=MessageRateLimit)


@dataclass(frozen=True, slots=True)
class CloseInfo:
    code: int
    reason: str
    by_server: bool  # False: the client closed or the socket dropped


class Connection:
    """One live socket. Create it through :meth:`ConnectionRegistry.open` (needs a running loop)."""

    __slots__ = (
        "_aborting",
        "_clock",
        "_close",
        "_closed",
        "_finishing",
        "_limiter",
        "_limits",
        "_on_closed",
        "_pending",
        "_sending",
        "_sink",
        "_sink_lost",
        "_state",
        "_wakeup",
        "_writer",
        "last_seen",
        "participant_id",
        "room_id",
    )

    def __init__(
        self,
        sink: FrameSink,
        room_id: RoomId,
        *,
        limits: ConnectionLimits,
        clock: Clock,
        on_closed: Callable[[Connection], None],
    ) -> None:
        self._sink = sink
        self.room_id = room_id
        self.participant_id: ParticipantId | None = None  # set by ConnectionRegistry.attach
        self._limits = limits
        self._clock = clock
        self._limiter = InboundLimiter(limits.inbound, clock)
        self._on_closed = on_closed
        self._pending: deque[str] = deque()
        self._wakeup = asyncio.Event()
        self._closed = asyncio.Event()
        self._state = ConnectionState.OPEN
        self._close = CloseInfo(int(CloseCode.INTERNAL_ERROR), "writer stopped", by_server=True)
        self._sink_lost = False
        self._aborting = False
        self._finishing = False
        self._sending = False
        self.last_seen = clock()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def queued(self) -> int:
        return len(self._pending)

    def send(self, message: ServerMessage) -> bool:
        return self.send_frame(encode_text(message))

    def send_frame(self, frame: str) -> bool:
        """Queue an encoded text frame. False if closing or closed; closes 1013 when the queue is full."""
        if self._state is not ConnectionState.OPEN:
            return False
        if len(self._pending) >= self._limits.send_queue_frames:
            self.abort(CloseCode.TRY_AGAIN_LATER, "client too slow to read")
            return False
        self._pending.append(frame)
        self._wakeup.set()
        return True

    def accept_inbound(self) -> InboundVerdict:
        """Call once per received frame, before decoding: refreshes the heartbeat, applies the rate limit."""
        self.last_seen = self._clock()
        return self._limiter.check()

    def idle_seconds(self) -> float:
        return self._clock() - self.last_seen

    def close(self, code: CloseCode, reason: str = "") -> None:
        """Close after the frames already queued (e.g. an `error` then 1003). Idempotent."""
        if self._state is ConnectionState.OPEN:
            self._state = ConnectionState.CLOSING
            self._close = CloseInfo(int(code), reason, by_server=True)
            self._wakeup.set()

    def abort(self, code: CloseCode, reason: str = "") -> None:
        """Drop queued frames and close now, even if a send is stuck on a client that does not read."""
        self.close(code, reason)
        self._pending.clear()
        self._interrupt_writer()

    def lost(self, code: int = 1006) -> None:
        """The endpoint saw the client close or the socket drop: stop without sending anything more."""
        if self._state is ConnectionState.OPEN:
            self._close = CloseInfo(code, "", by_server=False)
        self._state = ConnectionState.CLOSING
        self._sink_lost = True
        self._pending.clear()
        self._interrupt_writer()

    async def wait_closed(self) -> CloseInfo:
        await self._closed.wait()
        return self._close

    def _interrupt_writer(self) -> None:
        # Cancel only a send in flight (it may never finish); an idle writer just wakes up and ends. Never
        # cancel the final close, and never a writer that has not started (its finally would not run).
        if self._sending and not self._finishing:
            self._aborting = True
            self._writer.cancel()
        else:
            self._wakeup.set()

    async def _write_loop(self) -> None:
        try:
            # Bounded by the connection's life: it ends once the state leaves OPEN and the queue is empty.
            while self._pending or self._state is ConnectionState.OPEN:
                if not self._pending:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                frame = self._pending.popleft()
                self._sending = True
                async with asyncio.timeout(self._limits.send_timeout_seconds):
                    await self._sink.send_text(frame)
                self._sending = False
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._aborting or task is None:
                raise
            task.uncancel()
        except TimeoutError:
            self._pending.clear()
            self._state = ConnectionState.CLOSING
            self._close = CloseInfo(int(CloseCode.TRY_AGAIN_LATER), "send timed out", by_server=True)
        except Exception:  # the transport is gone: nothing more can be sent on it
            self._state = ConnectionState.CLOSING
            self._sink_lost = True
            self._close = CloseInfo(1006, "", by_server=False)
        finally:
            await self._finish()

    async def _finish(self) -> None:
        self._finishing = True
        if not self._sink_lost:
            # The close frame can block like any send; a socket already gone raises: both end the same way.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._limits.close_timeout_seconds):
                    await self._sink.close(self._close.code, self._close.reason)
        self._state = ConnectionState.CLOSED
        self._closed.set()
        self._on_closed(self)


class ConnectionRegistry:
    """The live connections of this process, by participant and by room."""

    def __init__(self, limits: ConnectionLimits | None = None, clock: Clock = time.monotonic) -> None:
        self.limits = limits or ConnectionLimits()
        self._clock = clock
        self._open: set[Connection] = set()
        self._by_participant: dict[ParticipantId, Connection] = {}
        self._by_room: dict[RoomId, dict[ParticipantId, Connection]] = {}

    def open(self, sink: FrameSink, room_id: RoomId) -> Connection:
        """Start tracking an accepted socket; its writer task starts now."""
        connection = Connection(sink, room_id, limits=self.limits, clock=self._clock, on_closed=self._forget)
        self._open.add(connection)
        return connection

    def attach(self, connection: Connection, participant_id: ParticipantId) -> Connection | None:
        """Bind the connection to its participant (after join or resume).

        A connection already held by that participant (a resumed client whose old socket has not been seen
        to drop yet) is closed 1000 "replaced" and returned. Clients do not reconnect after 1000.
        """
        if connection.state is not ConnectionState.OPEN:
            raise RuntimeError("cannot attach a connection that is closing")
        if connection.participant_id is not None and connection.participant_id != participant_id:
            raise RuntimeError("a connection belongs to one participant")
        previous = self._by_participant.get(participant_id)
        connection.participant_id = participant_id
        self._by_participant[participant_id] = connection
        self._by_room.setdefault(connection.room_id, {})[participant_id] = connection
        if previous is not None and previous is not connection:
            previous.close(CloseCode.NORMAL, "replaced")
            return previous
        return None

    def get(self, participant_id: ParticipantId) -> Connection | None:
        return self._by_participant.get(participant_id)

    def in_room(self, room_id: RoomId) -> tuple[Connection, ...]:
        return tuple(self._by_room.get(room_id, {}).values())

    def send_to(self, participant_id: ParticipantId, message: ServerMessage) -> bool:
        connection = self._by_participant.get(participant_id)
        return connection is not None and connection.send(message)

    def broadcast(
        self,
        room_id: RoomId,
        message: ServerMessage,
        *,
        exclude: ParticipantId | None = None,
        where: Callable[[Connection], bool] | None = None,
    ) -> int:
        """Queue one message to the room's attached connections; encoded once. Returns how many took it."""
        frame = encode_text(message)
        delivered = 0
        for connection in self.in_room(room_id):
            if connection.participant_id == exclude or (where is not None and not where(connection)):
                continue
            delivered += connection.send_frame(frame)
        return delivered

    def stale(self) -> list[Connection]:
        """Open connections silent for longer than the heartbeat timeout."""
        timeout = self.limits.heartbeat_timeout_seconds
        return [c for c in self._open if c.state is ConnectionState.OPEN and c.idle_seconds() > timeout]

    def close_stale(self) -> int:
        """Close silent sockets 1001 (the client may resume); run this every few seconds."""
        stale = self.stale()
        for connection in stale:
            connection.abort(CloseCode.GOING_AWAY, "heartbeat timeout")
        return len(stale)

    async def close_all(
        self, code: CloseCode = CloseCode.GOING_AWAY, reason: str = "server shutting down"
    ) -> None:
        """Shutdown: close every socket after its queued frames; waits at most send + close timeouts."""
        connections = list(self._open)
        for connection in connections:
            connection.close(code, reason)
        if not connections:
            return
        waiters = [asyncio.ensure_future(c.wait_closed()) for c in connections]
        _, late = await asyncio.wait(waiters, timeout=self.limits.send_timeout_seconds)
        for connection in connections:
            connection.abort(code, reason)  # no-op for the ones already closed
        if late:
            await asyncio.wait(late, timeout=self.limits.close_timeout_seconds * 2)
        for waiter in late:
            waiter.cancel()

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Connection]:
        return iter(tuple(self._open))

    def _forget(self, connection: Connection) -> None:
        self._open.discard(connection)
        participant_id = connection.participant_id
        if participant_id is None or self._by_participant.get(participant_id) is not connection:
            return
        del self._by_participant[participant_id]
        room = self._by_room.get(connection.room_id)
        if room is not None:
            room.pop(participant_id, None)
            if not room:
                del self._by_room[connection.room_id]
