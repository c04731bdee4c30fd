"""The RTP writer and parser against packets aiortc's own sender wrote (``fixtures/aiortc_rtp.json``).

The fixture holds, per stream, every input aiortc's sender used (SSRCs, first sequence numbers, timestamp
origin, picture id, negotiated numbers, the NTP time of each frame) and the packets it serialized before
SRTP; ``fixtures/capture_rtp.py`` made it from a real loopback session. The writer must produce exactly
those bytes from the same inputs, and the parser must read the fields back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiortc.rtp
import pytest
from aiortc import RTCRtpHeaderExtensionParameters, RTCRtpParameters

from vIOP.media.rtp import (
    PADDING_OCTETS,
    RtpPacket,
    RtpWriter,
    abs_send_time,
    ntp_time,
    pack_rtp,
    parse_rtp,
    parse_rtx_payload,
    parse_vp8_payload,
    read_audio_level,
    starts_vp8_keyframe,
    vp8_payloads,
)

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "aiortc_rtp.json").read_text())
STREAMS = {s["kind"]: s for s in FIXTURE["streams"]}


def writer_for(stream: dict[str, Any]) -> RtpWriter:
    writer = RtpWriter(
        video=stream["kind"] == "video",
        ssrc=stream["ssrc"],
        rtx_ssrc=stream["rtx_ssrc"],
        sequence=stream["sequence"],
        rtx_sequence=stream["rtx_sequence"],
        timestamp_origin=stream["timestamp_origin"],
        picture_id=stream["picture_id"],
    )
    writer.configure(
        payload_type=stream["payload_type"],
        rtx_payload_type=stream["rtx_payload_type"],
        mid=stream["mid"],
        mid_id=stream["mid_id"],
        abs_send_time_id=stream["abs_send_time_id"],
    )
    return writer


def all_packets(stream: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(p) for f in stream["frames"] for p in f["packets"]]


def test_the_fixture_covers_fragmented_vp8_rtx_and_opus() -> None:
    video, audio = STREAMS["video"], STREAMS["audio"]
    assert len(video["frames"][0]["packets"]) > 1  # a keyframe split over packets
    assert video["rtx_payload_type"] is not None and audio["rtx_payload_type"] is None
    assert video["abs_send_time_id"] and video["mid_id"] and audio["mid_id"]


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_writer_writes_exactly_what_aiortc_wrote(kind: str) -> None:
    stream = STREAMS[kind]
    writer = writer_for(stream)
    for frame in stream["frames"]:
        data = bytes.fromhex(frame["data"])
        packets, octets, timestamp = writer.frame(data, frame["pts"], frame["ntp"])
        assert [p.hex() for p in packets] == frame["packets"]
        assert timestamp == (stream["timestamp_origin"] + frame["pts"]) & 0xFFFFFFFF
        assert octets == sum(len(parse_rtp(p).payload) for p in packets)


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_retransmissions_are_what_aiortc_resent(kind: str) -> None:
    """Video: RTX on its own SSRC and sequence numbers; audio (no RTX negotiated): the packet again."""
    stream = STREAMS[kind]
    writer = writer_for(stream)
    for frame in stream["frames"]:
        writer.frame(bytes.fromhex(frame["data"]), frame["pts"], frame["ntp"])
    for entry in stream["retransmissions"]:
        assert writer.retransmission(entry["sequence_number"], entry["ntp"]) == bytes.fromhex(entry["packet"])
    assert writer.retransmission((stream["sequence"] - 1) & 0xFFFF, 0) is None  # never sent


def test_parse_reads_the_fields_aiortc_wrote() -> None:
    stream = STREAMS["video"]
    sequence = stream["sequence"]
    picture_id = stream["picture_id"]
    for frame in stream["frames"]:
        packets = [parse_rtp(bytes.fromhex(p)) for p in frame["packets"]]
        assert [p.sequence_number for p in packets] == [(sequence + i) & 0xFFFF for i in range(len(packets))]
        sequence += len(packets)
        assert [p.marker for p in packets] == [False] * (len(packets) - 1) + [True]
        for p in packets:
            assert (p.ssrc, p.payload_type) == (stream["ssrc"], stream["payload_type"])
            assert p.timestamp == (stream["timestamp_origin"] + frame["pts"]) & 0xFFFFFFFF
            assert p.extensions[stream["mid_id"]] == stream["mid"].encode()
            value = int.from_bytes(p.extensions[stream["abs_send_time_id"]], "big")
            assert value == abs_send_time(frame["ntp"])
        descriptors = [parse_vp8_payload(p.payload) for p in packets]
        assert [d.start for d in descriptors] == [True] + [False] * (len(packets) - 1)
        assert {d.picture_id for d in descriptors} == {picture_id}
        picture_id += 1
        assert b"".join(d.data for d in descriptors).hex() == frame["data"]

    audio = STREAMS["audio"]
    for frame in audio["frames"]:
        (packet,) = [parse_rtp(bytes.fromhex(p)) for p in frame["packets"]]
        assert (packet.ssrc, packet.payload_type, packet.marker) == (
            audio["ssrc"],
            audio["payload_type"],
            True,
        )
        assert packet.payload.hex() == frame["data"]
        assert list(packet.extensions) == [audio["mid_id"]]  # no abs-send-time on audio


def test_rtx_packets_carry_the_original_sequence_number_and_payload() -> None:
    stream = STREAMS["video"]
    originals = {parse_rtp(p).sequence_number: parse_rtp(p) for p in all_packets(stream)}
    for i, entry in enumerate(stream["retransmissions"]):
        rtx = parse_rtp(bytes.fromhex(entry["packet"]))
        assert (rtx.ssrc, rtx.payload_type) == (stream["rtx_ssrc"], stream["rtx_payload_type"])
        assert rtx.sequence_number == (stream["rtx_sequence"] + i) & 0xFFFF
        original_sequence, payload = parse_rtx_payload(rtx.payload)
        original = originals[original_sequence]
        assert original_sequence == entry["sequence_number"]
        assert (payload, rtx.timestamp, rtx.marker) == (original.payload, original.timestamp, original.marker)


def test_pack_parse_pack_round_trip() -> None:
    packets = [bytes.fromhex(e["packet"]) for s in FIXTURE["streams"] for e in s["retransmissions"]]
    for data in [*all_packets(STREAMS["video"]), *all_packets(STREAMS["audio"]), *packets]:
        packet = parse_rtp(data)
        assert pack_rtp(packet) == data
        assert parse_rtp(pack_rtp(packet)) == packet


def test_parse_agrees_with_aiortcs_parser() -> None:
    for data in [*all_packets(STREAMS["video"]), *all_packets(STREAMS["audio"])]:
        ours, theirs = parse_rtp(data), aiortc.rtp.RtpPacket.parse(data)
        assert (ours.marker, ours.payload_type, ours.sequence_number, ours.timestamp, ours.ssrc) == (
            bool(theirs.marker),
            theirs.payload_type,
            theirs.sequence_number,
            theirs.timestamp,
            theirs.ssrc,
        )
        assert ours.payload == theirs.payload


def test_hand_written_packets() -> None:
    # RFC 3550 header without extensions: V=2, M=1, PT=111, seq 0x1234, ts 0xDEADBEEF, SSRC 0x01020304.
    data = bytes.fromhex("80ef1234deadbeef01020304") + b"opus"
    assert parse_rtp(data) == RtpPacket(True, 111, 0x1234, 0xDEADBEEF, 0x01020304, {}, b"opus")
    assert pack_rtp(parse_rtp(data)) == data
    # RFC 7741: X=1, I=1 with a 7-bit picture id; then L=1 (TL0PICIDX) and T=1 (TID/KEYIDX) bytes.
    descriptor = parse_vp8_payload(bytes.fromhex("90e0050120") + b"frame")
    assert (descriptor.start, descriptor.picture_id, descriptor.data) == (True, 5, b"frame")
    minimal = parse_vp8_payload(bytes.fromhex("00") + b"rest")  # no X: one byte, no picture id
    assert (minimal.start, minimal.picture_id, minimal.data) == (False, None, b"rest")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes.fromhex("80ef1234deadbe"),  # short of the fixed header
        bytes.fromhex("40ef1234deadbeef01020304"),  # version 1
        bytes.fromhex("a0ef1234deadbeef01020304"),  # padding
        bytes.fromhex("81ef1234deadbeef01020304"),  # one CSRC
        bytes.fromhex("90ef1234deadbeef01020304bede"),  # truncated extension header
        bytes.fromhex("90ef1234deadbeef01020304bede000210"),  # block longer than the packet
        bytes.fromhex("90ef1234deadbeef01020304100000010000"),  # two-byte-header profile
        bytes.fromhex("90ef1234deadbeef01020304bede000113616263"),  # element longer than the block
    ],
)
def test_malformed_packets_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_rtp(data)


def test_a_key_frames_first_packet_is_told_from_every_other_packet() -> None:
    # A key frame's tag has bit 0 clear (RFC 6386 9.1); it counts only in a frame's first packet (S, PID 0).
    key, delta = bytes([0x10, 0x02, 0x00]) + b"k" * 1500, bytes([0x11, 0x02, 0x00]) + b"d" * 1500
    key_packets, delta_packets = vp8_payloads(key, picture_id=7), vp8_payloads(delta, picture_id=8)
    assert len(key_packets) > 1
    assert [starts_vp8_keyframe(p) for p in key_packets] == [True] + [False] * (len(key_packets) - 1)
    assert not any(starts_vp8_keyframe(p) for p in delta_packets)
    for bad in (b"", b"\x90", b"\x90\x80\x80", b"\x10"):  # truncated descriptors, no frame data
        assert not starts_vp8_keyframe(bad)


def test_malformed_payloads_are_refused() -> None:
    for payload in (b"", b"\x90", b"\x90\x80", b"\x90\x80\x80"):
        with pytest.raises(ValueError):
            parse_vp8_payload(payload)
    with pytest.raises(ValueError):
        parse_rtx_payload(b"\x01")


def test_ntp_time() -> None:
    assert ntp_time(0) == 2_208_988_800 << 32
    assert ntp_time(1_500_000_000) == ((2_208_988_801 << 32) | (1 << 31))
    # 6.18 fixed point, seconds modulo 64: 2_208_988_801 % 64 == 1, and half a second.
    assert abs_send_time(ntp_time(1_500_000_000)) == (1 << 18) | (1 << 17)


# --- RFC 6464 audio level -------------------------------------------------------------------------------

# A browser-like Opus packet: one-byte header extensions id 1 = audio level (V=1, 30 dB below overload),
# id 3 = transport-wide sequence number (2 bytes), id 4 = mid "0", one byte of padding.
BROWSER_AUDIO = (
    bytes.fromhex("906f1234deadbeef01020304" + "bede0002" + "109e" + "310005" + "4030" + "00") + b"opus"
)


def test_read_audio_level_from_a_browser_like_packet() -> None:
    assert read_audio_level(BROWSER_AUDIO, 1) == (0xDEADBEEF, 0x9E)  # V set, level 30
    assert read_audio_level(BROWSER_AUDIO, 4) == (0xDEADBEEF, ord("0"))  # whatever element the id names
    assert read_audio_level(BROWSER_AUDIO, 2) is None  # not in the packet
    assert parse_rtp(BROWSER_AUDIO).extensions[1] == b"\x9e"  # the full parser agrees


def test_read_audio_level_agrees_with_aiortcs_writer_and_parser() -> None:
    """aiortc's sender sets the element for raw audio frames; our reader and writer match its bytes."""
    stream = STREAMS["audio"]
    level_id = 2
    extensions_map = aiortc.rtp.HeaderExtensionsMap()
    extensions_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(
                    id=stream["mid_id"], uri="urn:ietf:params:rtp-hdrext:sdes:mid"
                ),
                RTCRtpHeaderExtensionParameters(
                    id=level_id, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"
                ),
            ]
        )
    )
    frame = stream["frames"][0]
    data = bytes.fromhex(frame["data"])
    writer = writer_for(stream)
    writer.configure(
        payload_type=stream["payload_type"],
        rtx_payload_type=None,
        mid=stream["mid"],
        mid_id=stream["mid_id"],
        abs_send_time_id=None,
        audio_level_id=level_id,
    )
    (ours,), _, timestamp = writer.frame(data, frame["pts"], frame["ntp"], audio_level=0x80 | 42)
    theirs = aiortc.rtp.RtpPacket(
        payload_type=stream["payload_type"], marker=1, sequence_number=stream["sequence"], timestamp=timestamp
    )
    theirs.ssrc, theirs.payload = stream["ssrc"], data
    theirs.extensions.mid = stream["mid"]
    theirs.extensions.audio_level = (True, 42)
    assert ours == theirs.serialize(extensions_map)
    assert read_audio_level(ours, level_id) == (timestamp, 0x80 | 42)
    assert aiortc.rtp.RtpPacket.parse(ours, extensions_map).extensions.audio_level == (True, 42)
    # Without a level (pre-encoded input, as aiortc's pack() path) the element is left out.
    (plain,), _, _ = writer.frame(data, frame["pts"] + 960, frame["ntp"])
    assert read_audio_level(plain, level_id) is None


def test_the_writer_never_puts_an_audio_level_on_video() -> None:
    stream = STREAMS["video"]
    writer = writer_for(stream)
    writer.configure(
        payload_type=stream["payload_type"],
        rtx_payload_type=stream["rtx_payload_type"],
        mid=stream["mid"],
        mid_id=stream["mid_id"],
        abs_send_time_id=stream["abs_send_time_id"],
        audio_level_id=5,
    )
    frame = stream["frames"][1]
    packets, _, _ = writer.frame(bytes.fromhex(frame["data"]), frame["pts"], frame["ntp"], audio_level=7)
    assert [p.hex() for p in packets] != [] and all(read_audio_level(p, 5) is None for p in packets)


def test_read_audio_level_two_byte_header() -> None:
    # RFC 8285 two-byte header (0x100 + appbits): id 1 length 1 = 0x1f, then padding.
    data = bytes.fromhex("906f1234000000010102030410000001" + "01011f00") + b"opus"
    assert read_audio_level(data, 1) == (1, 0x1F)
    assert read_audio_level(data, 2) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes.fromhex("806f1234deadbeef01020304") + b"opus",  # no extension bit
        bytes.fromhex("906f1234deadbeef01020304bede"),  # truncated extension header
        bytes.fromhex("906f1234deadbeef01020304bede0001f0"),  # reserved id 15 first: stop reading
        bytes.fromhex("906f1234deadbeef01020304bede000110"),  # the element's value is cut off
        bytes.fromhex("906f1234deadbeef01020304abcd0001109e0000"),  # an unknown profile
    ],
)
def test_read_audio_level_refuses_quietly(data: bytes) -> None:
    assert read_audio_level(data, 1) is None


def test_padding_probes_are_padding_only_packets_in_the_streams_sequence_resent_empty() -> None:
    stream = STREAMS["video"]
    writer = writer_for(stream)
    frame = stream["frames"][0]
    before, _, timestamp = writer.frame(bytes.fromhex(frame["data"]), frame["pts"], 1 << 32)
    padding = writer.padding(3, 1 << 32)
    after, _, _ = writer.frame(bytes.fromhex(frame["data"]), frame["pts"] + 3000, 1 << 32)
    parsed = [aiortc.rtp.RtpPacket.parse(p) for p in padding]
    last = aiortc.rtp.RtpPacket.parse(before[-1]).sequence_number
    assert [p.sequence_number for p in parsed] == [(last + n) & 0xFFFF for n in (1, 2, 3)]
    assert all(p.payload == b"" and p.padding_size == PADDING_OCTETS for p in parsed)  # RFC 3550 5.1
    assert all(p.ssrc == stream["ssrc"] and p.timestamp == timestamp and not p.marker for p in parsed)
    assert aiortc.rtp.RtpPacket.parse(after[0]).sequence_number == (last + 4) & 0xFFFF  # no gap after
    # A NACK for lost padding is answered with an empty RTX (the original sequence number alone), so a
    # receiver that reassembles in sequence order does not wait behind the hole; the media history is intact.
    for p in parsed:
        assert writer.retransmittable(p.sequence_number, 1 << 32) == 0
        rtx = aiortc.rtp.RtpPacket.parse(writer.retransmission(p.sequence_number, 1 << 32) or b"")
        assert rtx.ssrc == stream["rtx_ssrc"] and rtx.payload_type == stream["rtx_payload_type"]
        assert rtx.payload == p.sequence_number.to_bytes(2, "big") and rtx.timestamp == timestamp
    assert writer.retransmission(last, 1 << 32) is not None  # the frame before the probe is still resendable
    assert writer.retransmission(parsed[0].sequence_number, 3 << 32) is None  # too old: not answered
