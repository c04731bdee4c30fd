"""Impaired links for aiortc test clients: loss, delay and a bandwidth cap in the client's own UDP path.

The kernel here has no ``netem`` (and no random-drop action), so impairment is injected where the client's
datagrams enter and leave aioice: :func:`vIOP.media.aiortc_internals.tap_datagrams` hands every datagram of
a peer connection to an :class:`ImpairedLink`, which drops, queues and delays it per direction, then
delivers it to aiortc (``down``: server to client) or sends it on the socket (``up``: client to server).

API::

    link = ImpairedLink(Impairment(down=Shape(loss=0.03), up=Shape(rate_bps=250_000)), seed=7)
    peer = MediaPeer(..., tap=link)            # or RoomClient(..., tap=link), Room.join(..., tap=link)
    ...
    link.down.stats.lost, link.down.stats.delivered_bytes, link.up.stats.bytes_per_second()

Each direction applies, in this order (like a lossy last hop in front of a home router's rate limit):

1. **loss**: each packet is dropped with probability ``loss``, drawn from ``random.Random(seed)`` (one
   generator per direction, so a run with the same seed and the same packets drops the same ones);
2. **bandwidth cap**: a token bucket of ``rate_bps`` bits/s and ``burst_bytes`` depth with a FIFO queue in
   front of it; a packet that would wait longer than ``queue_seconds`` is dropped (tail drop), as tbf's
   ``latency`` does;
3. **delay**: ``delay`` seconds of fixed one-way delay (order is kept).

Only SRTP and SRTCP (first byte 128-191, RFC 7983) are impaired: STUN and DTLS pass untouched, so
connection set-up and ICE consent are as reliable as on loopback and only media and its feedback suffer.
The RTP header travels in clear inside SRTP, so every RTP packet dropped (by loss or by the queue) is
recorded as ``(ssrc, sequence number)`` in :attr:`PathStats.dropped_rtp`.

:class:`ShapedPath` is the pure core (``admit(size, now)`` returns the delivery time or None): tests drive
it with any clock. :class:`ImpairedLink` adds the scheduling on the running event loop.
"""

from __future__ import annotations

import asyncio
import collections
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

DEFAULT_BURST_BYTES: Final = 6_000
"""About four full-size packets: a home router's small burst allowance (must be >= one datagram)."""

DEFAULT_QUEUE_SECONDS: Final = 0.2
"""Longest wait in the bottleneck queue before tail drop (a typical home router buffer at low rates)."""


@dataclass(frozen=True, slots=True)
class Shape:
    """One direction's impairment. The defaults impair nothing."""

    loss: float = 0.0  # probability in [0, 1)
    delay: float = 0.0  # seconds, one way
    rate_bps: int | None = None  # bits per second of datagram payload; None: no cap
    burst_bytes: int = DEFAULT_BURST_BYTES
    queue_seconds: float = DEFAULT_QUEUE_SECONDS

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), not {self.loss}")
        if self.delay < 0 or self.queue_seconds < 0:
            raise ValueError("delay and queue_seconds must be >= 0")
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise ValueError(f"rate_bps must be positive, not {self.rate_bps}")
        if self.burst_bytes < 1500:
            raise ValueError("burst_bytes must hold at least one full datagram (1500)")


@dataclass(frozen=True, slots=True)
class Impairment:
    """``down``: datagrams the client receives; ``up``: datagrams the client sends."""

    down: Shape = Shape()
    up: Shape = Shape()


@dataclass(slots=True)
class PathStats:
    """What one direction did to the media datagrams offered to it (non-media datagrams are not counted)."""

    offered: int = 0
    offered_bytes: int = 0
    lost: int = 0  # dropped by random loss
    overflowed: int = 0  # dropped because the cap's queue was full
    delivered: int = 0
    delivered_bytes: int = 0
    first_delivery: float | None = None
    delivered_bytes_by_second: collections.Counter[int] = field(default_factory=collections.Counter)
    """Bytes delivered per whole second since the first delivery (key 0 is that first second)."""
    dropped_rtp: list[tuple[int, int]] = field(default_factory=list)
    """(SSRC, sequence number) of every RTP packet dropped, by loss or by the queue."""

    def bytes_per_second(self) -> list[int]:
        """Delivered bytes in each whole second from the first delivery (the last, partial second excluded)."""
        if not self.delivered_bytes_by_second:
            return []
        last = max(self.delivered_bytes_by_second)
        return [self.delivered_bytes_by_second.get(s, 0) for s in range(last)]


def is_media(datagram: bytes) -> bool:
    """SRTP or SRTCP (RFC 7983: first byte 128-191); STUN is 0-3, DTLS 20-63."""
    return len(datagram) >= 12 and 127 < datagram[0] < 192


def rtp_id(datagram: bytes) -> tuple[int, int] | None:
    """(SSRC, sequence number) of an (S)RTP packet, None for (S)RTCP (payload types 192-223 mark RTCP)."""
    if 192 <= datagram[1] <= 223:
        return None
    sequence, _timestamp, ssrc = struct.unpack_from("!HII", datagram, 2)
    return ssrc, sequence


class ShapedPath:
    """One direction: random loss, then a token-bucket cap with a bounded FIFO queue, then fixed delay.

    Pure: ``admit(size, now)`` says when the datagram comes out (``now`` + queueing + delay) or None when
    it is dropped; nothing here reads a clock or schedules anything.
    """

    def __init__(self, shape: Shape, seed: int) -> None:
        self.shape = shape
        self.stats = PathStats()
        self._random = random.Random(seed)
        self._tokens = float(shape.burst_bytes)  # the bucket starts full
        self._tokens_at = 0.0  # time of the last departure from the bucket
        self._started = False

    def admit(self, size: int, now: float, rtp: tuple[int, int] | None = None) -> float | None:
        shape, stats = self.shape, self.stats
        stats.offered += 1
        stats.offered_bytes += size
        if shape.loss and self._random.random() < shape.loss:
            stats.lost += 1
            if rtp is not None:
                stats.dropped_rtp.append(rtp)
            return None
        leaves = now
        if shape.rate_bps is not None:
            rate = shape.rate_bps / 8  # bytes per second
            if not self._started:
                self._started, self._tokens_at = True, now
            # FIFO: a packet leaves no earlier than the one before it (``_tokens_at``).
            start = max(now, self._tokens_at)
            tokens = min(float(shape.burst_bytes), self._tokens + (start - self._tokens_at) * rate)
            leaves = start if tokens >= size else start + (size - tokens) / rate
            if leaves - now > shape.queue_seconds:
                stats.overflowed += 1
                if rtp is not None:
                    stats.dropped_rtp.append(rtp)
                return None
            self._tokens = min(float(shape.burst_bytes), tokens + (leaves - start) * rate) - size
            self._tokens_at = leaves
        stats.delivered += 1
        stats.delivered_bytes += size
        if stats.first_delivery is None:
            stats.first_delivery = leaves
        stats.delivered_bytes_by_second[int(leaves - stats.first_delivery)] += size
        return leaves + shape.delay


class _ScheduledPath:
    """A :class:`ShapedPath` on the running loop: datagrams come out in order at their delivery times."""

    def __init__(self, path: ShapedPath) -> None:
        self.path = path
        self._queue: collections.deque[tuple[float, bytes, Callable[[bytes], None]]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, data: bytes, out: Callable[[bytes], None]) -> None:
        if not is_media(data):
            out(data)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        at = self.path.admit(len(data), now, rtp_id(data))
        if at is None:
            return
        if at <= now and not self._queue:
            out(data)
            return
        self._queue.append((at, data, out))
        if self._timer is None:
            self._timer = loop.call_at(at, self._drain)

    def _drain(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        queue = self._queue
        while queue and queue[0][0] <= now:
            _at, data, out = queue.popleft()
            out(data)
        if queue:
            self._timer = loop.call_at(queue[0][0], self._drain)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


class ImpairedLink:
    """Both directions of one client's link; pass it as ``tap`` to ``MediaPeer``/``RoomClient``.

    Implements :class:`vIOP.media.aiortc_internals.DatagramTap`. ``seed`` fixes the loss pattern: the down
    direction draws from ``Random(seed)``, the up direction from ``Random(seed + 1)``.
    """

    def __init__(self, impairment: Impairment, seed: int = 0) -> None:
        self.impairment = impairment
        self.down = ShapedPath(impairment.down, seed)
        self.up = ShapedPath(impairment.up, seed + 1)
        self._down = _ScheduledPath(self.down)
        self._up = _ScheduledPath(self.up)

    def incoming(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        self._down.offer(data, deliver)

    def outgoing(self, data: bytes, send: Callable[[bytes], None]) -> None:
        self._up.offer(data, send)

    def close(self) -> None:
        """Forget datagrams still queued (call when the client leaves)."""
        self._down.close()
        self._up.close()
