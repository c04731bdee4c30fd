"""The fast path out: a leg's frames written as RTP on one server-side ``RTCRtpSender``'s stream, synchronously.

aiortc's sender loop costs a task switch per frame and builds an ``RtpPacket`` object, two datetimes and a
generic header-extension list per packet. :class:`DirectSender` writes the same bytes (SSRC, payload type,
header extensions (``mid``, abs-send-time on video, the publisher's RFC 6464 audio level on audio) and picture
ids as negotiated for that sender; :class:`~vIOP.media.rtp.RtpWriter` packs
them) straight from the fan-out: SRTP by the transport's own session, ``sendto`` on the nominated ICE pair.
The aiortc sender stays in charge of everything else: RTCP (its sender reports read the counters kept
here), NACKs (answered from the writer's history, RTX as negotiated), PLI/FIR (``on_keyframe_request``). NACKs are answered only within the subscriber's retransmission budget
(:class:`~vIOP.media.budget.RtxBudget`) and only for packets young enough to still help.
Legs without a direct sender are read by aiortc's own sender loop through ``pack()``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Final

from aiortc import RTCRtpSender, RTCRtpTransceiver

from vIOP.media import aiortc_internals
from vIOP.media.budget import RtxBudget
from vIOP.media.frames import RTX_CODEC
from vIOP.media.rtp import PADDING_OCTETS, RtpWriter, ntp_time

ABS_SEND_TIME: Final = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID: Final = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL: Final = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"  # RFC 6464

# Bound once: ``send`` runs per frame per subscriber (the hot path), no module attribute lookup there.
_sender_output = aiortc_internals.sender_output
_count_sent = aiortc_internals.count_sent


class DirectSender:
    """Writes one sender's stream; aiortc's NACK handling is pointed at this writer's history."""

    __slots__ = (
        "_budget",
        "_clock",
        "_sender",
        "_writer",
        "octets_sent",
        "packets",
        "probe_octets_sent",
        "rtx_octets_sent",
    )

    def __init__(
        self,
        sender: RTCRtpSender,
        kind: str,
        budget: RtxBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``budget`` is shared by every sender of one subscriber (None: every NACK is answered)."""
        self._sender = sender
        self._budget = budget
        self._clock = clock
        ssrc, rtx_ssrc = aiortc_internals.sender_ssrcs(sender)
        self._writer = RtpWriter(
            video=kind == "video",
            ssrc=ssrc,
            rtx_ssrc=rtx_ssrc,
            sequence=secrets.randbelow(32768),  # lower half: avoids an early wrap (as aiortc does)
            rtx_sequence=secrets.randbelow(32768),
            timestamp_origin=secrets.randbits(32),
            picture_id=secrets.randbelow(1 << 15),
        )
        self.packets = 0
        self.octets_sent = 0  # protected RTP as it leaves, media and retransmissions
        self.rtx_octets_sent = 0
        self.probe_octets_sent = 0
        aiortc_internals.on_retransmit(sender, self._retransmit)

    def configure(self, transceiver: RTCRtpTransceiver) -> None:
        """Take the negotiated payload types and header-extension ids (call once an answer is applied)."""
        codecs, extensions = aiortc_internals.negotiated(transceiver)
        pt = codecs[0].payloadType
        rtx_pt = next(
            (c.payloadType for c in codecs if c.mimeType == RTX_CODEC and c.parameters.get("apt") == pt),
            None,
        )
        ids = {e.uri: e.id for e in extensions}
        self._writer.configure(
            payload_type=pt,
            rtx_payload_type=rtx_pt,
            mid=transceiver.mid,
            mid_id=ids.get(MID),
            abs_send_time_id=ids.get(ABS_SEND_TIME),
            audio_level_id=ids.get(AUDIO_LEVEL),
        )

    def send(self, data: bytes, pts: int, audio_level: int | None = None) -> bool:
        """Packetize, protect and send one frame now; False if the stream cannot carry it yet.

        ``audio_level``: the publisher's RFC 6464 byte, forwarded unchanged (subscribers' own
        active-speaker displays and level meters read it)."""
        writer = self._writer
        if writer.payload_type is None:
            return False
        output = _sender_output(self._sender)
        if output is None:
            return False
        protect, sendto, addr = output
        ntp = ntp_time(time.time_ns())
        packets, octets, timestamp = writer.frame(data, pts, ntp, audio_level)
        sent = 0
        for packet in packets:
            protected = protect(packet)
            sent += len(protected)
            sendto(protected, addr)
        self.octets_sent += sent
        self.packets += len(packets)
        _count_sent(self._sender, len(packets), octets, timestamp, ntp)
        return True

    def pad(self, octets: int) -> int:
        """Send about ``octets`` of padding on this stream now (a bandwidth probe); returns what was sent."""
        writer = self._writer
        output = _sender_output(self._sender)
        if writer.payload_type is None or output is None or octets <= 0:
            return 0
        protect, sendto, addr = output
        packets = writer.padding(max(1, octets // PADDING_OCTETS), ntp_time(time.time_ns()))
        sent = 0
        for packet in packets:
            protected = protect(packet)
            sent += len(protected)
            sendto(protected, addr)
        self.octets_sent += sent
        self.probe_octets_sent += sent
        self.packets += len(packets)
        return sent

    async def _retransmit(self, sequence_number: int) -> None:
        """NACK handling (aiortc calls this per lost sequence number): resend from history, RTX if negotiated."""
        output = _sender_output(self._sender)
        if output is None:
            return
        ntp = ntp_time(time.time_ns())
        writer = self._writer
        size = writer.retransmittable(sequence_number, ntp)
        if size is None:
            return
        if self._budget is not None and not self._budget.take(self._clock(), size):
            return
        packet = writer.retransmission(sequence_number, ntp)
        if packet is not None:
            protect, sendto, addr = output
            protected = protect(packet)
            self.octets_sent += len(protected)
            self.rtx_octets_sent += len(protected)
            sendto(protected, addr)
