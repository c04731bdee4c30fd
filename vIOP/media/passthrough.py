"""Every use of aiortc and aioice internals, in one module.

vIOP forwards encoded media unchanged (no decode, no re-encode). aiortc 1.16 has no public API for that,
so this module reaches into it at a few documented points; each one is listed in :data:`INTERNALS` and
checked by :func:`check_internals` (run at relay start-up and in ``tests/media/test_passthrough.py``), so
an aiortc upgrade that moves one fails loudly instead of silently re-encoding or dropping media.

The points, and why each is needed:

- Receiver output: ``RTCRtpReceiver`` reassembles a complete encoded frame in its jitter buffer, then
  ``put``s ``(codec, frame)`` on a private queue read by a decoder thread. :func:`install_encoded_output`
  swaps that queue (before ``receive()`` starts the thread) for one that hands the encoded frame to a
  callback on the event loop: no decoder, no thread hop.
- Sender input: ``RTCRtpSender`` calls the codec's ``pack()`` (not ``encode()``) for anything that is not an
  ``av.Frame``; ``pack()`` reads only ``bytes(x)``, ``x.pts`` and ``x.time_base``. :class:`EncodedFrame`
  provides exactly that, without copying the payload into an ``av.Packet``.
- Keyframes: a subscriber's PLI/FIR makes the sender call its own ``_send_keyframe()``, which only flags an
  encoder the pass-through path does not have. :func:`on_keyframe_request` replaces it per sender;
  :func:`request_keyframe` makes a receiver send a PLI to the publisher's media SSRC (never RTX).
- Host addresses: aioice skips loopback in ``aioice.ice.get_host_addresses``; :func:`advertising` makes the
  gathering done inside one ``setLocalDescription`` use configured addresses (a context variable, so other
  peer connections in the process keep aioice's default).
- Payload types: a re-offer from aiortc re-numbers codecs from its global table, which collides with the
  numbers a browser chose in the first offer (same BUNDLE); :class:`CodecPlan` pins them per connection.
- Sending: :class:`DirectSender` writes a subscriber's RTP itself (the sender's SSRCs and negotiated
  parameters, the transport's SRTP session, the nominated ICE pair) and keeps the counters aiortc's RTCP
  reads, with aiortc's NACK handling pointed at its history. It is the fast path; legs without one are
  read by aiortc's own sender loop through ``pack()`` (above).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import fractions
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aioice.ice
import aiortc
import aiortc.codecs
import aiortc.rtcdtlstransport
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import aiortc.sdp
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from vIOP.errors import BadRequest, StartupError

SUPPORTED_AIORTC: Final = "1.16."
VIDEO_CODEC: Final = "video/VP8"
AUDIO_CODEC: Final = "audio/opus"
_RTX: Final = "video/rtx"
_DTLS_CONNECTED: Final = aiortc.rtcdtlstransport.State.CONNECTED
_DYNAMIC_PTS: Final = range(96, 128)
_EXTENSION_IDS: Final = range(1, 15)

# --- encoded frames --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One complete encoded frame as the sender's ``pack()`` reads it (``bytes()``, ``pts``, ``time_base``)."""

    data: bytes
    pts: int
    time_base: fractions.Fraction
    keyframe: bool

    def __bytes__(self) -> bytes:
        return self.data

    def with_pts(self, pts: int) -> EncodedFrame:
        return EncodedFrame(self.data, pts, self.time_base, self.keyframe)


FrameSink = Callable[[EncodedFrame], None]


def is_vp8_keyframe(data: bytes) -> bool:
    """RFC 6386 section 9.1: bit 0 of the frame tag is 0 for a key frame."""
    return bool(data) and not data[0] & 0x01


_TIME_BASES: dict[int, fractions.Fraction] = {}


def _time_base(clock_rate: int) -> fractions.Fraction:
    base = _TIME_BASES.get(clock_rate)
    if base is None:
        base = _TIME_BASES[clock_rate] = fractions.Fraction(1, clock_rate)
    return base


class _EncodedOutput:
    """Stands in for the receiver's decoder queue (a ``queue.Queue``): the same ``put``/``get`` protocol.

    ``put`` runs on the event loop inside ``_handle_rtp_packet``; ``None`` means "stop". The receiver's
    decoder thread still starts and blocks in ``get`` until then, and on ``None`` ends the track as usual.
    """

    __slots__ = ("_is_video", "_sink", "_stopped")

    def __init__(self, sink: FrameSink, is_video: bool) -> None:
        self._sink = sink
        self._is_video = is_video
        self._stopped = threading.Event()

    def put(self, task: tuple[RTCRtpCodecParameters, Any] | None) -> None:
        if task is None:
            self._stopped.set()
            return
        codec, jitter_frame = task
        data: bytes = jitter_frame.data
        keyframe = is_vp8_keyframe(data) if self._is_video else True
        self._sink(EncodedFrame(data, jitter_frame.timestamp, _time_base(codec.clockRate), keyframe))

    def get(self) -> None:
        self._stopped.wait()
        return None


def install_encoded_output(receiver: RTCRtpReceiver, kind: str, sink: FrameSink) -> None:
    """Make ``receiver`` hand each reassembled encoded frame to ``sink`` instead of decoding it.

    Must run before the receiver starts (``receive()`` is called once the transport connects).
    """
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        raise RuntimeError("install_encoded_output: the receiver already started decoding")
    receiver._RTCRtpReceiver__decoder_queue = _EncodedOutput(sink, is_video=kind == "video")  # type: ignore[attr-defined]


PacketCounter = Callable[[int, bool], None]
"""Called with (payload type, marker bit) for every RTP packet."""


def install_packet_counter(receiver: RTCRtpReceiver, count: PacketCounter) -> None:
    """Benchmark clients only: report each RTP packet and drop it before the jitter buffer.

    The cheapest way to measure delivered frames without decoding: a video frame ends with the marker bit.
    """

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        count(packet.payload_type, bool(packet.marker))

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


# --- keyframes -------------------------------------------------------------------------------------------


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the remote end of ``sender`` asks for a keyframe (PLI or FIR)."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def media_ssrcs(receiver: RTCRtpReceiver) -> list[int]:
    """The publisher's media SSRCs: declared in its SDP or seen on the wire, minus its RTX SSRCs.

    A PLI aimed at the RTX SSRC is mostly ignored by Chrome (measured: first frame after 3.7 s vs 0.12 s).
    """
    rtx_to_media: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
    found = dict.fromkeys(rtx_to_media.values())
    for source in receiver.getSynchronizationSources():
        if source.source not in rtx_to_media:
            found[source.source] = None
    return list(found)


async def request_keyframe(receiver: RTCRtpReceiver) -> int:
    """Send a PLI upstream for every media SSRC of ``receiver``; returns how many were sent."""
    ssrcs = media_ssrcs(receiver)
    for ssrc in ssrcs:
        await receiver._send_rtcp_pli(ssrc)
    return len(ssrcs)


# --- direct sending ---------------------------------------------------------------------------------------

_NTP_EPOCH_OFFSET_NS: Final = 2_208_988_800 * 1_000_000_000
_VP8_MAX_CHUNK: Final = 1300 - 4  # aiortc's PACKET_MAX minus our 4-byte payload descriptor
_ABS_SEND_TIME: Final = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_MID: Final = "urn:ietf:params:rtp-hdrext:sdes:mid"
_HISTORY: Final = 128  # aiortc's RTP_HISTORY_SIZE: packets a NACK can still recover


def _ntp_now() -> int:
    """64-bit NTP time from one clock read (aiortc's ``clock.current_ntp_time`` builds two datetimes)."""
    ns = time.time_ns() + _NTP_EPOCH_OFFSET_NS
    seconds, fraction = divmod(ns, 1_000_000_000)
    return (seconds << 32) | ((fraction << 32) // 1_000_000_000)


def _vp8_payloads(data: bytes, picture_id: int) -> list[bytes]:
    """RFC 7741 packetization as aiortc's ``Vp8Encoder.pack`` does it (15-bit picture id on every packet)."""
    pid = struct.pack("!H", 0x8000 | picture_id)
    first, rest = b"\x90\x80" + pid, b"\x80\x80" + pid
    return [
        (rest if i else first) + data[i : i + _VP8_MAX_CHUNK] for i in range(0, len(data), _VP8_MAX_CHUNK)
    ]


class DirectSender:
    """Sends a leg's frames as RTP on one server-side ``RTCRtpSender``'s stream, synchronously.

    aiortc's sender loop costs a task switch per frame and builds an ``RtpPacket`` object, two datetimes and
    a generic header-extension list per packet. This writes the same bytes (SSRC, payload type, header
    extensions and picture ids as negotiated for that sender) straight from the fan-out: header by
    ``struct``, SRTP by the transport's own session, ``sendto`` on the nominated ICE pair. The aiortc sender
    stays in charge of everything else: RTCP (its sender reports read the counters kept here), NACKs (its
    ``_retransmit`` is pointed at this history, RTX as negotiated), PLI/FIR (``on_keyframe_request``).
    """

    def __init__(self, sender: RTCRtpSender, kind: str) -> None:
        self._sender = sender
        self._video = kind == "video"
        self._ssrc: int = sender._ssrc
        self._rtx_ssrc: int = sender._rtx_ssrc
        self._seq = secrets.randbelow(32768)  # lower half: avoids an early wrap (as aiortc does)
        self._rtx_seq = secrets.randbelow(32768)
        self._ts_origin = secrets.randbits(32)
        self._picture_id = secrets.randbelow(1 << 15)
        self._pt: int | None = None
        self._rtx_pt: int | None = None
        self._mid_element = b""
        self._abs_id = 0
        self._history: list[tuple[int, int, int, bytes] | None] = [None] * _HISTORY
        self.packets = 0
        sender._retransmit = self._retransmit  # type: ignore[method-assign]

    def configure(self, transceiver: RTCRtpTransceiver) -> None:
        """Take the negotiated payload types and header-extension ids (call once an answer is applied)."""
        codecs = transceiver._codecs
        self._pt = codecs[0].payloadType
        self._rtx_pt = next(
            (c.payloadType for c in codecs if c.mimeType == _RTX and c.parameters.get("apt") == self._pt),
            None,
        )
        ids = {e.uri: e.id for e in transceiver._headerExtensions}
        mid = (transceiver.mid or "").encode()
        self._mid_element = bytes([(ids[_MID] << 4) | (len(mid) - 1)]) + mid if _MID in ids and mid else b""
        self._abs_id = ids.get(_ABS_SEND_TIME, 0) if self._video else 0

    def _extensions(self) -> bytes:
        block = self._mid_element
        if self._abs_id:
            block += struct.pack("!I", (self._abs_id << 28) | (2 << 24) | ((_ntp_now() >> 14) & 0xFFFFFF))
        if not block:
            return b""
        block += b"\x00" * (-len(block) % 4)
        return struct.pack("!HH", 0xBEDE, len(block) // 4) + block

    def _output(self) -> tuple[Any, Callable[[bytes, tuple[str, int]], None], tuple[str, int]] | None:
        sender = self._sender
        if self._pt is None or not sender._enabled or not sender._RTCRtpSender__started:  # type: ignore[attr-defined]
            return None
        dtls = sender.transport
        if dtls._state is not _DTLS_CONNECTED:
            return None
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return None
        return dtls._tx_srtp, pair.protocol.transport.sendto, pair.remote_addr

    def send(self, data: bytes, pts: int) -> bool:
        """Packetize, protect and send one frame now; False if the stream cannot carry it yet."""
        output = self._output()
        if output is None:
            return False
        srtp, sendto, addr = output
        if self._video:
            payloads = _vp8_payloads(data, self._picture_id)
            self._picture_id = (self._picture_id + 1) & 0x7FFF
        else:
            payloads = [data]
        timestamp = (self._ts_origin + pts) & 0xFFFFFFFF
        has_ext = self._extensions()
        first_byte = 0x90 if has_ext else 0x80
        last = len(payloads) - 1
        seq, octets = self._seq, 0
        for i, payload in enumerate(payloads):
            marker = 0x80 if i == last else 0
            header = _RTP_HEADER.pack(first_byte, marker | self._pt, seq, timestamp, self._ssrc)  # type: ignore[operator]
            self._history[seq % _HISTORY] = (seq, marker, timestamp, payload)
            sendto(srtp.protect(header + has_ext + payload), addr)
            seq = (seq + 1) & 0xFFFF
            octets += len(payload)
        self._seq = seq
        self.packets += len(payloads)
        self._count(len(payloads), octets, timestamp)
        return True

    def _count(self, packets: int, octets: int, timestamp: int) -> None:
        """What aiortc's RTCP loop puts in sender reports (lip sync and RTT depend on them)."""
        sender: Any = self._sender
        sender._RTCRtpSender__packet_count += packets
        sender._RTCRtpSender__octet_count += octets
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__ntp_timestamp = _ntp_now()

    async def _retransmit(self, sequence_number: int) -> None:
        """NACK handling (aiortc calls this per lost sequence number): resend from history, as RTX if negotiated."""
        entry = self._history[sequence_number % _HISTORY]
        output = self._output()
        if entry is None or entry[0] != sequence_number or output is None:
            return
        srtp, sendto, addr = output
        _, marker, timestamp, payload = entry
        ext = self._extensions()
        first_byte = 0x90 if ext else 0x80
        if self._rtx_pt is not None:
            header = _RTP_HEADER.pack(
                first_byte, marker | self._rtx_pt, self._rtx_seq, timestamp, self._rtx_ssrc
            )
            payload = struct.pack("!H", sequence_number) + payload
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        else:
            header = _RTP_HEADER.pack(first_byte, marker | self._pt, sequence_number, timestamp, self._ssrc)  # type: ignore[operator]
        sendto(srtp.protect(header + ext + payload), addr)


_RTP_HEADER: Final = struct.Struct("!BBHII")


# --- host addresses --------------------------------------------------------------------------------------

_advertised: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "viop_advertised_host_addresses", default=None
)
_aioice_host_addresses: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
_install_lock = threading.Lock()


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _advertised.get()
    if chosen is None:
        return _aioice_host_addresses(use_ipv4, use_ipv6)
    return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]


def _install_host_address_hook() -> None:
    with _install_lock:
        if aioice.ice.get_host_addresses is not _host_addresses:
            aioice.ice.get_host_addresses = _host_addresses


def interface_addresses() -> list[str]:
    """Every address aioice offers by default (all interfaces but loopback): the server's own addresses."""
    return _aioice_host_addresses(True, True)


@contextlib.contextmanager
def advertising(addresses: Sequence[str]) -> Iterator[None]:
    """Within this block, ICE gathering offers exactly ``addresses`` as host candidates.

    An empty sequence keeps aioice's default (every interface except loopback).
    """
    if not addresses:
        yield
        return
    _install_host_address_hook()
    token = _advertised.set(tuple(addresses))
    try:
        yield
    finally:
        _advertised.reset(token)


def peer_configuration(ice_servers: Sequence[RTCIceServer]) -> RTCConfiguration:
    """Always an explicit list: ``iceServers=None`` would make aiortc use Google's public STUN server."""
    return RTCConfiguration(iceServers=list(ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


# --- codecs ----------------------------------------------------------------------------------------------


def restrict_codecs(transceiver: RTCRtpTransceiver) -> None:
    """Offer/accept only VP8 (with its RTX) or Opus on this transceiver: nothing is transcoded."""
    wanted = (VIDEO_CODEC, _RTX) if transceiver.kind == "video" else (AUDIO_CODEC,)
    capabilities = aiortc.RTCRtpSender.getCapabilities(transceiver.kind).codecs
    transceiver.setCodecPreferences([c for c in capabilities if c.mimeType in wanted])


def label_sender(sender: RTCRtpSender, stream_id: str, track_id: str) -> None:
    """Set the ``a=msid`` a subscriber sees: the stream id names the publisher (an opaque participant id)."""
    sender._stream_id = stream_id
    sender._track_id = track_id


@dataclass(frozen=True, slots=True)
class CodecPlan:
    """The payload types and header-extension ids one peer connection uses on every m-line, for good.

    Taken from the first negotiation (a browser's offer decides them); every later server offer is
    rewritten to match, so BUNDLE never sees one payload type mean two codecs.
    """

    codecs: dict[str, tuple[RTCRtpCodecParameters, ...]]
    extensions: dict[str, tuple[RTCRtpHeaderExtensionParameters, ...]]

    @classmethod
    def from_negotiated(cls, pc: RTCPeerConnection) -> CodecPlan:
        codecs: dict[str, tuple[RTCRtpCodecParameters, ...]] = {}
        extensions: dict[str, tuple[RTCRtpHeaderExtensionParameters, ...]] = {}
        for t in pc.getTransceivers():
            if t.kind not in codecs and t._codecs:
                codecs[t.kind] = tuple(copy.deepcopy(t._codecs))
                extensions[t.kind] = tuple(copy.deepcopy(t._headerExtensions))
        for kind in ("audio", "video"):
            if kind not in codecs:
                codecs[kind], extensions[kind] = _defaults_avoiding(kind, codecs, extensions)
        return cls(codecs, extensions)

    def apply(self, pc: RTCPeerConnection, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Rewrite a fresh ``createOffer()`` result (and the transceivers behind it) to this plan."""
        for t in pc.getTransceivers():
            t._codecs = list(copy.deepcopy(self.codecs[t.kind]))
            t._headerExtensions = list(copy.deepcopy(self.extensions[t.kind]))
        description = aiortc.sdp.SessionDescription.parse(offer.sdp)
        for media in description.media:
            if media.kind in self.codecs:
                media.rtp.codecs = list(copy.deepcopy(self.codecs[media.kind]))
                media.fmt = [c.payloadType for c in media.rtp.codecs]
                media.rtp.headerExtensions = list(copy.deepcopy(self.extensions[media.kind]))
        return RTCSessionDescription(sdp=str(description), type=offer.type)


def _defaults_avoiding(
    kind: str,
    taken_codecs: dict[str, tuple[RTCRtpCodecParameters, ...]],
    taken_extensions: dict[str, tuple[RTCRtpHeaderExtensionParameters, ...]],
) -> tuple[tuple[RTCRtpCodecParameters, ...], tuple[RTCRtpHeaderExtensionParameters, ...]]:
    """aiortc's own VP8 (+RTX) or Opus entry, renumbered where the other kind already uses a number."""
    used = {c.payloadType for cs in taken_codecs.values() for c in cs}
    defaults = aiortc.codecs.CODECS[kind]
    wanted = VIDEO_CODEC if kind == "video" else AUDIO_CODEC
    base = copy.deepcopy(next(c for c in defaults if c.mimeType.lower() == wanted.lower()))
    chosen = [base]
    if kind == "video":
        rtx = next(c for c in defaults if c.mimeType == _RTX and c.parameters.get("apt") == base.payloadType)
        chosen.append(copy.deepcopy(rtx))
    free = (pt for pt in _DYNAMIC_PTS if pt not in used)
    for codec in chosen:
        if codec.payloadType in used:
            codec.payloadType = next(free)
        used.add(codec.payloadType)
    if len(chosen) == 2:
        chosen[1].parameters["apt"] = base.payloadType
    by_uri = {e.uri: e.id for es in taken_extensions.values() for e in es}
    used_ids = set(by_uri.values())
    extensions = []
    for ext in aiortc.codecs.HEADER_EXTENSIONS[kind]:
        ext_id = by_uri.get(ext.uri)
        if ext_id is None:
            ext_id = (
                ext.id if ext.id not in used_ids else next(i for i in _EXTENSION_IDS if i not in used_ids)
            )
            used_ids.add(ext_id)
        extensions.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=ext.uri))
    return tuple(chosen), tuple(extensions)


# --- SDP and candidates ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaSection:
    kind: str
    mid: str | None
    direction: str | None
    stream_id: str | None  # first half of a=msid
    codecs: tuple[str, ...]  # MIME types, lower case
    payload_types: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SdpSummary:
    media: tuple[MediaSection, ...]
    bundle: tuple[str, ...]
    has_credentials: bool  # every m-line carries ICE ufrag/pwd and a DTLS fingerprint


def summarize_sdp(sdp: str) -> SdpSummary:
    """Parse SDP with aiortc's own parser (what ``setRemoteDescription`` will do), or raise BadRequest."""
    try:
        description = aiortc.sdp.SessionDescription.parse(sdp)
        # aiortc re-serializes the stored description whenever it is read (``pc.remoteDescription``):
        # one that parses but cannot be written back (an invalid address in ``c=`` or ``a=rtcp``) would
        # fail later, on an unrelated message.
        str(description)
    except Exception as exc:  # aiortc's parser raises whatever a malformed line triggers
        raise BadRequest("sdp: not a valid session description") from exc
    sections = []
    credentials = True
    for m in description.media:
        codecs = tuple(c.mimeType.lower() for c in m.rtp.codecs)
        pts = tuple(int(c.payloadType) for c in m.rtp.codecs if c.payloadType is not None)
        stream_id = m.msid.split()[0] if m.msid else None
        ice_ok = m.ice is not None and bool(m.ice.usernameFragment) and bool(m.ice.password)
        credentials = credentials and ice_ok and m.dtls is not None and bool(m.dtls.fingerprints)
        sections.append(MediaSection(m.kind, m.rtp.muxId or None, m.direction, stream_id, codecs, pts))
    bundle = next((tuple(g.items) for g in description.group if g.semantic == "BUNDLE"), ())
    return SdpSummary(tuple(sections), tuple(str(i) for i in bundle), credentials)


_CANDIDATE_TYPES: Final = frozenset({"host", "srflx", "prflx", "relay"})


def parse_candidate(line: str, sdp_mid: str | None) -> RTCIceCandidate:
    """A browser ``RTCIceCandidate.candidate`` string (with or without the ``candidate:`` prefix)."""
    text = line.removeprefix("a=").removeprefix("candidate:")
    try:
        candidate = aiortc.sdp.candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError) as exc:
        raise BadRequest("candidate: not a valid ICE candidate line") from exc
    if (
        candidate.protocol.lower() not in ("udp", "tcp")
        or not 0 < candidate.port < 65536
        or candidate.type not in _CANDIDATE_TYPES
    ):
        raise BadRequest("candidate: unsupported protocol or port")
    candidate.sdpMid = sdp_mid
    return candidate


# --- canary ----------------------------------------------------------------------------------------------

INTERNALS: Final = (
    "aiortc version 1.16.x",
    "RTCRtpReceiver: __decoder_queue / __decoder_thread / __rtx_ssrc, _send_rtcp_pli, _handle_rtp_packet",
    "rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error) reads input_q.get()",
    "RTCRtpSender: _send_keyframe, _stream_id, _track_id; codec pack() for non-Frame input",
    "RTCRtpSender: _ssrc, _rtx_ssrc, _enabled, __started, sender-report counters, _retransmit (DirectSender)",
    "RTCDtlsTransport: _state, _tx_srtp; aioice Connection._nominated, StunProtocol.transport (DirectSender)",
    "RTCRtpTransceiver: _codecs, _headerExtensions",
    "aioice.ice.get_host_addresses(use_ipv4, use_ipv6)",
    "aiortc.sdp: SessionDescription.parse/str, candidate_from_sdp; aiortc.codecs: CODECS, HEADER_EXTENSIONS",
)


def _assigns(function: Any, *names: str) -> list[str]:
    """The attribute names among ``names`` that ``function``'s code never mentions."""
    code_names = set(function.__code__.co_names)
    return [n for n in names if n not in code_names]


def internals_problems() -> list[str]:
    """Every assumption this module makes about aiortc, checked statically; empty means all hold."""
    problems: list[str] = []
    if not aiortc.__version__.startswith(SUPPORTED_AIORTC):
        problems.append(f"aiortc {aiortc.__version__} is not the supported {SUPPORTED_AIORTC}x")
    receiver_cls = aiortc.rtcrtpreceiver.RTCRtpReceiver
    sender_cls = aiortc.rtcrtpsender.RTCRtpSender
    mangled = (
        "_RTCRtpReceiver__decoder_queue",
        "_RTCRtpReceiver__decoder_thread",
        "_RTCRtpReceiver__rtx_ssrc",
    )
    problems += [
        f"RTCRtpReceiver.__init__ no longer sets {n}" for n in _assigns(receiver_cls.__init__, *mangled)
    ]
    problems += [
        f"RTCRtpReceiver.receive no longer uses {n}" for n in _assigns(receiver_cls.receive, *mangled)
    ]
    problems += [f"RTCRtpSender no longer has {n}" for n in _assigns(sender_cls.__init__, "_stream_id")]
    problems += [f"RTCRtpSender no longer has {n}" for n in _assigns(sender_cls.replaceTrack, "_track_id")]
    if "_send_keyframe" not in sender_cls._handle_rtcp_packet.__code__.co_names:
        problems.append("RTCRtpSender._handle_rtcp_packet no longer calls _send_keyframe on PLI/FIR")
    if "pack" not in sender_cls._next_encoded_frame.__code__.co_names:
        problems.append("RTCRtpSender._next_encoded_frame no longer calls pack() for encoded input")
    transceiver_names = aiortc.RTCRtpTransceiver.__init__.__code__.co_names
    problems += [
        f"RTCRtpTransceiver.{n} is gone"
        for n in ("_codecs", "_headerExtensions")
        if n not in transceiver_names
    ]
    counters = tuple(
        f"_RTCRtpSender__{n}" for n in ("started", "packet_count", "octet_count", "rtp_timestamp")
    )
    problems += [
        f"RTCRtpSender no longer keeps {n}" for n in _assigns(sender_cls.__init__, *counters, "_ssrc")
    ]
    problems += [
        f"RTCRtpSender no longer keeps {n}" for n in _assigns(sender_cls.__init__, "_rtx_ssrc", "_enabled")
    ]
    if "_RTCRtpSender__ntp_timestamp" not in sender_cls._run_rtcp.__code__.co_names:
        problems.append("RTCRtpSender's sender reports no longer read __ntp_timestamp")
    if "_retransmit" not in sender_cls._handle_rtcp_packet.__code__.co_names:
        problems.append("RTCRtpSender._handle_rtcp_packet no longer calls _retransmit on NACK")
    dtls_cls = aiortc.rtcdtlstransport.RTCDtlsTransport
    problems += [
        f"RTCDtlsTransport no longer has {n}" for n in _assigns(dtls_cls.__init__, "_tx_srtp", "_state")
    ]
    if "_nominated" not in aioice.ice.Connection.sendto.__code__.co_names:
        problems.append("aioice Connection.sendto no longer sends on _nominated pairs")
    if "sendto" not in aioice.ice.StunProtocol.send_data.__code__.co_names:
        problems.append("aioice StunProtocol.send_data is no longer transport.sendto")
    worker = getattr(aiortc.rtcrtpreceiver, "decoder_worker", None)
    if worker is None or worker.__code__.co_varnames[:4] != ("loop", "input_q", "output_q", "decode_error"):
        problems.append("rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error) changed")
    for name in ("_send_rtcp_pli", "_handle_rtp_packet", "getSynchronizationSources"):
        if not hasattr(receiver_cls, name):
            problems.append(f"RTCRtpReceiver.{name} is gone")
    if getattr(aioice.ice, "get_host_addresses", None) is None:
        problems.append("aioice.ice.get_host_addresses is gone")
    if "get_host_addresses" not in aioice.ice.Connection.gather_candidates.__code__.co_names:
        problems.append("aioice Connection.gather_candidates no longer calls get_host_addresses")
    for name in ("candidate_from_sdp", "SessionDescription"):
        if not hasattr(aiortc.sdp, name):
            problems.append(f"aiortc.sdp.{name} is gone")
    for name in ("CODECS", "HEADER_EXTENSIONS"):
        if not isinstance(getattr(aiortc.codecs, name, None), dict):
            problems.append(f"aiortc.codecs.{name} is gone")
    vp8 = aiortc.codecs.get_encoder(RTCRtpCodecParameters(mimeType=VIDEO_CODEC, clockRate=90000))
    try:
        probe = EncodedFrame(b"\x10\x02\x00", 3000, _time_base(90000), True)
        payloads, timestamp = vp8.pack(probe)  # type: ignore[arg-type]  # duck-typed av.Packet
        if timestamp != 3000 or not payloads or not payloads[0].endswith(b"\x10\x02\x00"):
            problems.append("VP8 pack() no longer packetizes an EncodedFrame unchanged")
    except Exception as exc:
        problems.append(f"VP8 pack() rejects an EncodedFrame: {exc!r}")
    return problems


def check_internals() -> None:
    """Raise :class:`StartupError` naming every broken assumption (see :data:`INTERNALS`)."""
    problems = internals_problems()
    if problems:
        raise StartupError("aiortc internals changed; media pass-through would break: " + "; ".join(problems))
