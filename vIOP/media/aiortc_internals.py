"""Every use of aiortc and aioice internals, in one module: the hooks of vIOP's forwarding unit.

vIOP forwards encoded media unchanged (no decode, no re-encode). aiortc 1.16 has no public API for that,
so this module reaches into it at a few documented points; each one is listed in :data:`INTERNALS` and
checked by :func:`check_internals` (run at relay start-up and in ``tests/media/test_aiortc_internals.py``),
so an aiortc upgrade that moves one fails loudly instead of silently re-encoding or dropping media.
"Internals" means private or name-mangled attributes, replaced methods or functions, and aiortc modules the
``aiortc`` package does not export (``aiortc.sdp``, ``aiortc.codecs``, ``aiortc.rtcrtpreceiver``,
``aiortc.rtcdtlstransport``, ``aioice.ice``). No other vIOP module touches any of them; the modules that
need one call a function here.

The points, and why each is needed:

- Receiver output: ``RTCRtpReceiver`` reassembles a complete encoded frame in its jitter buffer, then
  ``put``s ``(codec, frame)`` on a private queue read by a decoder thread. :func:`install_encoded_output`
  swaps that queue (before ``receive()`` starts the thread) for one that hands the encoded frame to a
  callback on the event loop: no decoder, no thread hop.
- Sender input: ``RTCRtpSender`` calls the codec's ``pack()`` (not ``encode()``) for anything that is not an
  ``av.Frame``; ``pack()`` reads only ``bytes(x)``, ``x.pts`` and ``x.time_base``, which
  :class:`~vIOP.media.frames.EncodedFrame` provides without copying the payload into an ``av.Packet``.
- Keyframes: a subscriber's PLI/FIR makes the sender call its own ``_send_keyframe()``, which only flags an
  encoder the pass-through path does not have. :func:`on_keyframe_request` replaces it per sender;
  :func:`request_keyframe` makes a receiver send a PLI to the publisher's media SSRC (never RTX).
- Audio levels: a publisher's RFC 6464 level rides in each audio packet's header extension, which aiortc
  parses (``packet.extensions.audio_level``); the audio tap hands it on with the payload.
  :func:`observe_rtp` hands every decrypted RTP packet of one payload type to an observer before aiortc
  routes it, on the transport (simulcast RTX, test clients).
- Host addresses: aioice skips loopback in ``aioice.ice.get_host_addresses``; :func:`route_host_addresses`
  replaces it with a function of ours (``vIOP.media.ice_gathering`` decides per ``setLocalDescription``).
- Payload types: a re-offer from aiortc re-numbers codecs from its global table, which collides with the
  numbers a browser chose in the first offer (same BUNDLE); ``vIOP.media.codec_plan`` pins them per
  connection through :func:`negotiated`, :func:`set_negotiated` and :func:`rewrite_offer`.
- SDP: ``aiortc.sdp`` is the parser ``setRemoteDescription`` uses; :func:`parse_sdp_media` and
  :func:`candidate_from_sdp` read with it (``vIOP.media.sdp`` validates).
- The Python client's receivers (``vIOP.client.media``): :func:`route_rtx_by_ssrc` registers RTX SSRCs with
  the transport's RTP router (aiortc 1.16 drops RTX on a connection with several video streams);
  :func:`replace_nack_generator` puts browser-like NACK pacing in place of aiortc's generator;
  :func:`observe_received_rtp` shows each packet to the client's receive report.
- Screen share: a publisher's second video receiver is routed by its declared SSRCs only
  (:func:`route_by_ssrc_only`), so the camera's simulcast layers (no SSRCs in the offer) are still found
  by payload type.
- Publisher hop: the receiver's jitter buffer is replaced by a tap (:func:`install_audio_ingress`,
  :func:`install_video_ingress`) that hands every packet to ``vIOP.media.ingress`` (audio forwarded packet
  by packet, VP8 reassembled with bounded waits); aiortc's NACK generator is switched off for video and
  vIOP sends its NACKs (:func:`send_nack`), paced by the RTT aiortc's senders measure
  (:func:`round_trip_time`).
- Test links: :func:`tap_datagrams` puts a :class:`DatagramTap` between a peer connection's aioice
  connection and its socket (``data_received`` in, ``sendto`` out), so test clients can suffer loss, delay
  and rate caps the kernel cannot emulate (``bench/scenarios/impairment.py``).
- Sending: ``vIOP.media.direct_sender`` writes a subscriber's RTP itself. It needs the sender's SSRCs
  (:func:`sender_ssrcs`), the transport's SRTP session and the nominated ICE pair (:func:`sender_output`;
  its address, :func:`nominated_remote_host`, tells a reconnect from the same network),
  keeps the counters aiortc's RTCP reads (:func:`count_sent`), and answers aiortc's NACK handling
  (:func:`on_retransmit`).
- Feedback: a subscriber's receiver reports and REMB reach the sender's ``_handle_rtcp_packet`` (aiortc's
  RTP router delivers each report block and REMB to the senders whose SSRC they name); aiortc only feeds
  REMB to an encoder the pass-through path does not have. :func:`observe_feedback` wraps that method per
  sender so ``vIOP.media.downlink`` can estimate the subscriber's downlink.
- Closing: each receiver's decoder runs on a thread that is not a daemon and ends only when the receiver
  stops. ``RTCPeerConnection.close()`` stops them one transceiver after another; cut short (a timeout, a
  cancellation) it leaves the rest running, and a second ``close()`` does nothing more, so the process
  can never exit. :func:`close_peer_connection` stops every receiver's decoder
  (``RTCRtpReceiver._handle_disconnect``, what aiortc itself calls when DTLS closes) whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import queue
import threading
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aioice.ice
import aiortc
import aiortc.codecs
import aiortc.rtcdtlstransport
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import aiortc.rtp
import aiortc.sdp
from aiortc import (
    RTCIceCandidate,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)

from vIOP.errors import StartupError
from vIOP.media.frames import VIDEO_CODEC, EncodedFrame, FrameSink, is_vp8_keyframe, time_base

SUPPORTED_AIORTC: Final = "1.16."
_DTLS_CONNECTED: Final = aiortc.rtcdtlstransport.State.CONNECTED

# --- receivers -------------------------------------------------------------------------------------------


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
        self._sink(EncodedFrame(data, jitter_frame.timestamp, time_base(codec.clockRate), keyframe))

    def get(self) -> None:
        self._stopped.wait()
        return None


def install_encoded_output(receiver: RTCRtpReceiver, kind: str, sink: FrameSink) -> None:
    """Make ``receiver`` hand each reassembled encoded frame to ``sink`` instead of decoding it.

    Must run before the receiver starts (``receive()`` is called once the transport connects).
    """
    _replace_decoder_queue(receiver, _EncodedOutput(sink, is_video=kind == "video"), "install_encoded_output")


def _replace_decoder_queue(receiver: RTCRtpReceiver, replacement: object, caller: str) -> None:
    """Put ``replacement`` where ``receiver``'s decoder thread will read its frames (before it starts)."""
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        raise RuntimeError(f"{caller}: the receiver already started decoding")
    receiver._RTCRtpReceiver__decoder_queue = replacement  # type: ignore[attr-defined]


class _NoEmptyFrames(queue.Queue[Any]):
    """The receiver's decoder queue without empty frames. aiortc's jitter buffer makes one when a run of
    packets sharing a timestamp holds padding only (a bandwidth probe's, once the buffer restarted after
    loss), and the decoder takes an empty packet as "flush": every later frame then fails with "End of
    file" and the receiver never decodes again (measured: a capped client's video stopped for good)."""

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None and not item[1].data:
            return
        super().put(item, block, timeout)


def skip_empty_frames(receiver: RTCRtpReceiver) -> None:
    """Frames with no data never reach ``receiver``'s decoder (see :class:`_NoEmptyFrames`). Must run before
    the receiver starts."""
    _replace_decoder_queue(receiver, _NoEmptyFrames(), "skip_empty_frames")


AudioPacketSink = Callable[[int, int, bytes, int | None], None]
"""(sequence number, timestamp, payload, RFC 6464 byte or None) of one audio packet."""
"""Called with (sequence number, RTP timestamp, Opus payload) for every audio packet."""
VideoPacketSink = Callable[[int, int, int, bool, bytes, bytes, str | None], None]
"""Called with (media SSRC, sequence number, RTP timestamp, marker, RTP payload, VP8 data after the
payload descriptor, RID from the ``sdes:rtp-stream-id`` extension or None) for every video packet,
retransmissions unwrapped."""


class _AudioTap:
    """Stands in for the receiver's audio ``JitterBuffer``: hands each packet on, holds none.

    ``_handle_rtp_packet`` calls ``add(packet)`` after SRTP, receiver statistics and depayloading; returning
    no frame means aiortc's decoder queue never sees one.
    """

    __slots__ = ("_sink",)

    def __init__(self, sink: AudioPacketSink) -> None:
        self._sink = sink

    def add(self, packet: Any) -> tuple[bool, None]:
        # aiortc has parsed the negotiated audio-level element already: (voice activity, level).
        heard = packet.extensions.audio_level
        level = None if heard is None else (0x80 if heard[0] else 0) | (heard[1] & 0x7F)
        self._sink(packet.sequence_number, packet.timestamp, packet._data, level)
        return False, None


class _VideoTap:
    """Stands in for the receiver's video ``JitterBuffer`` (after RTX unwrapping): hands each packet on."""

    __slots__ = ("_sink",)

    def __init__(self, sink: VideoPacketSink) -> None:
        self._sink = sink

    def add(self, packet: Any) -> tuple[bool, None]:
        self._sink(
            packet.ssrc,
            packet.sequence_number,
            packet.timestamp,
            packet.marker,
            packet.payload,
            packet._data,
            packet.extensions.rtp_stream_id,
        )
        return False, None


def install_audio_ingress(receiver: RTCRtpReceiver, sink: AudioPacketSink) -> None:
    """Every audio packet of ``receiver`` goes to ``sink`` as it arrives (aiortc's jitter buffer is out)."""
    receiver._RTCRtpReceiver__jitter_buffer = _AudioTap(sink)  # type: ignore[attr-defined]


def install_video_ingress(receiver: RTCRtpReceiver, sink: VideoPacketSink) -> None:
    """Every video packet of ``receiver`` goes to ``sink``; aiortc neither reassembles nor NACKs (the
    caller does both: :func:`send_nack`). REMB, receiver reports and RTX unwrapping stay aiortc's."""
    receiver._RTCRtpReceiver__jitter_buffer = _VideoTap(sink)  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__nack_generator = None  # type: ignore[attr-defined]


async def send_nack(receiver: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> None:
    """Send one RTCP NACK for ``lost`` (16-bit sequence numbers) of ``media_ssrc`` to the publisher."""
    await receiver._send_rtcp_nack(media_ssrc, lost)


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Ask the publisher for a keyframe of one stream (a simulcast layer's SSRC)."""
    await receiver._send_rtcp_pli(media_ssrc)


def learn_rtx_ssrc(receiver: RTCRtpReceiver, rtx_ssrc: int, media_ssrc: int) -> None:
    """Make ``receiver`` unwrap RTX from ``rtx_ssrc`` as repairs of ``media_ssrc``.

    aiortc learns RTX SSRCs from ``a=ssrc-group:FID`` only; a RID-simulcast offer has none, so without this
    every retransmission of a simulcast layer is dropped ("RTX packet from unknown SSRC").
    """
    receiver._RTCRtpReceiver__rtx_ssrc[rtx_ssrc] = media_ssrc  # type: ignore[attr-defined]


def offered_header_extensions(sdp: str, mid: str) -> list[RTCRtpHeaderExtensionParameters]:
    """The header extensions (ids as offered) of m-line ``mid`` of ``sdp``, as aiortc's parser reads them."""
    description = aiortc.sdp.SessionDescription.parse(sdp)
    for media in description.media:
        if media.rtp.muxId == mid:
            return list(media.rtp.headerExtensions)
    return []


def accept_header_extensions(
    transceiver: RTCRtpTransceiver, extensions: list[RTCRtpHeaderExtensionParameters]
) -> None:
    """Add ``extensions`` to what ``transceiver`` negotiated (after ``setRemoteDescription``, before
    ``createAnswer``): aiortc accepts only its global table (mid, abs-send-time for video); the answer and
    the transport's header-extension map (configured when the receiver starts) then include them."""
    have = {e.uri for e in transceiver._headerExtensions}
    transceiver._headerExtensions = transceiver._headerExtensions + [
        e for e in extensions if e.uri not in have
    ]


def rtp_output(sender: RTCRtpSender) -> Callable[[bytes], Coroutine[Any, Any, None]]:
    """Test publishers only: protect (SRTP) and send raw RTP bytes on ``sender``'s transport."""
    send: Callable[[bytes], Coroutine[Any, Any, None]] = sender.transport._send_rtp
    return send


KeyframeListener = Callable[[int], None]
"""Called with the media SSRC a PLI or FIR names."""
NackListener = Callable[[int, list[int]], None]
"""Called with the media SSRC and the sequence numbers a NACK names."""


class _FeedbackListener:
    """Registered with the RTP router as the "sender" of extra SSRCs: hears the RTCP addressed to them."""

    def __init__(self, keyframe: KeyframeListener, nack: NackListener | None) -> None:
        self._keyframe = keyframe
        self._nack = nack

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        if isinstance(packet, aiortc.rtp.RtcpPsfbPacket) and packet.fmt in (
            aiortc.rtp.RTCP_PSFB_PLI,
            aiortc.rtp.RTCP_PSFB_FIR,
        ):
            self._keyframe(packet.media_ssrc)
        elif (
            isinstance(packet, aiortc.rtp.RtcpRtpfbPacket)
            and packet.fmt == aiortc.rtp.RTCP_RTPFB_NACK
            and self._nack is not None
        ):
            self._nack(packet.media_ssrc, list(packet.lost))


def on_keyframe_request_for(
    sender: RTCRtpSender, ssrcs: list[int], listener: KeyframeListener, nack: NackListener | None = None
) -> None:
    """Test publishers only: hear PLI/FIR (and NACKs, given ``nack``) for SSRCs ``sender``'s transport sends
    without an aiortc sender."""
    feedback = _FeedbackListener(listener, nack)
    for ssrc in ssrcs:
        router: Any = sender.transport._rtp_router
        router.register_sender(feedback, ssrc)


def round_trip_time(sender: RTCRtpSender) -> float | None:
    """The RTT aiortc measured from receiver reports answering ``sender``'s sender reports (seconds)."""
    rtt: float | None = sender._RTCRtpSender__rtt  # type: ignore[attr-defined]
    return rtt


PacketCounter = Callable[[int, bool, bytes], None]
"""Called with (payload type, marker bit, payload) for every RTP packet."""


def install_packet_counter(receiver: RTCRtpReceiver, count: PacketCounter) -> None:
    """Benchmark clients only: report each RTP packet and drop it before the jitter buffer.

    The cheapest way to measure delivered frames without decoding: a video frame ends with the marker bit.
    Receiver statistics are still kept, so the client sends receiver reports as a browser does (the
    relay's downlink estimate needs them); a receiver that sent none would be held to the default budget.
    """
    streams: dict[int, Any] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    codecs: dict[int, RTCRtpCodecParameters] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        count(packet.payload_type, bool(packet.marker), packet.payload)
        stream = streams.get(packet.ssrc)
        if stream is None:
            codec = codecs.get(packet.payload_type)
            if codec is None:
                return
            stream = streams[packet.ssrc] = aiortc.rtcrtpreceiver.StreamStatistics(codec.clockRate)
        stream.add(packet)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


ReceivedRtpObserver = Callable[[int, int, int, int, bytes], None]
"""Called with (SSRC, sequence number, timestamp, payload type, payload) for every RTP packet a receiver gets."""


def observe_received_rtp(receiver: RTCRtpReceiver, observer: ReceivedRtpObserver) -> None:
    """Show ``observer`` every RTP packet routed to ``receiver`` (RTX still wrapped), then handle it as before."""
    handle = receiver._handle_rtp_packet

    async def observed(packet: Any, arrival_time_ms: int) -> None:
        observer(packet.ssrc, packet.sequence_number, packet.timestamp, packet.payload_type, packet.payload)
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = observed  # type: ignore[method-assign]


def route_rtx_by_ssrc(receiver: RTCRtpReceiver) -> None:
    """Make ``receiver``'s transport route its RTX stream to it by SSRC (aiortc 1.16 drops it otherwise).

    aiortc registers only the media SSRC of a receiver with the transport's RTP router; a packet with an
    unknown SSRC is routed by payload type, and only if exactly one receiver has that payload type. Every
    video m-line of a connection shares the RTX payload type, so with two video streams or more every RTX
    packet is discarded and no loss is ever repaired. This registers the RTX SSRCs (which the receiver
    learned from ``a=ssrc-group:FID``) right after aiortc registers the receiver.
    """
    receive = receiver.receive

    async def receive_and_route(parameters: Any) -> None:
        await receive(parameters)
        rtx_to_media: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
        router = receiver.transport._rtp_router
        for rtx_ssrc in rtx_to_media:
            router.ssrc_table[rtx_ssrc] = receiver

    receiver.receive = receive_and_route  # type: ignore[method-assign]


def route_by_ssrc_only(receiver: RTCRtpReceiver) -> None:
    """Route RTP to ``receiver`` by its declared SSRCs only (media and RTX), never by payload type.

    aiortc routes a packet with an unknown SSRC to the one receiver registered for its payload type, and
    drops it when several are. A publisher's camera (RID simulcast: no SSRCs in the offer) is found that
    way; a second video receiver on the same connection (the screen share, same VP8 payload type) would
    make every camera packet ambiguous. So the router leaves the share's receiver (whose offer section must
    declare its SSRCs) out of that fallback.
    """
    receive = receiver.receive

    async def receive_by_ssrc(parameters: Any) -> None:
        await receive(parameters)
        rtx_to_media: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
        router = receiver.transport._rtp_router
        for rtx_ssrc in rtx_to_media:
            router.ssrc_table[rtx_ssrc] = receiver
        _ssrc_only_receivers(router).add(receiver)

    receiver.receive = receive_by_ssrc  # type: ignore[method-assign]


def _ssrc_only_receivers(router: Any) -> set[Any]:
    """The router's receivers left out of payload-type routing; installs that rule on first use."""
    excluded: set[Any] | None = getattr(router, "_viop_ssrc_only", None)
    if excluded is not None:
        return excluded
    excluded = router._viop_ssrc_only = set()
    route = router.route_rtp

    def route_rtp(packet: Any) -> Any:
        if packet.ssrc not in router.ssrc_table:
            candidates = router.payload_type_table.get(packet.payload_type, set()) - excluded
            if len(candidates) == 1:  # what aiortc does, with the SSRC-only receivers left out
                found = next(iter(candidates))
                router.ssrc_table[packet.ssrc] = found
                return found
        return route(packet)

    router.route_rtp = route_rtp
    return excluded


class NackGenerator(Protocol):
    """aiortc's receiver calls ``add(packet)`` per packet; when True it NACKs ``sorted(missing)``."""

    missing: set[int]

    def add(self, packet: Any) -> bool: ...


def replace_nack_generator(receiver: RTCRtpReceiver, generator: NackGenerator) -> bool:
    """Make a video ``receiver`` decide its NACKs with ``generator``; False for audio (aiortc sends none)."""
    if receiver._RTCRtpReceiver__nack_generator is None:  # type: ignore[attr-defined]
        return False
    receiver._RTCRtpReceiver__nack_generator = generator  # type: ignore[attr-defined]
    return True


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


RtpObserver = Callable[[bytes], None]
"""Called with an unprotected RTP packet (bytes) on the event loop; must not block or raise."""


def observe_rtp(receiver: RTCRtpReceiver, payload_type: int, observer: RtpObserver) -> None:
    """Show ``observer`` every RTP packet of ``payload_type`` reaching ``receiver``'s transport, first.

    Call after ``setRemoteDescription`` (the receiver then has its bundled transport). One observer per
    payload type; a second call for the same type replaces the first. The replacement is a plain function
    returning aiortc's own coroutine, so packets of other payload types pay one call and one compare.
    """
    transport: Any = receiver.transport
    observers: dict[int, RtpObserver] | None = getattr(transport, "_viop_rtp_observers", None)
    if observers is None:
        observers = transport._viop_rtp_observers = {}
        handle = transport._handle_rtp_data

        def observed(data: bytes, arrival_time_ms: int) -> Coroutine[Any, Any, None]:
            seen = observers.get(data[1] & 0x7F) if len(data) > 1 else None
            if seen is not None:
                seen(data)
            return handle(data, arrival_time_ms)  # type: ignore[no-any-return]

        transport._handle_rtp_data = observed
    observers[payload_type] = observer


# --- senders ---------------------------------------------------------------------------------------------


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the remote end of ``sender`` asks for a keyframe (PLI or FIR)."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def label_sender(sender: RTCRtpSender, stream_id: str, track_id: str) -> None:
    """Set the ``a=msid`` a subscriber sees: the stream id names the publisher (an opaque participant id)."""
    sender._stream_id = stream_id
    sender._track_id = track_id


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(media SSRC, RTX SSRC) aiortc chose for ``sender`` (and announces in its SDP)."""
    return sender._ssrc, sender._rtx_ssrc


def on_retransmit(sender: RTCRtpSender, retransmit: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    """aiortc's NACK handling calls ``retransmit(sequence number)`` per lost packet instead of its own."""
    sender._retransmit = retransmit  # type: ignore[method-assign, assignment]


ReportListener = Callable[[int, int, int], None]
"""``(ssrc, fraction_lost in 1/256, extended highest sequence number)`` of one report block."""
RembListener = Callable[[int, list[int]], None]
"""``(bitrate in bits per second, SSRCs it covers)`` of one REMB."""


def observe_feedback(sender: RTCRtpSender, on_report: ReportListener, on_remb: RembListener) -> None:
    """Show ``sender``'s receiver-report blocks and REMB to the listeners, then let aiortc handle them."""
    handle = sender._handle_rtcp_packet
    ssrc = sender._ssrc

    async def observed(packet: Any) -> None:
        if isinstance(packet, aiortc.rtp.RtcpRrPacket | aiortc.rtp.RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == ssrc:
                    on_report(ssrc, report.fraction_lost, report.highest_sequence)
        elif isinstance(packet, aiortc.rtp.RtcpPsfbPacket) and packet.fmt == aiortc.rtp.RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = aiortc.rtp.unpack_remb_fci(packet.fci)
            except ValueError:
                pass
            else:
                if ssrc in ssrcs:
                    on_remb(bitrate, list(ssrcs))
        await handle(packet)

    sender._handle_rtcp_packet = observed  # type: ignore[method-assign]


SenderOutput = tuple[Callable[[bytes], bytes], Callable[[bytes, tuple[str, int]], None], tuple[str, int]]
"""(SRTP protect, sendto, remote address) of a sender's transport."""


def sender_output(sender: RTCRtpSender) -> SenderOutput | None:
    """Where ``sender``'s RTP goes now: the transport's SRTP session and the nominated ICE pair.

    None until the sender runs and its DTLS transport is connected over a nominated pair.
    """
    if not sender._enabled or not sender._RTCRtpSender__started:  # type: ignore[attr-defined]
        return None
    dtls = sender.transport
    if dtls._state is not _DTLS_CONNECTED:
        return None
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None:
        return None
    return dtls._tx_srtp.protect, pair.protocol.transport.sendto, pair.remote_addr


def count_sent(sender: RTCRtpSender, packets: int, octets: int, rtp_timestamp: int, ntp: int) -> None:
    """What aiortc's RTCP loop puts in sender reports (lip sync and RTT depend on them)."""
    s: Any = sender
    s._RTCRtpSender__packet_count += packets
    s._RTCRtpSender__octet_count += octets
    s._RTCRtpSender__rtp_timestamp = rtp_timestamp
    s._RTCRtpSender__ntp_timestamp = ntp


# --- negotiated codecs -----------------------------------------------------------------------------------

Negotiated = tuple[list[RTCRtpCodecParameters], list[RTCRtpHeaderExtensionParameters]]


def negotiated(transceiver: RTCRtpTransceiver) -> Negotiated:
    """The codecs (preferred first) and header extensions ``transceiver`` uses; empty before negotiation."""
    return transceiver._codecs, transceiver._headerExtensions


def set_negotiated(
    transceiver: RTCRtpTransceiver,
    codecs: list[RTCRtpCodecParameters],
    extensions: list[RTCRtpHeaderExtensionParameters],
) -> None:
    transceiver._codecs = codecs
    transceiver._headerExtensions = extensions


def default_codecs(kind: str) -> list[RTCRtpCodecParameters]:
    """aiortc's global codec table for ``kind`` (do not modify: copy)."""
    return aiortc.codecs.CODECS[kind]


def default_header_extensions(kind: str) -> list[RTCRtpHeaderExtensionParameters]:
    """aiortc's global header-extension table for ``kind`` (do not modify: copy)."""
    return aiortc.codecs.HEADER_EXTENSIONS[kind]


def rewrite_offer(
    sdp: str,
    codecs: dict[str, tuple[RTCRtpCodecParameters, ...]],
    extensions: dict[str, tuple[RTCRtpHeaderExtensionParameters, ...]],
) -> str:
    """``sdp`` with each m-line of a kind in ``codecs`` carrying exactly these codecs and extensions."""
    description = aiortc.sdp.SessionDescription.parse(sdp)
    for media in description.media:
        if media.kind in codecs:
            media.rtp.codecs = list(copy.deepcopy(codecs[media.kind]))
            media.fmt = [c.payloadType for c in media.rtp.codecs]
            media.rtp.headerExtensions = list(copy.deepcopy(extensions[media.kind]))
    return str(description)


# --- SDP -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SdpMedia:
    """The fields of one m-line as aiortc's parser reads them."""

    kind: str
    mid: str | None
    direction: str | None
    msid: str | None
    codecs: tuple[RTCRtpCodecParameters, ...]
    has_ice_credentials: bool  # ufrag and pwd
    has_fingerprint: bool  # DTLS
    ssrcs: tuple[int, ...] = ()  # declared with a=ssrc (media and RTX)


def parse_sdp_media(sdp: str) -> tuple[tuple[SdpMedia, ...], tuple[str, ...]]:
    """(m-lines, BUNDLE group) as ``setRemoteDescription`` will read them; raises whatever aiortc raises.

    aiortc re-serializes the stored description whenever it is read (``pc.remoteDescription``): one that
    parses but cannot be written back (an invalid address in ``c=`` or ``a=rtcp``) would fail later, on an
    unrelated message, so the round trip is part of parsing here.
    """
    description = aiortc.sdp.SessionDescription.parse(sdp)
    str(description)
    media = tuple(
        SdpMedia(
            kind=m.kind,
            mid=m.rtp.muxId or None,
            direction=m.direction,
            msid=m.msid,
            codecs=tuple(m.rtp.codecs),
            has_ice_credentials=m.ice is not None and bool(m.ice.usernameFragment) and bool(m.ice.password),
            has_fingerprint=m.dtls is not None and bool(m.dtls.fingerprints),
            ssrcs=tuple(dict.fromkeys(int(x.ssrc) for x in m.ssrc)),
        )
        for m in description.media
    )
    bundle = next((tuple(g.items) for g in description.group if g.semantic == "BUNDLE"), ())
    return media, tuple(str(i) for i in bundle)


def candidate_from_sdp(text: str) -> RTCIceCandidate:
    """aiortc's reading of an ``a=candidate`` value (without the ``candidate:`` prefix)."""
    return aiortc.sdp.candidate_from_sdp(text)


# --- host addresses --------------------------------------------------------------------------------------

HostAddresses = Callable[[bool, bool], list[str]]
"""``(use_ipv4, use_ipv6) -> addresses``: aioice's ``get_host_addresses``."""

aioice_host_addresses: Final[HostAddresses] = aioice.ice.get_host_addresses
"""aioice's own choice (every interface but loopback), kept before any replacement."""

_install_lock = threading.Lock()


def route_host_addresses(provider: HostAddresses) -> None:
    """Make aioice's candidate gathering ask ``provider`` for host addresses (idempotent)."""
    with _install_lock:
        if aioice.ice.get_host_addresses is not provider:
            aioice.ice.get_host_addresses = provider  # type: ignore[assignment]


# --- test links ------------------------------------------------------------------------------------------


class DatagramTap(Protocol):
    """Sits in a peer connection's UDP path; whatever it does not pass on is lost."""

    def incoming(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        """A datagram arrived from the network; ``deliver`` hands it to aiortc (now or later)."""

    def outgoing(self, data: bytes, send: Callable[[bytes], None]) -> None:
        """aiortc sends a datagram; ``send`` puts it on the socket (now or later)."""


_tapped: Final[weakref.WeakSet[aioice.ice.Connection]] = weakref.WeakSet()


def _ice_connections(pc: aiortc.RTCPeerConnection) -> list[aioice.ice.Connection]:
    dtls = [t.receiver.transport for t in pc.getTransceivers()] + [
        t.sender.transport for t in pc.getTransceivers()
    ]
    if pc.sctp is not None:
        dtls.append(pc.sctp.transport)
    found = {id(d.transport._connection): d.transport._connection for d in dtls if d is not None}
    return list(found.values())


def nominated_remote_host(pc: aiortc.RTCPeerConnection) -> str | None:
    """The client's address (host only) on ``pc``'s nominated ICE pair; None before ICE nominated one.
    Not to be logged or stored (PHI): ``vIOP.media.link_memory`` keeps a keyed digest of it."""
    for connection in _ice_connections(pc):
        pair = connection._nominated.get(1)
        if pair is not None:
            return str(pair.remote_addr[0])
    return None


def tap_datagrams(pc: aiortc.RTCPeerConnection, tap: DatagramTap) -> int:
    """Route every datagram of ``pc``'s ICE connections through ``tap``; returns how many were newly tapped.

    Idempotent; call it after each ``setLocalDescription`` (transports exist from then on, and data flows
    only once ICE has checked a pair). Sending goes to the nominated pair of the component, as aioice does;
    a datagram released after the pair is gone is lost.
    """
    added = 0
    for connection in _ice_connections(pc):
        if connection in _tapped:
            continue
        _tapped.add(connection)
        added += 1
        _tap_connection(connection, tap)
    return added


def _tap_connection(connection: aioice.ice.Connection, tap: DatagramTap) -> None:
    received = connection.data_received
    nominated = connection._nominated

    def data_received(data: bytes, component: int) -> None:
        tap.incoming(data, lambda d: received(d, component))

    async def sendto(data: bytes, component: int) -> None:
        pair = nominated.get(component)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")

        def send(d: bytes) -> None:
            now = nominated.get(component)
            if now is not None and not now.protocol.transport.is_closing():
                now.protocol.transport.sendto(d, now.remote_addr)

        tap.outgoing(data, send)

    connection.data_received = data_received  # type: ignore[method-assign]
    connection.sendto = sendto  # type: ignore[method-assign]


# --- canary ----------------------------------------------------------------------------------------------

INTERNALS: Final = (
    "aiortc version 1.16.x",
    "RTCRtpReceiver: __decoder_queue / __decoder_thread / __rtx_ssrc, _send_rtcp_pli, _handle_rtp_packet",
    "RTCDtlsTransport._rtp_router.ssrc_table routes RTP by SSRC; receive() registers only media SSRCs",
    "RtpRouter.payload_type_table: unknown SSRCs go to the one receiver of their payload type (screen share)",
    "RTCRtpReceiver.__nack_generator: add(packet) -> bool, then NACKs sorted(.missing)",
    "RTCRtpReceiver: __jitter_buffer.add(packet) -> (pli, frame) with packet._data depayloaded; "
    "__nack_generator (None: no NACKs); _send_rtcp_nack(media_ssrc, lost); RTCRtpSender.__rtt (publisher hop)",
    "RTCRtpReceiver: __remote_streams, __codecs; rtcrtpreceiver.StreamStatistics (packet-counting clients)",
    "rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error) reads input_q.get()",
    "RTCRtpSender: _send_keyframe, _stream_id, _track_id; codec pack() for non-Frame input",
    "RTCRtpSender._handle_rtcp_packet(packet) gets report blocks and REMB; aiortc.rtp RTCP classes",
    "RTCRtpSender: _ssrc, _rtx_ssrc, _enabled, __started, sender-report counters, _retransmit (DirectSender)",
    "RTCDtlsTransport: _state, _tx_srtp; aioice Connection._nominated, StunProtocol.transport (DirectSender)",
    "RTCDtlsTransport._handle_rtp_data(data, arrival_time_ms) awaited per unprotected RTP packet (observe_rtp)",
    "RTCRtpTransceiver: _codecs, _headerExtensions",
    "aioice.ice.get_host_addresses(use_ipv4, use_ipv6)",
    "aioice Connection: data_received(data, component), sendto, _nominated[component].protocol/remote_addr",
    "aiortc.sdp: SessionDescription.parse/str, candidate_from_sdp; aiortc.codecs: CODECS, HEADER_EXTENSIONS",
    "Simulcast: rtp.HeaderExtensionsMap parses sdes:rtp-stream-id/repaired-rtp-stream-id into "
    "packet.extensions; RTCRtpReceiver unwraps RTX by __rtx_ssrc; transceiver._headerExtensions feed the "
    "answer; RTCDtlsTransport._send_rtp and _rtp_router.register_sender for RTCP (test publishers)",
)


async def close_peer_connection(pc: aiortc.RTCPeerConnection, within: float) -> None:
    """Close ``pc``, waiting at most ``within`` seconds; its receivers' decoder threads end either way."""
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pc.close(), within)
    finally:
        for transceiver in pc.getTransceivers():
            transceiver.receiver._handle_disconnect()  # idempotent: puts the stop, joins the thread


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
    ingress = ("_RTCRtpReceiver__jitter_buffer", "_RTCRtpReceiver__nack_generator")
    problems += [
        f"RTCRtpReceiver.__init__ no longer sets {n}" for n in _assigns(receiver_cls.__init__, *ingress)
    ]
    problems += [
        f"RTCRtpReceiver._handle_rtp_packet no longer uses {n}"
        for n in _assigns(receiver_cls._handle_rtp_packet, *ingress, "_data", "add", "_send_rtcp_nack")
    ]
    if _assigns(receiver_cls._handle_disconnect, "_RTCRtpReceiver__stop_decoder"):
        problems.append("RTCRtpReceiver._handle_disconnect no longer stops the decoder")
    if not hasattr(receiver_cls, "_send_rtcp_nack"):
        problems.append("RTCRtpReceiver._send_rtcp_nack is gone")
    if "_RTCRtpSender__rtt" not in sender_cls._handle_rtcp_packet.__code__.co_names:
        problems.append("RTCRtpSender._handle_rtcp_packet no longer measures __rtt from receiver reports")
    problems += [f"RTCRtpSender no longer has {n}" for n in _assigns(sender_cls.__init__, "_stream_id")]
    problems += [f"RTCRtpSender no longer has {n}" for n in _assigns(sender_cls.replaceTrack, "_track_id")]
    if "_send_keyframe" not in sender_cls._handle_rtcp_packet.__code__.co_names:
        problems.append("RTCRtpSender._handle_rtcp_packet no longer calls _send_keyframe on PLI/FIR")
    if sender_cls._handle_rtcp_packet.__code__.co_varnames[:2] != ("self", "packet"):
        problems.append("RTCRtpSender._handle_rtcp_packet(packet) changed")
    for name in ("RtcpRrPacket", "RtcpSrPacket", "RtcpPsfbPacket", "RTCP_PSFB_APP", "unpack_remb_fci"):
        if not hasattr(aiortc.rtp, name):
            problems.append(f"aiortc.rtp.{name} is gone")
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
    recv_next = dtls_cls._recv_next.__code__
    if "_handle_rtp_data" not in recv_next.co_names or dtls_cls._handle_rtp_data.__code__.co_varnames[:3] != (
        "self",
        "data",
        "arrival_time_ms",
    ):
        problems.append("RTCDtlsTransport._recv_next no longer calls _handle_rtp_data(data, arrival_time_ms)")
    if "_nominated" not in aioice.ice.Connection.sendto.__code__.co_names:
        problems.append("aioice Connection.sendto no longer sends on _nominated pairs")
    problems += _tap_problems()
    problems += _client_receiver_problems()
    problems += _simulcast_problems()
    if "sendto" not in aioice.ice.StunProtocol.send_data.__code__.co_names:
        problems.append("aioice StunProtocol.send_data is no longer transport.sendto")
    worker = getattr(aiortc.rtcrtpreceiver, "decoder_worker", None)
    if worker is None or worker.__code__.co_varnames[:4] != ("loop", "input_q", "output_q", "decode_error"):
        problems.append("rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error) changed")
    problems += [
        f"RTCRtpReceiver.__init__ no longer sets {n}"
        for n in _assigns(receiver_cls.__init__, "_RTCRtpReceiver__remote_streams", "_RTCRtpReceiver__codecs")
    ]
    if not hasattr(aiortc.rtcrtpreceiver, "StreamStatistics"):
        problems.append("aiortc.rtcrtpreceiver.StreamStatistics is gone")
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
        probe = EncodedFrame(b"\x10\x02\x00", 3000, time_base(90000), True)
        payloads, timestamp = vp8.pack(probe)  # type: ignore[arg-type]  # duck-typed av.Packet
        if timestamp != 3000 or not payloads or not payloads[0].endswith(b"\x10\x02\x00"):
            problems.append("VP8 pack() no longer packetizes an EncodedFrame unchanged")
    except Exception as exc:
        problems.append(f"VP8 pack() rejects an EncodedFrame: {exc!r}")
    return problems


def _client_receiver_problems() -> list[str]:
    """The hooks ``vIOP.client`` puts on its receivers: RTX routing, browser-like NACKs, packet observer."""
    problems = []
    receiver_cls = aiortc.rtcrtpreceiver.RTCRtpReceiver
    if "_RTCRtpReceiver__nack_generator" not in receiver_cls.__init__.__code__.co_names:
        problems.append("RTCRtpReceiver no longer keeps __nack_generator")
    handle_names = receiver_cls._handle_rtp_packet.__code__.co_names
    if not {"_RTCRtpReceiver__nack_generator", "add", "missing", "_send_rtcp_nack"} <= set(handle_names):
        problems.append(
            "RTCRtpReceiver._handle_rtp_packet no longer NACKs nack_generator.missing after add()"
        )
    dtls_init = aiortc.rtcdtlstransport.RTCDtlsTransport.__init__.__code__.co_names
    router = aiortc.rtcdtlstransport.RtpRouter
    if "_rtp_router" not in dtls_init or "ssrc_table" not in router.route_rtp.__code__.co_names:
        problems.append("RTCDtlsTransport._rtp_router no longer routes RTP by ssrc_table (RTX routing)")
    if "payload_type_table" not in router.route_rtp.__code__.co_names:
        problems.append("RtpRouter.route_rtp no longer falls back to payload_type_table (screen share)")
    if "_register_rtp_receiver" not in aiortc.rtcrtpreceiver.RTCRtpReceiver.receive.__code__.co_names:
        problems.append("RTCRtpReceiver.receive no longer registers with the transport (RTX routing)")
    if (
        "_handle_rtp_packet"
        not in aiortc.rtcdtlstransport.RTCDtlsTransport._handle_rtp_data.__code__.co_names
    ):
        problems.append(
            "RTCDtlsTransport._handle_rtp_data no longer hands packets to receiver._handle_rtp_packet"
        )
    return problems


def _simulcast_problems() -> list[str]:
    """The publisher hop's simulcast receive: RID extensions parsed, RTX learned per SSRC, answer extensions."""
    problems = []
    extensions_map = aiortc.rtp.HeaderExtensionsMap
    for n in ("rtp_stream_id", "repaired_rtp_stream_id"):
        if (
            n not in extensions_map.configure.__code__.co_names
            or n not in extensions_map.get.__code__.co_names
        ):
            problems.append(f"aiortc.rtp.HeaderExtensionsMap no longer reads {n}")
    handle = aiortc.rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet.__code__.co_names
    if "_RTCRtpReceiver__rtx_ssrc" not in handle or "unwrap_rtx" not in handle:
        problems.append("RTCRtpReceiver._handle_rtp_packet no longer unwraps RTX by __rtx_ssrc")
    describe = aiortc.rtcpeerconnection.create_media_description_for_transceiver
    if "_headerExtensions" not in describe.__code__.co_names:
        problems.append("aiortc's answer no longer lists transceiver._headerExtensions")
    if not hasattr(aiortc.rtcdtlstransport.RTCDtlsTransport, "_send_rtp"):
        problems.append("RTCDtlsTransport._send_rtp is gone")
    rtcp = aiortc.rtcdtlstransport.RTCDtlsTransport._handle_rtcp_data.__code__.co_names
    if "route_rtcp" not in rtcp or "_handle_rtcp_packet" not in rtcp:
        problems.append("RTCDtlsTransport no longer hands RTCP to the router's senders (test publishers)")
    for name in ("RTCP_PSFB_PLI", "RTCP_PSFB_FIR", "RtcpPsfbPacket", "RTCP_RTPFB_NACK", "RtcpRtpfbPacket"):
        if not hasattr(aiortc.rtp, name):
            problems.append(f"aiortc.rtp.{name} is gone")
    return problems


def _tap_problems() -> list[str]:
    problems = []
    if "data_received" not in aioice.ice.StunProtocol.datagram_received.__code__.co_names:
        problems.append("aioice StunProtocol.datagram_received no longer calls receiver.data_received")
    if "sendto" not in aioice.ice.Connection.send.__code__.co_names:
        problems.append("aioice Connection.send no longer goes through sendto")
    if "_connection" not in aiortc.RTCIceTransport.__init__.__code__.co_names:
        problems.append("RTCIceTransport no longer keeps its aioice _connection")
    return problems


def check_internals() -> None:
    """Raise :class:`StartupError` naming every broken assumption (see :data:`INTERNALS`)."""
    problems = internals_problems()
    if problems:
        raise StartupError("aiortc internals changed; media pass-through would break: " + "; ".join(problems))
