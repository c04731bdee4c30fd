"""RTP as the relay writes it, and its parse: pure functions and one writer, bytes in and bytes out.

- RFC 3550 fixed header; RFC 8285 one-byte header extensions (``mid``, ``abs-send-time`` on video, the RFC 6464
  client-to-mixer audio level on audio);
- RFC 7741 VP8 payload descriptor with a 15-bit picture id on every packet, as aiortc's ``Vp8Encoder.pack``;
- RFC 4588 RTX: the original sequence number, then the original payload, on the RTX SSRC and payload type.

No I/O, no clock, no randomness, no aiortc: :class:`RtpWriter` is given its SSRCs, first sequence numbers,
timestamp origin and picture id, and the NTP time of each write, so the same inputs give the same bytes.
``tests/media/test_rtp.py`` checks it against packets captured from aiortc's own sender
(``tests/media/fixtures/``). ``vIOP.media.direct_sender`` protects (SRTP) and sends what it returns.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

RTP_HEADER: Final = struct.Struct("!BBHII")
PACKET_MAX: Final = 1300  # aiortc's PACKET_MAX for a VP8 payload
VP8_MAX_CHUNK: Final = PACKET_MAX - 4  # minus our 4-byte payload descriptor
HISTORY_SIZE: Final = 128  # aiortc's RTP_HISTORY_SIZE: packets a NACK can still recover
PADDING_RUNS: Final = 32  # padding bursts remembered apart from the history (a probe goes out in 8-ish)
MAX_RETRANSMIT_AGE: Final = 1 << 32  # one second in NTP units: a later repair only adds to a congested link
ONE_BYTE_EXTENSIONS: Final = 0xBEDE
LEVEL_MASK: Final = 0x7F  # RFC 6464: the low seven bits, -dBov (0 loudest, 127 silence); the top bit is V
NTP_EPOCH_OFFSET_NS: Final = 2_208_988_800 * 1_000_000_000
_VERSION_2: Final = 0x80
_EXTENSION_BIT: Final = 0x10
_MARKER: Final = 0x80
_PADDING_BIT: Final = 0x20
PADDING_OCTETS: Final = 255  # the most one packet's padding can be (its length is one octet)
_SEQUENCE: Final = struct.Struct("!H")
_WORD: Final = struct.Struct("!I")
_EXTENSION_HEADER: Final = struct.Struct("!HH")


def ntp_time(unix_ns: int) -> int:
    """64-bit NTP time of a Unix time in nanoseconds (one clock read; aiortc's builds two datetimes)."""
    seconds, fraction = divmod(unix_ns + NTP_EPOCH_OFFSET_NS, 1_000_000_000)
    return (seconds << 32) | ((fraction << 32) // 1_000_000_000)


def abs_send_time(ntp: int) -> int:
    """The 24-bit abs-send-time value (6.18 fixed point seconds) of a 64-bit NTP time."""
    return (ntp >> 14) & 0xFFFFFF


def vp8_payloads(data: bytes, picture_id: int) -> list[bytes]:
    """RFC 7741 packetization as aiortc's ``Vp8Encoder.pack`` does it (15-bit picture id on every packet)."""
    pid = _SEQUENCE.pack(0x8000 | picture_id)
    first, rest = b"\x90\x80" + pid, b"\x80\x80" + pid
    return [(rest if i else first) + data[i : i + VP8_MAX_CHUNK] for i in range(0, len(data), VP8_MAX_CHUNK)]


def mid_element(extension_id: int, mid: bytes) -> bytes:
    """The one-byte-header element carrying the m-line's ``mid`` (empty when not negotiated)."""
    if not extension_id or not mid:
        return b""
    return bytes([(extension_id << 4) | (len(mid) - 1)]) + mid


def extension_block(
    mid: bytes, abs_send_time_id: int, ntp: int, audio_level_id: int = 0, audio_level: int | None = None
) -> bytes:
    """The whole header-extension block (profile, length, elements, zero padding), or b"" for none.

    Elements in aiortc's order (mid, abs-send-time, audio level); ``audio_level`` is the RFC 6464 byte
    (voice-activity bit and level), written as received when its id is negotiated.
    """
    block = mid
    if abs_send_time_id:
        block += _WORD.pack((abs_send_time_id << 28) | (2 << 24) | abs_send_time(ntp))
    if audio_level_id and audio_level is not None:
        block += bytes((audio_level_id << 4, audio_level & 0xFF))
    if not block:
        return b""
    block += b"\x00" * (-len(block) % 4)
    return _EXTENSION_HEADER.pack(ONE_BYTE_EXTENSIONS, len(block) // 4) + block


def read_audio_level(packet: bytes, extension_id: int) -> tuple[int, int] | None:
    """(RTP timestamp, RFC 6464 byte) of an unprotected RTP packet, or None when it carries no such element.

    Runs on every audio packet a publisher sends: it walks the header extension only, never copies the
    payload, and returns None (never raises) for anything it cannot read (RFC 8285 one- and two-byte
    headers; a two-byte-header element may carry the level in a longer value, the first byte counts).
    """
    if len(packet) < 16 or not packet[0] & _EXTENSION_BIT or not 0 < extension_id < 256:
        return None
    pos = RTP_HEADER.size + 4 * (packet[0] & 0x0F)  # after any CSRCs
    if len(packet) < pos + 4:
        return None
    profile, words = _EXTENSION_HEADER.unpack_from(packet, pos)
    pos += 4
    end = min(pos + 4 * words, len(packet))
    timestamp: int = _WORD.unpack_from(packet, 4)[0]
    if profile == ONE_BYTE_EXTENSIONS:
        while pos < end:
            head = packet[pos]
            if head == 0:  # padding
                pos += 1
                continue
            ext_id = head >> 4
            if ext_id == 15:  # RFC 8285: stop reading at the reserved id
                return None
            if ext_id == extension_id:
                return (timestamp, packet[pos + 1]) if pos + 1 < end else None
            pos += 2 + (head & 0x0F)
    elif profile & 0xFFF0 == 0x1000:  # two-byte header
        while pos + 1 < end:
            ext_id, length = packet[pos], packet[pos + 1]
            if ext_id == 0:
                pos += 1
                continue
            if ext_id == extension_id:
                return (timestamp, packet[pos + 2]) if length and pos + 2 < end else None
            pos += 2 + length
    return None


def read_extension(packet: bytes, extension_id: int) -> bytes | None:
    """The value of header-extension element ``extension_id`` of an unprotected RTP packet, or None.

    For the simulcast stream ids (``sdes:rtp-stream-id``, ``sdes:repaired-rtp-stream-id``); like
    :func:`read_audio_level` it reads one- and two-byte headers and never raises.
    """
    if len(packet) < 16 or not packet[0] & _EXTENSION_BIT or not 0 < extension_id < 256:
        return None
    pos = RTP_HEADER.size + 4 * (packet[0] & 0x0F)
    if len(packet) < pos + 4:
        return None
    profile, words = _EXTENSION_HEADER.unpack_from(packet, pos)
    pos += 4
    end = min(pos + 4 * words, len(packet))
    if profile == ONE_BYTE_EXTENSIONS:
        while pos < end:
            head = packet[pos]
            if head == 0:
                pos += 1
                continue
            ext_id, length = head >> 4, (head & 0x0F) + 1
            if ext_id == 15:
                return None
            if ext_id == extension_id:
                return packet[pos + 1 : pos + 1 + length] if pos + 1 + length <= end else None
            pos += 1 + length
    elif profile & 0xFFF0 == 0x1000:
        while pos + 1 < end:
            ext_id, length = packet[pos], packet[pos + 1]
            if ext_id == 0:
                pos += 1
                continue
            if ext_id == extension_id:
                return packet[pos + 2 : pos + 2 + length] if pos + 2 + length <= end else None
            pos += 2 + length
    return None


def packet_ssrc(packet: bytes) -> int:
    """The SSRC of an RTP packet of at least 12 bytes."""
    ssrc: int = _WORD.unpack_from(packet, 8)[0]
    return ssrc


def rtx_payload(original_sequence: int, payload: bytes) -> bytes:
    """RFC 4588 section 4: the original sequence number, then the original payload."""
    return _SEQUENCE.pack(original_sequence) + payload


class RtpWriter:
    """One outgoing stream (a sender's SSRC and, for video, its RTX SSRC): sequence numbers, timestamps,
    picture ids and the history a NACK is answered from. Returns unprotected RTP packets.

    Until :meth:`configure` gives it the negotiated payload types, :attr:`payload_type` is None and it must
    not be asked to write.
    """

    __slots__ = (
        "_abs_id",
        "_history",
        "_last_timestamp",
        "_level_id",
        "_mid",
        "_padding",
        "_picture_id",
        "_rtx_sequence",
        "_rtx_ssrc",
        "_sequence",
        "_ssrc",
        "_timestamp_origin",
        "_video",
        "payload_type",
        "rtx_payload_type",
    )

    def __init__(
        self,
        *,
        video: bool,
        ssrc: int,
        rtx_ssrc: int,
        sequence: int,
        rtx_sequence: int,
        timestamp_origin: int,
        picture_id: int,
    ) -> None:
        self._video = video
        self._ssrc = ssrc
        self._rtx_ssrc = rtx_ssrc
        self._sequence = sequence
        self._rtx_sequence = rtx_sequence
        self._timestamp_origin = timestamp_origin
        self._last_timestamp = timestamp_origin
        self._picture_id = picture_id
        self.payload_type: int | None = None
        self.rtx_payload_type: int | None = None
        self._mid = b""
        self._abs_id = 0
        self._level_id = 0
        # (sequence number, marker, timestamp, payload, NTP time sent)
        self._history: list[tuple[int, int, int, bytes, int] | None] = [None] * HISTORY_SIZE
        # (first sequence number, count, timestamp, NTP time sent) of the latest padding bursts
        self._padding: deque[tuple[int, int, int, int]] = deque(maxlen=PADDING_RUNS)

    def configure(
        self,
        *,
        payload_type: int | None,
        rtx_payload_type: int | None,
        mid: str | None,
        mid_id: int | None,
        abs_send_time_id: int | None,
        audio_level_id: int | None = None,
    ) -> None:
        """The negotiated numbers: payload types and header-extension ids (abs-send-time on video only,
        the audio level on audio only)."""
        self.payload_type = payload_type
        self.rtx_payload_type = rtx_payload_type
        self._mid = mid_element(mid_id or 0, (mid or "").encode())
        self._abs_id = (abs_send_time_id or 0) if self._video else 0
        self._level_id = 0 if self._video else (audio_level_id or 0)

    def frame(
        self, data: bytes, pts: int, ntp: int, audio_level: int | None = None
    ) -> tuple[list[bytes], int, int]:
        """One frame's packets (the last carries the marker), payload octets, and the RTP timestamp.

        ``audio_level``: the publisher's RFC 6464 byte for this frame, forwarded when negotiated."""
        if self._video:
            payloads = vp8_payloads(data, self._picture_id)
            self._picture_id = (self._picture_id + 1) & 0x7FFF
        else:
            payloads = [data]
        timestamp = (self._timestamp_origin + pts) & 0xFFFFFFFF
        ext = extension_block(self._mid, self._abs_id, ntp, self._level_id, audio_level)
        first_byte = _VERSION_2 | _EXTENSION_BIT if ext else _VERSION_2
        pack = RTP_HEADER.pack
        pt, ssrc, history = self.payload_type, self._ssrc, self._history
        last = len(payloads) - 1
        seq, octets = self._sequence, 0
        packets = []
        for i, payload in enumerate(payloads):
            marker = _MARKER if i == last else 0
            history[seq % HISTORY_SIZE] = (seq, marker, timestamp, payload, ntp)
            packets.append(pack(first_byte, marker | pt, seq, timestamp, ssrc) + ext + payload)  # type: ignore[operator]
            seq = (seq + 1) & 0xFFFF
            octets += len(payload)
        self._sequence = seq
        self._last_timestamp = timestamp
        return packets, octets, timestamp

    def padding(self, count: int, ntp: int) -> list[bytes]:
        """``count`` padding-only packets of :data:`PADDING_OCTETS` on the media SSRC (RFC 3550 5.1: the P bit,
        the last octet counts the padding), taking the next sequence numbers: a bandwidth probe whose losses
        the receiver reports like the stream's own. Not kept in the history (a probe would push out the media a
        NACK may still recover), but remembered apart: a NACK for a lost padding packet is answered with an
        empty retransmission, because a receiver that reassembles frames in sequence order (aiortc's jitter
        buffer) otherwise holds every later frame behind the hole (measured: ~10 s freezes on a randomly
        lossy link once probes ran on it)."""
        ext = extension_block(self._mid, self._abs_id, ntp)
        first_byte = (_VERSION_2 | _EXTENSION_BIT if ext else _VERSION_2) | _PADDING_BIT
        payload = bytes(PADDING_OCTETS - 1) + bytes([PADDING_OCTETS])
        pack, pt, ssrc, timestamp = RTP_HEADER.pack, self.payload_type, self._ssrc, self._last_timestamp
        seq, packets = self._sequence, []
        if count > 0:
            self._padding.append((seq, count, timestamp, ntp))
        for _ in range(count):
            packets.append(pack(first_byte, pt, seq, timestamp, ssrc) + ext + payload)
            seq = (seq + 1) & 0xFFFF
        self._sequence = seq
        return packets

    def _sent(self, sequence_number: int) -> tuple[int, int, bytes, int] | None:
        """(marker, timestamp, payload, NTP time sent) of a packet still in the history or a padding burst."""
        entry = self._history[sequence_number % HISTORY_SIZE]
        if entry is not None and entry[0] == sequence_number:
            return entry[1], entry[2], entry[3], entry[4]
        for first, count, timestamp, sent in self._padding:
            if (sequence_number - first) & 0xFFFF < count:
                return 0, timestamp, b"", sent
        return None

    def retransmittable(self, sequence_number: int, ntp: int) -> int | None:
        """Payload size of ``sequence_number`` if a NACK for it may still be answered at ``ntp``: in the
        history (or a padding burst: size 0) and sent less than :data:`MAX_RETRANSMIT_AGE` ago. None
        otherwise."""
        sent = self._sent(sequence_number)
        if sent is None or self.payload_type is None or ntp - sent[3] > MAX_RETRANSMIT_AGE:
            return None
        return len(sent[2])

    def retransmission(self, sequence_number: int, ntp: int) -> bytes | None:
        """The packet answering a NACK for ``sequence_number``: RTX if negotiated, else the packet again (a
        padding packet comes back empty: RFC 4588's RTX payload is then the original sequence number alone).

        None when it is no longer in the history, or too old (see :meth:`retransmittable`).
        """
        if self.retransmittable(sequence_number, ntp) is None:
            return None
        sent = self._sent(sequence_number)
        assert sent is not None and self.payload_type is not None
        marker, timestamp, payload, _sent = sent
        ext = extension_block(self._mid, self._abs_id, ntp)
        first_byte = _VERSION_2 | _EXTENSION_BIT if ext else _VERSION_2
        if self.rtx_payload_type is not None:
            header = RTP_HEADER.pack(
                first_byte, marker | self.rtx_payload_type, self._rtx_sequence, timestamp, self._rtx_ssrc
            )
            self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
            return header + ext + rtx_payload(sequence_number, payload)
        return (
            RTP_HEADER.pack(first_byte, marker | self.payload_type, sequence_number, timestamp, self._ssrc)
            + ext
            + payload
        )


# --- parse -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """The fields of one RTP packet (no CSRCs: the relay never writes any and refuses to read them)."""

    marker: bool
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    extensions: dict[int, bytes]  # one-byte-header elements by id
    payload: bytes


def parse_rtp(packet: bytes) -> RtpPacket:
    """Read an unprotected RTP packet; ValueError if it is not one this module could have written."""
    if len(packet) < RTP_HEADER.size:
        raise ValueError("rtp: shorter than the fixed header")
    first, second, sequence, timestamp, ssrc = RTP_HEADER.unpack_from(packet)
    if first & 0xC0 != _VERSION_2 or first & 0x2F:
        raise ValueError("rtp: not version 2 without padding and CSRCs")
    pos = RTP_HEADER.size
    extensions: dict[int, bytes] = {}
    if first & _EXTENSION_BIT:
        if len(packet) < pos + 4:
            raise ValueError("rtp: truncated header extension")
        profile, words = _EXTENSION_HEADER.unpack_from(packet, pos)
        pos += 4
        end = pos + 4 * words
        if profile != ONE_BYTE_EXTENSIONS or len(packet) < end:
            raise ValueError("rtp: not a one-byte header extension block")
        while pos < end:
            if packet[pos] == 0:  # padding
                pos += 1
                continue
            ext_id, length = packet[pos] >> 4, (packet[pos] & 0x0F) + 1
            if ext_id == 15 or pos + 1 + length > end:
                raise ValueError("rtp: bad header extension element")
            extensions[ext_id] = packet[pos + 1 : pos + 1 + length]
            pos += 1 + length
    return RtpPacket(
        bool(second & _MARKER), second & 0x7F, sequence, timestamp, ssrc, extensions, packet[pos:]
    )


def pack_rtp(packet: RtpPacket) -> bytes:
    """The inverse of :func:`parse_rtp`: elements in their order, zero padding to a 32-bit boundary."""
    block = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in packet.extensions.items())
    if block:
        block += b"\x00" * (-len(block) % 4)
        block = _EXTENSION_HEADER.pack(ONE_BYTE_EXTENSIONS, len(block) // 4) + block
    first = _VERSION_2 | _EXTENSION_BIT if block else _VERSION_2
    second = (_MARKER if packet.marker else 0) | packet.payload_type
    header = RTP_HEADER.pack(first, second, packet.sequence_number, packet.timestamp, packet.ssrc)
    return header + block + packet.payload


@dataclass(frozen=True, slots=True)
class Vp8Payload:
    start: bool  # S bit: first packet of a partition (with partition id 0: of a frame)
    picture_id: int | None
    data: bytes


def parse_vp8_payload(payload: bytes) -> Vp8Payload:
    """RFC 7741 section 4.2 payload descriptor (X, I with 7- or 15-bit picture id, L, T/K); ValueError if bad."""
    try:
        first = payload[0]
        pos, picture_id = 1, None
        if first & 0x80:
            flags = payload[1]
            pos = 2
            if flags & 0x80:
                if payload[pos] & 0x80:
                    picture_id = _SEQUENCE.unpack_from(payload, pos)[0] & 0x7FFF
                    pos += 2
                else:
                    picture_id = payload[pos]
                    pos += 1
            pos += bool(flags & 0x40) + bool(flags & 0x30)
        if pos > len(payload):
            raise IndexError
    except (IndexError, struct.error) as exc:
        raise ValueError("vp8: truncated payload descriptor") from exc
    return Vp8Payload(bool(first & 0x10), picture_id, payload[pos:])


def starts_vp8_keyframe(payload: bytes) -> bool:
    """The packet's payload is the first of a VP8 key frame (RFC 7741 S bit, partition 0; RFC 6386 9.1)."""
    if not payload or payload[0] & 0x17 != 0x10:
        return False
    try:
        data = parse_vp8_payload(payload).data
    except ValueError:
        return False
    return bool(data) and not data[0] & 0x01


def parse_rtx_payload(payload: bytes) -> tuple[int, bytes]:
    """(original sequence number, original payload) of an RTX payload; ValueError if too short."""
    if len(payload) < 2:
        raise ValueError("rtx: shorter than the original sequence number")
    return _SEQUENCE.unpack_from(payload)[0], payload[2:]
