"""The publisher hop's receive path: RTP packets from a publisher in, frames for its :class:`Source` out.

aiortc's receiver would put every packet through its jitter buffer: 16 packets with a prefetch of 4 for
audio (a lost packet stalls it, then it throws away the frames it held: 2-3 % loss upstream became
8.6-15 % missing audio), 512 packets for video (it waits behind a lost packet until a *new* gap makes its
NACK generator ask again: 1.0-4.5 s freezes). vIOP owns this path instead (``aiortc_internals.install_ingress``
hands it each packet after SRTP, RTX unwrapping and receiver statistics):

- :class:`AudioIngress`: every Opus packet goes to the subscribers as it arrives (Opus needs no
  reassembly); the RTP timestamp is kept, so a lost packet is a timestamp gap the subscriber's own jitter
  buffer conceals. Duplicates and packets older than the newest one forwarded are dropped: the subscriber
  legs renumber sequence numbers, so a packet sent after a newer one would reach them as time going back.
- :class:`Vp8Assembler`: complete VP8 frames in order. A lost packet is NACKed at once and again every
  round trip (:class:`NackScheduler`) until it arrives or the frame has waited :meth:`NackPolicy.wait` (a
  bound from the measured RTT); then the frames behind it are dropped up to the next keyframe and one is
  requested. A complete keyframe further on ends any wait at once.

Pure: no aiortc, no I/O; times are passed in (``now``, seconds on one monotonic clock) and the round-trip
time comes from a callable, so tests drive it with byte fixtures and an injected clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from vIOP.media.frames import EncodedFrame, FrameSink, time_base

VIDEO_CLOCK_RATE: Final = 90_000
OPUS_CLOCK_RATE: Final = 48_000
# A jump this far (in packets, either way) is a restarted stream, not loss or reordering.
RESTART_DISTANCE: Final = 1000
# Video packets held at most (about 4 s at 30 fps and 500 kbit/s): beyond it the head is given up.
MAX_HELD: Final = 512

NackSink = Callable[[list[int]], None]
"""Receives 16-bit sequence numbers to NACK now."""
KeyframeRequest = Callable[[], None]
RoundTrip = Callable[[], float | None]
"""The measured round-trip time to the publisher in seconds, None while unknown."""


def _unwrap16(value: int, reference: int) -> int:
    """The extended sequence number closest to ``reference`` whose low 16 bits are ``value``."""
    diff = (value - reference) & 0xFFFF
    return reference + (diff - 0x10000 if diff >= 0x8000 else diff)


def _unwrap32(value: int, reference: int) -> int:
    """The extended timestamp closest to ``reference`` whose low 32 bits are ``value``."""
    diff = (value - reference) & 0xFFFFFFFF
    return reference + (diff - 0x1_0000_0000 if diff >= 0x8000_0000 else diff)


class _Timeline:
    """RTP timestamps as a pts starting at 0, wraps unwrapped; a restart continues one step after the last."""

    __slots__ = ("_last", "_origin")

    def __init__(self) -> None:
        self._origin: int | None = None
        self._last = 0  # extended timestamp of the last call

    def pts(self, timestamp: int) -> int:
        if self._origin is None:
            self._origin = self._last = timestamp
            return 0
        self._last = _unwrap32(timestamp, self._last)
        return self._last - self._origin

    def restart(self, timestamp: int, step: int) -> None:
        """The stream restarted with ``timestamp``: it follows the last pts by ``step``."""
        if self._origin is None:
            return
        last_pts = self._last - self._origin
        self._last = timestamp
        self._origin = timestamp - last_pts - step


# --- audio -----------------------------------------------------------------------------------------------


class AudioIngress:
    """Forwards each Opus packet as one frame the moment it arrives (no jitter buffer, nothing waits)."""

    __slots__ = ("_highest", "_sink", "_time_base", "_timeline", "dropped", "forwarded")

    def __init__(self, sink: FrameSink, clock_rate: int = OPUS_CLOCK_RATE) -> None:
        self._sink = sink
        self._time_base = time_base(clock_rate)
        self._timeline = _Timeline()
        self._highest: int | None = None  # extended sequence number of the newest packet forwarded
        self.forwarded = 0
        self.dropped = 0  # duplicates, out-of-order and empty packets

    def add(self, sequence_number: int, timestamp: int, data: bytes, audio_level: int | None = None) -> None:
        if not data:  # nothing to play (an empty payload is not an Opus frame)
            self.dropped += 1
            return
        highest = self._highest
        if highest is None:
            self._highest = sequence_number
        else:
            ext = _unwrap16(sequence_number, highest)
            if ext <= highest:
                if highest - ext < RESTART_DISTANCE:
                    self.dropped += 1
                    return
                self._timeline.restart(timestamp, 960)
            elif ext - highest >= RESTART_DISTANCE:
                self._timeline.restart(timestamp, 960)
            self._highest = ext
        self.forwarded += 1
        self._sink(EncodedFrame(data, self._timeline.pts(timestamp), self._time_base, True, audio_level))


# --- NACK --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NackPolicy:
    """How hard to ask again, and how long a frame may wait for a lost packet, from the RTT.

    libwebrtc re-NACKs once per RTT; here the interval is ``retry_rtts`` RTTs (the publisher's event loop
    adds to the network RTT), never more often than ``min_retry``. The wait bound leaves room for
    ``wait_rtts`` round trips plus ``wait_margin``, within [``min_wait``, ``max_wait``]: on a LAN a lost
    retransmission costs one more NACK of some tens of milliseconds, not a freeze.
    """

    default_rtt: float = 0.1  # until RTCP has measured one
    retry_rtts: float = 1.5
    min_retry: float = 0.02
    max_tries: int = 10
    wait_rtts: float = 4.0
    wait_margin: float = 0.1
    min_wait: float = 0.25
    max_wait: float = 1.0

    def retry_interval(self, rtt: float | None) -> float:
        return max(self.min_retry, self.retry_rtts * (self.default_rtt if rtt is None else rtt))

    def wait(self, rtt: float | None) -> float:
        rtt = self.default_rtt if rtt is None else rtt
        return min(self.max_wait, max(self.min_wait, self.wait_rtts * rtt + self.wait_margin))


class _Missing:
    __slots__ = ("first_seen", "last_sent", "tries")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.last_sent = now
        self.tries = 1


class NackScheduler:
    """Which lost packets (extended sequence numbers) to NACK, and when again."""

    __slots__ = ("_oldest_sent", "_policy", "missing", "sent")

    def __init__(self, policy: NackPolicy) -> None:
        self._policy = policy
        self.missing: dict[int, _Missing] = {}  # by extended sequence number (read-only outside)
        self._oldest_sent: float | None = None  # earliest last NACK among those that may be asked again
        self.sent = 0  # sequence numbers NACKed, retries included

    def __contains__(self, ext: int) -> bool:
        return ext in self.missing

    def __len__(self) -> int:
        return len(self.missing)

    def lost(self, first: int, end: int, now: float) -> list[int]:
        """Packets ``first`` .. ``end - 1`` are missing (detected now): returns them, to NACK at once."""
        missing = self.missing
        for ext in range(first, end):
            missing[ext] = _Missing(now)
        if self._oldest_sent is None:
            self._oldest_sent = now
        self.sent += end - first
        return list(range(first, end))

    def arrived(self, ext: int) -> None:
        if self.missing.pop(ext, None) is not None and not self.missing:
            self._oldest_sent = None

    def first_seen(self, ext: int) -> float | None:
        entry = self.missing.get(ext)
        return None if entry is None else entry.first_seen

    def forget_before(self, ext: int) -> None:
        """Packets before ``ext`` no longer matter (their frames were dropped)."""
        for old in [e for e in self.missing if e < ext]:
            del self.missing[old]
        self._oldest_sent = self._earliest_retry()

    def next_due(self, rtt: float | None) -> float | None:
        oldest = self._oldest_sent
        return None if oldest is None else oldest + self._policy.retry_interval(rtt)

    def due(self, now: float, rtt: float | None) -> list[int]:
        """Packets to NACK again now (each at most every retry interval, at most ``max_tries`` times)."""
        oldest = self._oldest_sent
        if oldest is None:
            return []
        interval = self._policy.retry_interval(rtt)
        if now < oldest + interval:
            return []
        max_tries = self._policy.max_tries
        again: list[int] = []
        for ext, entry in self.missing.items():
            if entry.tries < max_tries and now - entry.last_sent >= interval:
                entry.last_sent = now
                entry.tries += 1
                again.append(ext)
        self._oldest_sent = self._earliest_retry()
        self.sent += len(again)
        return again

    def _earliest_retry(self) -> float | None:
        max_tries = self._policy.max_tries
        times = [e.last_sent for e in self.missing.values() if e.tries < max_tries]
        return min(times) if times else None


# --- video -------------------------------------------------------------------------------------------------


def vp8_frame_start(payload: bytes) -> bool:
    """RFC 7741 payload descriptor: S bit set and partition index 0, i.e. the first packet of a frame."""
    return bool(payload) and payload[0] & 0x17 == 0x10


class _Packet:
    __slots__ = ("data", "keyframe", "marker", "start", "timestamp")

    def __init__(self, timestamp: int, marker: bool, start: bool, data: bytes) -> None:
        self.timestamp = timestamp
        self.marker = marker
        self.start = start
        # RFC 6386 section 9.1: bit 0 of the first byte of a frame is 0 for a key frame.
        self.keyframe = start and bool(data) and not data[0] & 0x01
        self.data = data


class Vp8Assembler:
    """Complete VP8 frames, in order, from a publisher's packets; never waits longer than the policy says.

    ``head`` is the first packet not yet emitted or dropped; ``scan`` the first one after it not yet seen
    present (the frame at the head is complete when ``scan`` reaches a marker). A gap at ``scan`` below the
    highest packet received is a loss: NACKed, retried, and given up after the wait bound.
    """

    def __init__(
        self,
        sink: FrameSink,
        nack: NackSink,
        request_keyframe: KeyframeRequest,
        rtt: RoundTrip,
        policy: NackPolicy | None = None,
    ) -> None:
        self._sink = sink
        self._nack = nack
        self._request_keyframe = request_keyframe
        self._rtt = rtt
        self._policy = policy or NackPolicy()
        self._nacks = NackScheduler(self._policy)
        self._packets: dict[int, _Packet] = {}
        self._head: int | None = None
        self._scan = 0
        self._highest = 0
        self._need_keyframe = False
        self._time_base = time_base(VIDEO_CLOCK_RATE)
        self._timeline = _Timeline()
        self.frames_out = 0
        self.frames_dropped = 0  # complete frames that could not be decoded (after a give-up)
        self.gave_up = 0  # waits that ended without the lost packet
        self.late = 0  # duplicates and packets for frames already emitted or dropped

    @property
    def nacks_sent(self) -> int:
        return self._nacks.sent

    @property
    def waiting(self) -> bool:
        """A loss holds the frames behind it."""
        return self._head is not None and self._scan <= self._highest and self._scan not in self._packets

    def next_wakeup(self) -> float | None:
        """When :meth:`tick` has work (a NACK retry or the end of a wait); None: nothing pending."""
        if self._head is None or (self._scan > self._highest and not self._nacks.missing):
            return None  # nothing missing (the cheap answer, once per packet)
        rtt = self._rtt()
        due = self._nacks.next_due(rtt)
        if self.waiting:
            seen = self._nacks.first_seen(self._scan)
            if seen is not None:
                deadline = seen + self._policy.wait(rtt)
                due = deadline if due is None else min(due, deadline)
        return due

    def add(
        self, sequence_number: int, timestamp: int, marker: bool, start: bool, data: bytes, now: float
    ) -> bool:
        """One packet (``start``: :func:`vp8_frame_start` of its payload; ``data``: the payload after the
        descriptor). True while a packet is missing (then :meth:`next_wakeup` says when to :meth:`tick`)."""
        head = self._head
        highest = self._highest
        if head is not None and (sequence_number - highest) & 0xFFFF == 1:
            ext = self._highest = highest + 1  # the common case: the next packet, in order
        elif head is None:
            self._head = self._scan = self._highest = head = ext = sequence_number
        else:
            ext = _unwrap16(sequence_number, highest)
            if ext < head or ext in self._packets:
                if head - ext < RESTART_DISTANCE:
                    self.late += 1
                    return bool(self._nacks.missing)
                self._restart(ext, timestamp)
                head = ext
            elif ext - highest >= RESTART_DISTANCE:
                self._restart(ext, timestamp)
                head = ext
            elif ext > highest:
                lost = self._nacks.lost(highest + 1, ext, now)
                self._nack([e & 0xFFFF for e in lost])
                self._highest = ext
            else:
                self._nacks.arrived(ext)
        self._packets[ext] = _Packet(timestamp, marker, start, data)
        if ext - head >= MAX_HELD:
            self._give_up(self._scan)
        self._drain(now)
        if self._nacks.missing:
            self._retry(now)
            return True
        return False

    def tick(self, now: float) -> None:
        """The clock moved (timer): NACK again what is due, end a wait that has lasted too long."""
        self._drain(now)
        self._retry(now)

    def _retry(self, now: float) -> None:
        again = self._nacks.due(now, self._rtt())
        if again:
            self._nack([e & 0xFFFF for e in again])

    def _restart(self, ext: int, timestamp: int) -> None:
        """The publisher's stream restarted (sequence numbers jumped): start over at a keyframe."""
        self._packets.clear()
        self._nacks.forget_before(ext + 1)
        self._head = self._scan = self._highest = ext
        self._timeline.restart(timestamp, VIDEO_CLOCK_RATE // 30)
        self._wait_for_keyframe()

    def _wait_for_keyframe(self) -> None:
        self._need_keyframe = True
        self._request_keyframe()

    def _drain(self, now: float) -> None:
        packets = self._packets
        head = self._head
        if head is None:
            return
        scan = self._scan
        while True:
            packet = packets.get(scan)
            if packet is not None:
                first = packets[head]
                if scan == head and not packet.start:
                    del packets[head]  # the rest of a frame whose start was dropped
                    head = scan = head + 1
                    continue
                if packet.timestamp != first.timestamp:  # a frame ended without its marker
                    self._emit(head, scan)
                    head = scan
                    continue
                if packet.marker:
                    self._emit(head, scan + 1)
                    head = scan = scan + 1
                    continue
                scan += 1
                continue
            if scan > self._highest:
                break  # the rest of the frame has not been sent yet: not a loss
            self._head, self._scan = head, scan
            if not self._unblock(now):
                return
            head, scan = self._head, self._scan
        self._head, self._scan = head, scan

    def _emit(self, head: int, end: int) -> None:
        """Packets ``head`` .. ``end - 1`` are one complete frame."""
        packets = self._packets
        first = packets[head]
        if self._need_keyframe and not first.keyframe:
            for ext in range(head, end):
                del packets[ext]
            self.frames_dropped += 1
            return
        self._need_keyframe = False
        data = (
            packets.pop(head).data
            if end == head + 1
            else b"".join([packets.pop(e).data for e in range(head, end)])
        )
        self.frames_out += 1
        self._sink(EncodedFrame(data, self._timeline.pts(first.timestamp), self._time_base, first.keyframe))

    def _unblock(self, now: float) -> bool:
        """A loss at ``scan`` holds the head: True if the head moved (drain again), False to keep waiting."""
        lost = self._scan
        keyframe = self._complete_keyframe_after(lost)
        if keyframe is not None:
            self._skip_to(keyframe)
            return True
        head_packet = self._packets.get(self._head)  # type: ignore[arg-type]
        if self._need_keyframe:
            # Only a keyframe helps now; wait (bounded) only if the lost packet may belong to one.
            if head_packet is not None:
                maybe_keyframe = head_packet.keyframe
            else:
                after = self._next_present(lost)
                maybe_keyframe = after is not None and not self._packets[after].start
            if not maybe_keyframe:
                self._skip_past(lost)
                return True
        seen = self._nacks.first_seen(lost)
        if seen is None:  # not tracked (NACKing gave up or never started): the wait ends now
            seen = now - self._policy.max_wait
        if now - seen < self._policy.wait(self._rtt()):
            return False
        self.gave_up += 1
        self._give_up(lost)
        return True

    def _give_up(self, lost: int) -> None:
        """Drop the frames that depend on ``lost``: skip to the next frame start and ask for a keyframe."""
        self._skip_past(lost)
        self._wait_for_keyframe()

    def _skip_past(self, lost: int) -> None:
        nxt = self._next_present(lost)
        while nxt is not None and not self._packets[nxt].start:
            nxt = self._next_present(nxt)
        self._skip_to(self._highest + 1 if nxt is None else nxt)

    def _skip_to(self, ext: int) -> None:
        packets = self._packets
        head = self._head
        assert head is not None
        for old in range(head, ext):
            packets.pop(old, None)
        self._head = self._scan = ext
        self._nacks.forget_before(ext)

    def _next_present(self, ext: int) -> int | None:
        for candidate in range(ext + 1, self._highest + 1):
            if candidate in self._packets:
                return candidate
        return None

    def _complete_keyframe_after(self, lost: int) -> int | None:
        """The first keyframe after ``lost`` that has all its packets (decoding can restart there)."""
        packets = self._packets
        for start in range(lost + 1, self._highest + 1):
            packet = packets.get(start)
            if packet is None or not packet.keyframe:
                continue
            ext = start
            while True:
                p = packets.get(ext)
                if p is None or p.timestamp != packet.timestamp:
                    break
                if p.marker:
                    return start
                ext += 1
        return None
