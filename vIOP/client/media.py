"""The media half of the Python client: publish synthetic or pre-encoded tracks, count received frames.

Independent of the wire: :class:`MediaPeer` takes and returns SDP strings; whoever owns the signaling
socket carries them. Received frames are attributed to publishers by the ``a=msid`` stream id of the
server's m-lines (the relay puts the publisher's participant id there).

Every receiver (except in ``PACKETS`` mode) also feeds :class:`~vIOP.client.receive_stats.ReceiveStats`
(``MediaPeer.stats``): frames, freezes, missing packets, RTX repairs, audio gaps and bytes per remote
source, what a browser's getStats shows. aiortc 1.16 drops RTX on a connection with several video streams; every receiver here gets
``route_rtx_by_ssrc`` so a client in a group repairs its losses as a browser does, and NACKs as a browser
does (:mod:`vIOP.client.nacks`).

Receive modes: ``DECODE`` decodes every frame (proves the stream is decodable; tests); ``ENCODED`` counts
complete encoded frames from aiortc's jitter buffer without decoding; ``PACKETS`` counts RTP packets (a
video frame ends with the marker bit) and skips the jitter buffer too (benchmarks, cheapest).
"""

from __future__ import annotations

import asyncio
import enum
import fractions
import math
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import av
from aiortc import (
    AudioStreamTrack,
    MediaStreamError,
    MediaStreamTrack,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from av.video.frame import PictureType

from vIOP.client.nacks import PacedNacks
from vIOP.client.receive_stats import ReceiveStats, SourceReport
from vIOP.client.simulcast import SimulcastLayer, SimulcastSender, with_simulcast
from vIOP.media.aiortc_internals import (
    DatagramTap,
    close_peer_connection,
    install_encoded_output,
    install_packet_counter,
    observe_received_rtp,
    on_keyframe_request,
    replace_nack_generator,
    route_rtx_by_ssrc,
    skip_empty_frames,
    tap_datagrams,
)
from vIOP.media.codec_plan import restrict_codecs
from vIOP.media.frames import EncodedFrame, is_vp8_keyframe
from vIOP.media.ice_gathering import advertising, peer_configuration
from vIOP.media.rtp import starts_vp8_keyframe
from vIOP.media.sdp import SdpSummary, summarize_sdp

VIDEO_CLOCK: Final = 90_000
VIDEO_TIME_BASE: Final = fractions.Fraction(1, VIDEO_CLOCK)
OPUS_TIME_BASE: Final = fractions.Fraction(1, 48_000)
OPUS_FRAME_SAMPLES: Final = 960  # 20 ms
CLOSE_TIMEOUT: Final = 5.0  # a close cut short still stops every receiver (close_peer_connection)


class ReceiveMode(enum.Enum):
    DECODE = "decode"
    ENCODED = "encoded"
    PACKETS = "packets"


# --- counting ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class StreamCount:
    frames: int = 0
    first_at: float | None = None
    last_at: float | None = None
    longest_gap: float = 0.0  # the longest time between two frames (since the last reset_gaps)


@dataclass(slots=True)
class FrameCounter:
    """Frames received per (publisher, kind); times from ``clock`` (monotonic seconds). ``also``: another
    counter every frame is counted in too (a second peer connection's own count, and the participant's)."""

    clock: Callable[[], float] = time.monotonic
    streams: dict[tuple[str, str], StreamCount] = field(default_factory=dict)
    also: FrameCounter | None = None

    def add(self, publisher: str, kind: str, frames: int = 1) -> None:
        count = self.streams.get((publisher, kind))
        if count is None:
            count = self.streams[(publisher, kind)] = StreamCount()
        now = self.clock()
        if count.first_at is None:
            count.first_at = now
        elif count.last_at is not None:
            count.longest_gap = max(count.longest_gap, now - count.last_at)
        count.last_at = now
        count.frames += frames
        if self.also is not None:
            self.also.add(publisher, kind, frames)

    def reset_gaps(self) -> None:
        for count in self.streams.values():
            count.longest_gap = 0.0

    def longest_gap(self, publisher: str, kind: str, now: float | None = None) -> float:
        """The longest time without a frame from ``publisher`` since the last reset, the silence up to
        ``now`` included when given."""
        count = self.streams.get((publisher, kind))
        if count is None:
            return float("inf")
        silence = (now - count.last_at) if now is not None and count.last_at is not None else 0.0
        return max(count.longest_gap, silence)

    def recent_publishers(self, kind: str, within: float) -> set[str]:
        """Publishers of ``kind`` with a frame in the last ``within`` seconds."""
        now = self.clock()
        return {
            p
            for (p, k), c in self.streams.items()
            if k == kind and c.last_at is not None and now - c.last_at <= within
        }

    def frames(self, publisher: str, kind: str) -> int:
        count = self.streams.get((publisher, kind))
        return 0 if count is None else count.frames

    def publishers(self, kind: str) -> set[str]:
        return {p for (p, k), c in self.streams.items() if k == kind and c.frames}


# --- tracks ------------------------------------------------------------------------------------------------


class _Pacer:
    """Releases frame n at start + n * interval (monotonic), like a camera would."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._start: float | None = None
        self._n = 0

    async def next(self) -> int:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._n += 1
            delay = self._start + self._n * self._interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        return self._n


def synthetic_frame(width: int, height: int, n: int) -> av.VideoFrame:
    """A moving diagonal gradient (cheap to build without numpy, cheap to encode, clearly not static)."""
    frame = av.VideoFrame(width, height, "yuv420p")
    luma, chroma_u, chroma_v = frame.planes
    row = bytes((x + 4 * n) & 0xFF for x in range(luma.line_size + height))
    luma.update(b"".join(row[y : y + luma.line_size] for y in range(height)))
    chroma_u.update(bytes([(n * 3) & 0xFF]) * chroma_u.buffer_size)
    chroma_v.update(bytes([128]) * chroma_v.buffer_size)
    return frame


def _vp8_encoder(width: int, height: int, fps: int, bitrate: int, gop: int) -> av.VideoCodecContext:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = bitrate
    codec.framerate = fractions.Fraction(fps, 1)
    codec.time_base = fractions.Fraction(1, fps)
    codec.gop_size = gop
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "auto-alt-ref": "0"}
    return codec


class KeyframeOnRequestVideoTrack(MediaStreamTrack):
    """Encodes live VP8 itself and emits a keyframe only first and when asked (like a strict browser).

    aiortc's own encoder also emits keyframes whenever the bitrate moves, which would hide a relay that
    never forwards keyframe requests; this track does not.
    """

    kind = "video"

    def __init__(self, width: int = 320, height: int = 180, fps: int = 15, bitrate: int = 300_000) -> None:
        super().__init__()
        self._codec = _vp8_encoder(width, height, fps, bitrate, gop=1_000_000)
        self._size = (width, height)
        self._fps = fps
        self._pacer = _Pacer(1 / fps)
        self._force = False
        self.keyframes_sent = 0
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._force = True

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        n = await self._pacer.next()
        frame = synthetic_frame(*self._size, n)
        frame.pts = n
        if self._force:
            self._force = False
            frame.pict_type = PictureType.I
        data = b"".join(bytes(p) for p in self._codec.encode(frame))
        keyframe = is_vp8_keyframe(data)
        self.keyframes_sent += keyframe
        return EncodedFrame(data, n * VIDEO_CLOCK // self._fps, VIDEO_TIME_BASE, keyframe)


@dataclass(frozen=True, slots=True)
class EncodedClip:
    """Media encoded once, replayed by :class:`PreEncodedTrack` (benchmarks measure the relay, not x264)."""

    kind: str
    frames: tuple[bytes, ...]
    pts_step: int  # in time_base units per frame
    time_base: fractions.Fraction
    interval: float  # seconds per frame


def encode_video_clip(
    width: int, height: int, fps: int, seconds: float, bitrate: int = 500_000
) -> EncodedClip:
    """One keyframe first, then deltas; looping restarts at the keyframe."""
    codec = _vp8_encoder(width, height, fps, bitrate, gop=1_000_000)
    frames = []
    for n in range(max(1, round(fps * seconds))):
        frame = synthetic_frame(width, height, n)
        frame.pts = n
        frames.append(b"".join(bytes(p) for p in codec.encode(frame)))
    return EncodedClip("video", tuple(frames), VIDEO_CLOCK // fps, VIDEO_TIME_BASE, 1 / fps)


def encode_opus_clip(seconds: float, bitrate: int = 32_000) -> EncodedClip:
    """20 ms Opus frames of a quiet 440 Hz tone, 48 kHz stereo, averaging ``bitrate`` (as a browser's voice
    does: Chrome's Opus target is 32 kbit/s)."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = 48_000, "stereo", "s16"
    codec.bit_rate = bitrate
    # Constrained VBR: unconstrained, libopus codes this steady tone at 1.5x the target (48 kbit/s for 32),
    # and four such voices are more than a 250 kbit/s link carries before any video.
    codec.options = {"vbr": "constrained"}
    codec.time_base = OPUS_TIME_BASE
    packets: list[bytes] = []
    for n in range(max(1, round(seconds * 50))):
        start = n * OPUS_FRAME_SAMPLES
        pcm = b"".join(
            struct.pack("<hh", v, v)
            for v in (int(2000 * math.sin(2 * math.pi * 440 * (start + i) / 48_000)) for i in range(960))
        )
        frame = av.AudioFrame(format="s16", layout="stereo", samples=OPUS_FRAME_SAMPLES)
        frame.planes[0].update(pcm.ljust(frame.planes[0].buffer_size, b"\0"))
        frame.sample_rate = 48_000
        frame.pts = start
        frame.time_base = OPUS_TIME_BASE
        packets += [bytes(p) for p in codec.encode(frame)]
    return EncodedClip("audio", tuple(packets), OPUS_FRAME_SAMPLES, OPUS_TIME_BASE, 0.02)


class PreEncodedTrack(MediaStreamTrack):
    """Replays an :class:`EncodedClip` in a loop at its frame rate; a keyframe request restarts the clip."""

    def __init__(self, clip: EncodedClip) -> None:
        super().__init__()
        self.kind = clip.kind
        self._clip = clip
        self._pacer = _Pacer(clip.interval)
        self._index = 0
        self.frames_sent = 0
        self.keyframe_requests = 0
        self.keyframes_sent = 0  # including the clip's own first frame on every loop

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._index = 0

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        n = await self._pacer.next()
        frames = self._clip.frames
        data = frames[self._index % len(frames)]
        self._index = (self._index + 1) % len(frames)
        self.frames_sent += 1
        keyframe = is_vp8_keyframe(data) if self.kind == "video" else True
        self.keyframes_sent += keyframe and self.kind == "video"
        return EncodedFrame(data, n * self._clip.pts_step, self._clip.time_base, keyframe)


class SyntheticVideoTrack(MediaStreamTrack):
    """Raw frames for aiortc's own VP8 encoder to encode (a plain camera stand-in)."""

    kind = "video"

    def __init__(self, width: int = 160, height: int = 120, fps: int = 15) -> None:
        super().__init__()
        self._size = (width, height)
        self._fps = fps
        self._pacer = _Pacer(1 / fps)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = await self._pacer.next()
        frame = synthetic_frame(*self._size, n)
        frame.pts = n * VIDEO_CLOCK // self._fps
        frame.time_base = VIDEO_TIME_BASE
        return frame


def silent_audio_track() -> MediaStreamTrack:
    return AudioStreamTrack()


class ToneAudioTrack(AudioStreamTrack):
    """Silence, or a 440 Hz tone while :attr:`speaking` (a participant who talks when told to).

    Raw frames: aiortc's own Opus encoder sends them, and its sender puts each frame's RFC 6464 level in
    the audio-level header extension (it does so for raw frames only, never for pre-encoded ones).
    """

    def __init__(self, amplitude: int = 8000) -> None:
        super().__init__()
        self.speaking = False
        self._tone = b"".join(
            struct.pack("<h", int(amplitude * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(160)
        )  # 20 ms at aiortc's 8 kHz, a whole number of cycles: frames join without a click

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        assert isinstance(frame, av.AudioFrame)
        if self.speaking:
            frame.planes[0].update(self._tone)
        return frame


# --- the peer ----------------------------------------------------------------------------------------------


class MediaPeer:
    """A client's single peer connection to the relay: it offers first (publishing), then answers."""

    def __init__(
        self,
        *,
        ice_servers: Sequence[RTCIceServer] = (),
        host_addresses: Sequence[str] = (),
        receive: ReceiveMode = ReceiveMode.DECODE,
        counter: FrameCounter | None = None,
        tap: DatagramTap | None = None,
        browser_nacks: bool = True,
    ) -> None:
        """``tap``: put this object in the connection's UDP path (tests and benchmarks impair links).

        ``browser_nacks``: video receivers NACK as browsers do (:class:`~vIOP.client.nacks.PacedNacks`);
        False keeps aiortc's own NACKs.
        """
        self.pc = RTCPeerConnection(peer_configuration(ice_servers))
        self._tap = tap
        self._browser_nacks = browser_nacks
        self.counter = counter or FrameCounter()
        self.stats = ReceiveStats(self.counter.clock)
        self._hosts = tuple(host_addresses)
        self._mode = receive
        self._publisher_by_mid: dict[str, str] = {}
        self._rtx_pts: set[int] = set()
        self._seen: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # DECODE mode: publisher -> [(frames decoded before it, (width, height))], one entry per size change
        self.video_sizes: dict[str, list[tuple[int, tuple[int, int]]]] = {}
        self.simulcast: SimulcastSender | None = None

    def publish(self, *tracks: MediaStreamTrack) -> None:
        """Add tracks to send (before :meth:`create_offer`); encoded tracks get keyframe requests routed."""
        for track in tracks:
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            restrict_codecs(transceiver)
            request = getattr(track, "request_keyframe", None)
            if callable(request):
                on_keyframe_request(transceiver.sender, request)
            self._seen.add(id(transceiver))

    def publish_simulcast(self, layers: Sequence[SimulcastLayer]) -> None:
        """Send video as simulcast, one encoding per layer (best first), as a browser's ``sendEncodings``
        do (before :meth:`create_offer`; see ``vIOP.client.simulcast``)."""
        transceiver = self.pc.addTransceiver("video", direction="sendonly")
        restrict_codecs(transceiver)
        self._seen.add(id(transceiver))
        self.simulcast = SimulcastSender(self.pc, transceiver, layers)

    async def create_offer(self) -> str:
        offer = await self.pc.createOffer()
        with advertising(self._hosts):
            await self.pc.setLocalDescription(offer)
        self._tap_transports()
        sdp = str(self.pc.localDescription.sdp)
        return sdp if self.simulcast is None else with_simulcast(sdp, self.simulcast.rids)

    def _tap_transports(self) -> None:
        if self._tap is not None:
            tap_datagrams(self.pc, self._tap)

    def receive_only(self, *kinds: str) -> None:
        """Offer ``recvonly`` m-lines (a participant without camera or microphone, or a benchmark viewer)."""
        for kind in kinds:
            restrict_codecs(self.pc.addTransceiver(kind, direction="recvonly"))

    async def accept_answer(self, sdp: str) -> None:
        self._learn(summarize_sdp(sdp))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self._count_new_transceivers()
        if self.simulcast is not None:
            self.simulcast.start()

    async def accept_offer(self, sdp: str) -> str:
        """A server (re)negotiation offer: start counting on new m-lines, return our answer."""
        self._learn(summarize_sdp(sdp))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self._count_new_transceivers()
        answer = await self.pc.createAnswer()
        with advertising(self._hosts):
            await self.pc.setLocalDescription(answer)
        self._tap_transports()
        return str(self.pc.localDescription.sdp)

    def _learn(self, summary: SdpSummary) -> None:
        """Which publisher each of the server's m-lines carries now (its ``a=msid`` stream id)."""
        for media in summary.media:
            if media.mid is not None:
                sending = media.direction in ("sendonly", "sendrecv") and media.stream_id
                self._publisher_by_mid[media.mid] = media.stream_id if sending and media.stream_id else ""
            rtx = (pt for pt, c in zip(media.payload_types, media.codecs, strict=False) if c == "video/rtx")
            self._rtx_pts.update(rtx)

    def _count_new_transceivers(self) -> None:
        # Hooks go in before the receivers start (aiortc starts them once the transport connects).
        for transceiver in self.pc.getTransceivers():
            if id(transceiver) not in self._seen:
                self._seen.add(id(transceiver))
                self._start_counting(transceiver)

    def publisher_of(self, mid: str | None) -> str:
        return self._publisher_by_mid.get(mid or "", "")

    def receive_report(self) -> dict[tuple[str, str], SourceReport]:
        """What arrived per (publisher, kind) since the peer started or ``stats.restart()``."""
        return self.stats.report()

    def _start_counting(self, transceiver: RTCRtpTransceiver) -> None:
        kind = transceiver.kind
        stats = self.stats
        rtx_pts = self._rtx_pts
        receiver = transceiver.receiver

        def count(frames: int = 1) -> None:
            publisher = self.publisher_of(transceiver.mid)
            if publisher:
                self.counter.add(publisher, kind, frames)
                for _ in range(frames):
                    stats.frame(publisher, kind)

        def seen(ssrc: int, sequence: int, timestamp: int, payload_type: int, payload: bytes) -> None:
            publisher = self.publisher_of(transceiver.mid)
            if not publisher:
                return
            repairs = None
            if payload_type in rtx_pts:
                if len(payload) < 2:
                    return
                repairs = int.from_bytes(payload[:2], "big")  # RFC 4588: the original sequence number
            stats.packet(publisher, kind, ssrc, sequence, timestamp, len(payload), repairs)

        route_rtx_by_ssrc(receiver)
        if self._browser_nacks:
            replace_nack_generator(receiver, PacedNacks(self.counter.clock))
        if self._mode is ReceiveMode.ENCODED:
            install_encoded_output(transceiver.receiver, kind, lambda _frame: count())
        elif self._mode is ReceiveMode.PACKETS:
            rtx = self._rtx_pts
            # A video frame counts once its publisher's stream on this receiver has begun with a keyframe:
            # what a decoder could show, not mere arrivals (a leg that started mid-stream shows nothing).
            keyframed = ""  # the publisher whose keyframe started the frames counted

            def packet(payload_type: int, marker: bool, payload: bytes) -> None:
                nonlocal keyframed
                if payload_type in rtx:
                    return
                if kind == "video" and keyframed != (publisher := self.publisher_of(transceiver.mid)):
                    if not starts_vp8_keyframe(payload):
                        return
                    keyframed = publisher
                if marker or kind == "audio":
                    count()

            install_packet_counter(transceiver.receiver, packet)
            return  # the cheapest mode (relay benchmarks) counts frames only: no receive report
        elif receiver.track is not None:
            skip_empty_frames(receiver)

            def decoded(frame: object) -> None:
                count()
                if isinstance(frame, av.VideoFrame):
                    self._saw_size(self.publisher_of(transceiver.mid), (frame.width, frame.height))

            task = asyncio.get_running_loop().create_task(self._consume(receiver.track, decoded))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        observe_received_rtp(receiver, seen)

    def _saw_size(self, publisher: str, size: tuple[int, int]) -> None:
        sizes = self.video_sizes.setdefault(publisher, [])
        if not sizes or sizes[-1][1] != size:
            sizes.append((self.counter.frames(publisher, "video"), size))

    def video_size(self, publisher: str) -> tuple[int, int] | None:
        """(width, height) of the last video frame decoded from ``publisher`` (DECODE mode)."""
        sizes = self.video_sizes.get(publisher)
        return sizes[-1][1] if sizes else None

    @staticmethod
    async def _consume(track: MediaStreamTrack, decoded: Callable[[object], None]) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            decoded(frame)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.simulcast is not None:
            await self.simulcast.close()
        await close_peer_connection(self.pc, CLOSE_TIMEOUT)
