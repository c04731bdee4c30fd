"""What a client receives, per remote source, in the terms a browser's ``getStats`` and a person use.

Fed by two observations: every RTP packet that reaches one of the client's receivers
(:meth:`ReceiveStats.packet`, with RTX packets unwrapped to the sequence number they repair) and every frame
the client decodes (:meth:`ReceiveStats.frame`). :meth:`ReceiveStats.report` turns them into
:class:`SourceReport` per ``(publisher, kind)`` over the window since :meth:`ReceiveStats.restart`:

- frames decoded and frame rate;
- freezes: intervals longer than :data:`FREEZE_SECONDS` without a frame (from the window start, between
  frames, and up to the report time: a source that stops counts);
- packets missing on the last hop: sequence numbers never received, neither directly nor by RTX (for at
  least :data:`RECOVERY_WINDOW`), and those repaired by RTX (``recovered_by_rtx``) with the repair delay;
- audio missing end to end: 20 ms frames whose RTP timestamp never arrived, in percent of the timestamps
  spanned (the relay renumbers packets per subscriber but keeps the publisher's timestamps, so this counts
  what was lost on the publisher's hop or dropped by the relay too, as a listener hears it);
- audio gaps: intervals longer than :data:`AUDIO_GAP_SECONDS` without an audio packet;
- payload bytes received per second.

Pure: times come from ``clock``; no aiortc here (``vIOP.client.media`` feeds it).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

FREEZE_SECONDS: Final = 0.5
AUDIO_GAP_SECONDS: Final = 0.2
AUDIO_FRAME_TICKS: Final = 960
"""One 20 ms Opus frame at 48 kHz, the frame size browsers and aiortc send."""
RECOVERY_WINDOW: Final = 1.0
"""A packet missing for less than this at report time may still be repaired: not yet counted missing."""
_MAX_GAP_PACKETS: Final = 3_000
"""A jump in sequence numbers larger than this is a new stream, not a loss (the relay restarted a leg)."""


@dataclass(slots=True)
class SequenceTracker:
    """One RTP stream's sequence numbers: received, missing, repaired by RTX."""

    first: int | None = None  # extended sequence numbers
    highest: int = 0
    received: int = 0
    missing: dict[int, float] = field(default_factory=dict)  # extended seq -> when the gap was seen
    recovered: int = 0
    recovery_delays: list[float] = field(default_factory=list)
    useless_rtx: int = 0  # retransmissions of packets already here

    def _extend(self, sequence: int) -> int:
        base = self.highest & ~0xFFFF
        ext = base | sequence
        if ext - self.highest > 0x8000:
            ext -= 0x10000
        elif self.highest - ext > 0x8000:
            ext += 0x10000
        return ext

    def media(self, sequence: int, now: float) -> None:
        if self.first is None:
            self.first = self.highest = sequence
            self.received = 1
            return
        ext = self._extend(sequence)
        if ext > self.highest:
            if ext - self.highest > _MAX_GAP_PACKETS:
                self.first = ext
            else:
                for lost in range(self.highest + 1, ext):
                    self.missing[lost] = now
            self.highest = ext
            self.received += 1
        elif self.missing.pop(ext, None) is not None:
            self.received += 1  # late, not lost

    def retransmission(self, sequence: int, now: float) -> None:
        if self.first is None:
            return
        noticed = self.missing.pop(self._extend(sequence), None)
        if noticed is None:
            self.useless_rtx += 1
            return
        self.received += 1
        self.recovered += 1
        self.recovery_delays.append(now - noticed)

    @property
    def expected(self) -> int:
        return 0 if self.first is None else self.highest - self.first + 1


@dataclass(slots=True)
class SourceStats:
    """Everything seen of one (publisher, kind) since the window started."""

    since: float
    frames: int = 0
    last_frame: float | None = None
    frame_freezes: int = 0
    frozen_seconds: float = 0.0  # summed length of the freezes
    longest_frame_gap: float = 0.0
    packets: int = 0
    payload_bytes: int = 0
    last_packet: float | None = None
    packet_gaps: int = 0  # intervals > AUDIO_GAP_SECONDS between packets
    longest_packet_gap: float = 0.0
    streams: dict[int, SequenceTracker] = field(default_factory=dict)  # by media SSRC
    latest_ssrc: int | None = None
    first_timestamp: int | None = None
    timestamps: set[int] = field(default_factory=set)  # audio: unwrapped, relative to the first

    def audio_timestamp(self, timestamp: int) -> None:
        if self.first_timestamp is None:
            self.first_timestamp = timestamp
        offset = (timestamp - self.first_timestamp) & 0xFFFFFFFF
        if offset >= 0x80000000:
            offset -= 0x100000000
        self.timestamps.add(offset)


@dataclass(frozen=True, slots=True)
class SourceReport:
    publisher: str
    kind: str
    seconds: float
    frames: int
    frame_rate: float
    freezes: int  # > FREEZE_SECONDS without a frame
    frozen_seconds: float  # their summed length
    longest_freeze: float
    packets: int
    packets_missing: int  # on the last hop, after RTX
    missing_percent: float  # audio: 20 ms frames missing end to end; video: of the last hop's packets
    recovered_by_rtx: int
    recovery_median_ms: float | None
    useless_rtx: int
    audio_gaps: int  # > AUDIO_GAP_SECONDS without a packet (audio sources only; 0 for video)
    bytes_per_second: float

    @property
    def lost_video_recovered_percent(self) -> float | None:
        """Of the packets this receiver lost, the share RTX repaired (None when nothing was lost)."""
        lost = self.recovered_by_rtx + self.packets_missing
        return None if lost == 0 else 100.0 * self.recovered_by_rtx / lost


class ReceiveStats:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.window_start = clock()
        self.sources: dict[tuple[str, str], SourceStats] = {}

    def restart(self) -> None:
        """Start a new window (e.g. after warm-up): everything seen so far is forgotten."""
        self.window_start = self.clock()
        self.sources = {}

    def _source(self, publisher: str, kind: str) -> SourceStats:
        source = self.sources.get((publisher, kind))
        if source is None:
            # Freezes count from the window start: a source that took 2 s to show its first frame froze.
            source = self.sources[(publisher, kind)] = SourceStats(since=self.window_start)
        return source

    def frame(self, publisher: str, kind: str) -> None:
        now = self.clock()
        source = self._source(publisher, kind)
        gap = now - (source.since if source.last_frame is None else source.last_frame)
        if gap > FREEZE_SECONDS:
            source.frame_freezes += 1
            source.frozen_seconds += gap
        source.longest_frame_gap = max(source.longest_frame_gap, gap)
        source.last_frame = now
        source.frames += 1

    def packet(
        self,
        publisher: str,
        kind: str,
        ssrc: int,
        sequence: int,
        timestamp: int,
        payload_bytes: int,
        repairs: int | None,
    ) -> None:
        """An RTP packet; ``repairs`` is the original sequence number when it is an RTX packet."""
        now = self.clock()
        source = self._source(publisher, kind)
        source.packets += 1
        source.payload_bytes += payload_bytes
        if repairs is not None:
            if source.latest_ssrc is not None:
                source.streams[source.latest_ssrc].retransmission(repairs, now)
            return
        if source.last_packet is not None:
            gap = now - source.last_packet
            if gap > AUDIO_GAP_SECONDS:
                source.packet_gaps += 1
            source.longest_packet_gap = max(source.longest_packet_gap, gap)
        source.last_packet = now
        tracker = source.streams.get(ssrc)
        if tracker is None:
            tracker = source.streams[ssrc] = SequenceTracker()
        source.latest_ssrc = ssrc
        tracker.media(sequence, now)
        if kind == "audio":
            source.audio_timestamp(timestamp)

    def report(self) -> dict[tuple[str, str], SourceReport]:
        now = self.clock()
        return {key: self._report(key, source, now) for key, source in self.sources.items()}

    def _report(self, key: tuple[str, str], source: SourceStats, now: float) -> SourceReport:
        publisher, kind = key
        seconds = max(now - self.window_start, 1e-9)
        trailing = now - (source.since if source.last_frame is None else source.last_frame)
        freezes = source.frame_freezes + (trailing > FREEZE_SECONDS)
        trackers = list(source.streams.values())
        settled = now - RECOVERY_WINDOW
        missing = sum(1 for t in trackers for noticed in t.missing.values() if noticed <= settled)
        expected = sum(t.expected for t in trackers)
        missing_percent = 100.0 * missing / expected if expected else 0.0
        if kind == "audio" and source.timestamps:
            span = (max(source.timestamps) - min(source.timestamps)) // AUDIO_FRAME_TICKS + 1
            missing_percent = 100.0 * max(0, span - len(source.timestamps)) / span
        delays = [d for t in trackers for d in t.recovery_delays]
        audio_gaps = 0
        if kind == "audio" and source.last_packet is not None:
            audio_gaps = source.packet_gaps + (now - source.last_packet > AUDIO_GAP_SECONDS)
        return SourceReport(
            publisher=publisher,
            kind=kind,
            seconds=seconds,
            frames=source.frames,
            frame_rate=source.frames / seconds,
            freezes=freezes,
            frozen_seconds=source.frozen_seconds + (trailing if trailing > FREEZE_SECONDS else 0.0),
            longest_freeze=max(source.longest_frame_gap, trailing),
            packets=source.packets,
            packets_missing=missing,
            missing_percent=missing_percent,
            recovered_by_rtx=sum(t.recovered for t in trackers),
            recovery_median_ms=1000 * statistics.median(delays) if delays else None,
            useless_rtx=sum(t.useless_rtx for t in trackers),
            audio_gaps=audio_gaps,
            bytes_per_second=source.payload_bytes / seconds,
        )
