"""The forwarding unit: one publisher's track (a :class:`Source`) copied to many subscribers (:class:`Leg`).

A source receives complete encoded frames from the publisher's receiver (see ``aiortc_internals``) and hands
each one, synchronously, to every attached leg. A leg is the track a subscriber's server-side
``RTCRtpSender`` reads; it re-times frames onto its own timeline (so a sender that moves to another
publisher never sees time go backwards) and, for video, starts only at a keyframe (a decoder cannot start
mid-stream). Frames are never dropped except on overflow, when a video leg waits for the next keyframe,
and while a leg is paused (its subscriber's downlink cannot carry it, see ``vIOP.media.budget``): a paused
video leg resumes at a keyframe.

Keyframe requests are limited twice: per subscriber leg (:data:`LEG_KEYFRAME_INTERVAL`: one congested
subscriber cannot make a publisher send keyframes more often than that) and per source
(:class:`KeyframeGate` with the relay's interval: all subscribers together).

Simulcast: each layer a publisher sends is its own source; :meth:`Leg.move_to` switches a subscriber
between them at a keyframe of the target layer (asked for at once), and until then the leg keeps
receiving the layer it has, so the picture never stops; the leg's re-timing keeps its sequence numbers
and timestamps continuous.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from aiortc import MediaStreamError, MediaStreamTrack

from vIOP.ids import ParticipantId
from vIOP.media.direct_sender import DirectSender
from vIOP.media.frames import EncodedFrame
from vIOP.media.keyframes import DEFAULT_KEYFRAME_INTERVAL, KeyframeGate
from vIOP.media.rtp import VP8_MAX_CHUNK
from vIOP.media.simulcast import vp8_keyframe_size

logger = logging.getLogger(__name__)

# About 3 s of media: a sender this far behind is stalled, not jittery.
MAX_QUEUED: Final = {"audio": 150, "video": 90}
LEG_KEYFRAME_INTERVAL: Final = 2.0
"""One subscriber's keyframe requests for one source reach the source at most this often."""

Upstream = Callable[[], None]
"""Asks the publisher for a keyframe (sends a PLI); supplied by the relay, never blocks."""

LevelListener = Callable[[int], None]
"""Hears each RFC 6464 level byte a source forwards (the relay's active-speaker detection); never blocks."""


class Leg(MediaStreamTrack):
    """One subscriber's view of whichever source it is attached to (or none).

    With a :class:`DirectSender` the leg sends each frame as it arrives (no queue, no task switch);
    without one it queues frames for aiortc's sender loop, which reads them through :meth:`recv`.
    """

    def __init__(
        self,
        kind: str,
        clock: Callable[[], float] = time.monotonic,
        direct: DirectSender | None = None,
        keyframe_interval: float = LEG_KEYFRAME_INTERVAL,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.source: Source | None = None
        self.pending: Source | None = None  # the layer this leg moves to at its next keyframe
        self.direct = direct
        self.frames_out = 0
        self.overflows = 0
        self.paused = False
        self.keyframe_requests_in = 0  # asked by the subscriber or needed by this leg
        self.keyframe_requests_passed = 0  # passed on to the source
        self._gate = KeyframeGate(keyframe_interval)
        self._gate_timer: asyncio.TimerHandle | None = None
        self._clock = clock
        self._queue: deque[EncodedFrame] = deque()
        self._limit = MAX_QUEUED[kind]
        self._waiter: asyncio.Future[None] | None = None
        self._need_keyframe = kind == "video"
        self._offset: int | None = None  # added to source pts; None: recompute at the next frame
        self._last_pts: int | None = None
        self._last_at = 0.0

    def push(self, frame: EncodedFrame) -> None:
        """Called by the source for every frame, on the event loop; never blocks."""
        if self.paused:
            return
        if self._need_keyframe:
            if not frame.keyframe:
                return
            self._need_keyframe = False
        if self.direct is not None:
            self._send_direct(frame, self.direct)
            return
        if len(self._queue) >= self._limit:
            self.overflows += 1
            if self.kind == "video":
                self._queue.clear()
                self._need_keyframe = True
                self.request_keyframe()
                if not frame.keyframe:
                    return
                self._need_keyframe = False
            else:
                self._queue.popleft()
        if self._offset is None:
            self._offset = self._rebase(frame)
        pts = frame.pts + self._offset
        self._last_pts = pts
        self._last_at = self._clock()
        self._queue.append(frame.with_pts(pts))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _send_direct(self, frame: EncodedFrame, direct: DirectSender) -> None:
        if self._offset is None:
            self._offset = self._rebase(frame)
        pts = frame.pts + self._offset
        if direct.send(frame.data, pts, frame.audio_level):
            self._last_pts = pts
            self._last_at = self._clock()
            self.frames_out += 1
        elif self.kind == "video":  # not negotiated/connected yet: a decoder must restart at a keyframe
            self._need_keyframe = True
            self.request_keyframe()

    def _rebase(self, frame: EncodedFrame) -> int:
        """Continue this leg's timeline from its last frame, by the wall time that passed since."""
        if self._last_pts is None:
            return -frame.pts
        elapsed = max(self._clock() - self._last_at, 0.001)
        step = max(1, round(elapsed / frame.time_base))
        return self._last_pts + step - frame.pts

    def resync(self) -> None:
        """The stream feeding this leg changed (another source, or the publisher reconnected)."""
        self._queue.clear()
        self._need_keyframe = self.kind == "video"
        self._offset = None

    async def recv(self) -> EncodedFrame:  # type: ignore[override]  # pass-through: encoded, not av.Frame
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        self.frames_out += 1
        return self._queue.popleft()

    def move_to(self, source: Source | None) -> None:
        """Receive ``source`` from now on (None: nothing, i.e. paused).

        A video leg that is receiving another source keeps it until ``source`` delivers a keyframe (one is
        requested now), then moves; otherwise it attaches at once (and starts at the next keyframe).
        """
        if self.pending is not None:
            self.pending.cancel_pending(self)
        if source is self.source:
            return
        if source is None:
            if self.source is not None:
                self.source.detach(self)
            return
        if self.source is None or self.kind != "video":
            source.attach(self)
            return
        source.add_pending(self)

    def set_paused(self, paused: bool) -> None:
        """Stop or resume sending (the subscriber's budget); a resumed video leg restarts at a keyframe."""
        if paused == self.paused:
            return
        self.paused = paused
        self._queue.clear()
        self._offset = None  # rebased by wall time at the first frame after the pause
        if not paused and self.kind == "video":
            self._need_keyframe = True
            self.request_keyframe()

    def stop(self) -> None:
        if self.pending is not None:
            self.pending.cancel_pending(self)
        if self._gate_timer is not None:
            self._gate_timer.cancel()
            self._gate_timer = None
        if self.source is not None:
            self.source.detach(self)
        super().stop()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def request_keyframe(self) -> None:
        """The subscriber sent a PLI/FIR (or this leg needs a keyframe): pass it on, limited per leg.

        A paused leg's subscriber gets no video from it: its requests are not passed on.
        """
        if self.kind != "video" or self.paused or self.source is None:
            return
        self.keyframe_requests_in += 1
        loop = asyncio.get_running_loop()
        decision = self._gate.request(loop.time())
        if decision.send_now:
            self._pass_keyframe_request()
        elif decision.send_at is not None:
            self._gate_timer = loop.call_at(decision.send_at, self._fire_trailing)

    def _fire_trailing(self) -> None:
        self._gate_timer = None
        if self._gate.fire_trailing(asyncio.get_running_loop().time()) and self._may_request():
            self._pass_keyframe_request()

    def _may_request(self) -> bool:
        return self.source is not None and not self.paused and self.readyState == "live"

    def _pass_keyframe_request(self) -> None:
        if self.source is not None:
            self.keyframe_requests_passed += 1
            self.source.request_keyframe()


class Source:
    """One publisher track; fans every frame out to its legs unless forwarding is switched off."""

    def __init__(
        self,
        publisher: ParticipantId,
        kind: str,
        *,
        keyframe_interval: float = DEFAULT_KEYFRAME_INTERVAL,
        forwarding: bool = True,
        on_level: LevelListener | None = None,
        layer: str | None = None,
        name: str | None = None,
    ) -> None:
        """``layer``: the RID of the simulcast layer this source carries (None: the publisher's only one).
        ``name``: which of the publisher's tracks this is (default ``kind``; ``"screen"``: the screen share,
        a second video source with its own legs and keyframe requests)."""
        self.publisher = publisher
        self.kind = kind
        self.name = name or kind
        self.layer = layer
        self.frame_size: tuple[int, int] | None = None  # (width, height) of the last keyframe
        self.frames_in = 0
        self._on_level = on_level
        self.octets_in = 0
        self.packets_in = 0  # as the relay packetizes them (what forwarding one frame costs)
        self.keyframe_requests_sent = 0
        self._legs: list[Leg] = []
        self._pending: list[Leg] = []  # legs moving here at the next keyframe
        self._forwarding = forwarding
        self._upstream: Upstream | None = None
        self._gate = KeyframeGate(keyframe_interval)
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def forwarding(self) -> bool:
        return self._forwarding

    @property
    def legs(self) -> tuple[Leg, ...]:
        return tuple(self._legs)

    def deliver(self, frame: EncodedFrame) -> None:
        """Entry point from the publisher's receiver (event loop, once per complete frame)."""
        self.frames_in += 1
        level = frame.audio_level
        if level is not None and self._forwarding and self._on_level is not None:
            self._on_level(level)  # heard unless forwarding is off: a host-muted person cannot hold the floor
        size = len(frame.data)
        self.octets_in += size
        self.packets_in += 1 + (size - 1) // VP8_MAX_CHUNK if self.kind == "video" else 1
        if frame.keyframe and self.kind == "video":
            self.frame_size = vp8_keyframe_size(frame.data) or self.frame_size
            if self._pending and self._forwarding:
                self._adopt_pending()
        if self._forwarding:
            for leg in self._legs:
                leg.push(frame)

    def attach(self, leg: Leg, *, ask_keyframe: bool = True) -> None:
        if self._closed:
            return
        if leg.pending is not None:
            leg.pending.cancel_pending(leg)
        if leg.source is not None:
            leg.source.detach(leg)
        leg.source = self
        leg.resync()
        self._legs.append(leg)
        if self.kind == "video" and ask_keyframe:
            self.request_keyframe()  # the new subscriber needs one to start decoding

    def add_pending(self, leg: Leg) -> None:
        """``leg`` moves here at this source's next keyframe (requested now); see :meth:`Leg.move_to`."""
        if self._closed:
            return
        leg.pending = self
        self._pending.append(leg)
        self.request_keyframe()

    def cancel_pending(self, leg: Leg) -> None:
        if leg in self._pending:
            self._pending.remove(leg)
        if leg.pending is self:
            leg.pending = None

    def _adopt_pending(self) -> None:
        """A keyframe is being delivered: the legs waiting for one switch over and start with it."""
        legs, self._pending = self._pending, []
        for leg in legs:
            leg.pending = None
            self.attach(leg, ask_keyframe=False)

    def detach(self, leg: Leg) -> None:
        if leg.source is self:
            leg.source = None
            leg.resync()
        if leg in self._legs:
            self._legs.remove(leg)

    def set_forwarding(self, enabled: bool) -> None:
        if enabled == self._forwarding:
            return
        self._forwarding = enabled
        if enabled and self.kind == "video":
            for leg in self._legs:
                leg.resync()
            self.request_keyframe()

    def bind_upstream(self, upstream: Upstream | None) -> None:
        """The publisher's (new) receiver; ``None`` while it has no connection. Legs restart at a keyframe."""
        self._upstream = upstream
        self._level = None
        for leg in self._legs:
            leg.resync()
        if upstream is not None and self._legs and self.kind == "video":
            self.request_keyframe()

    def request_keyframe(self) -> None:
        if self.kind != "video" or self._closed:
            return
        loop = asyncio.get_running_loop()
        decision = self._gate.request(loop.time())
        if decision.send_now:
            self._send_upstream()
        elif decision.send_at is not None:
            self._timer = loop.call_at(decision.send_at, self._fire_trailing)

    def _fire_trailing(self) -> None:
        self._timer = None
        if not self._closed and self._gate.fire_trailing(asyncio.get_running_loop().time()):
            self._send_upstream()

    def _send_upstream(self) -> None:
        if self._upstream is not None:
            self.keyframe_requests_sent += 1
            self._upstream()

    def close(self) -> None:
        """The publisher left: every leg stops receiving this source at once."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for leg in list(self._legs):
            self.detach(leg)
        for leg in list(self._pending):
            self.cancel_pending(leg)
        self._upstream = None
