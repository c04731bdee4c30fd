"""Pure parts of simulcast: the offer's layers, the answer's lines, RID extensions in bytes, the demux, and
a leg's move between layers (at a keyframe of the target, keyframe requests following it)."""

from __future__ import annotations

import fractions

import pytest

from vIOP.errors import BadRequest
from vIOP.ids import ParticipantId
from vIOP.media.fanout import Leg, Source
from vIOP.media.frames import EncodedFrame
from vIOP.media.rtp import packet_ssrc, read_extension
from vIOP.media.simulcast import LayerDemux, accept_layers, offered_layers, vp8_keyframe_size

# The video m-line of a Chromium 156 offer made with sendEncodings [{rid: "h"}, {rid: "l",
# scaleResolutionDownBy: 2}] (ICE, DTLS and most codecs cut).
CHROMIUM_VIDEO = (
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=mid:1\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n"
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n"
    "a=sendrecv\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
    "a=rtpmap:97 rtx/90000\r\n"
    "a=fmtp:97 apt=96\r\n"
    "a=rid:h send\r\n"
    "a=rid:l send\r\n"
    "a=simulcast:send h;l\r\n"
)
SESSION = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n"
OFFER = SESSION + AUDIO + CHROMIUM_VIDEO


def test_offered_layers_reads_chromium_s_rids_in_order() -> None:
    assert offered_layers(OFFER) == {"1": ("h", "l")}
    assert offered_layers(SESSION + AUDIO) == {}


def test_offered_layers_takes_first_alternatives_and_paused_rids() -> None:
    sdp = OFFER.replace("a=simulcast:send h;l", "a=simulcast:send h,x;~l")
    assert offered_layers(sdp) == {"1": ("h", "l")}


@pytest.mark.parametrize(
    "simulcast",
    [
        "a=simulcast:send h;z",  # z is not declared
        "a=simulcast:send h;h",  # twice
        "a=simulcast:send a;b;c;d",  # more than three
        "a=simulcast:send h;l!",  # not a rid
    ],
)
def test_offered_layers_refuses_what_it_cannot_receive(simulcast: str) -> None:
    sdp = OFFER.replace("a=simulcast:send h;l", simulcast)
    for rid in "abcd":
        sdp = sdp.replace("a=rid:h send", f"a=rid:h send\r\na=rid:{rid} send")
    with pytest.raises(BadRequest):
        offered_layers(sdp)


def test_accept_layers_adds_recv_lines_to_that_m_line_only() -> None:
    answer = (
        SESSION
        + AUDIO
        + CHROMIUM_VIDEO.replace("a=rid:h send\r\na=rid:l send\r\na=simulcast:send h;l\r\n", "")
    )
    out = accept_layers(answer, {"1": ("h", "l")})
    video = out[out.index("m=video") :]
    assert "a=rid:h recv\r\na=rid:l recv\r\na=simulcast:recv h;l\r\n" in video
    assert "a=rid" not in out[: out.index("m=video")]
    assert accept_layers(answer, {}) == answer
    assert accept_layers(out, {"1": ("h", "l")}).count("a=simulcast:") == 1  # idempotent


# An RTP packet as Chromium sends a layer's first packets: one-byte extensions mid=1 (id 4) and rid=l (id 10).
LOW_PACKET = bytes.fromhex(
    "90e01234"  # V=2, X, marker, PT 96, seq 0x1234
    "00015f90"  # timestamp
    "cafebabe"  # SSRC
    "bede0002"  # one-byte extensions, 2 words
    "4031"  # id 4 (mid), 1 byte: "1"
    "a06c"  # id 10 (rid), 1 byte: "l"
    "00000000"  # padding
    "9080"  # VP8 payload descriptor
)
# Its retransmission: rrid=h (id 11) with a two-letter value on RTX SSRC 0x0badf00d.
RTX_PACKET = bytes.fromhex("9061000100015f900badf00dbede0001b16869001234")


def test_rid_extensions_read_from_bytes() -> None:
    assert read_extension(LOW_PACKET, 10) == b"l"
    assert read_extension(LOW_PACKET, 4) == b"1"
    assert read_extension(LOW_PACKET, 11) is None
    assert read_extension(RTX_PACKET, 11) == b"hi"
    assert packet_ssrc(LOW_PACKET) == 0xCAFEBABE
    assert read_extension(LOW_PACKET[:14], 10) is None  # truncated: None, never an exception
    assert read_extension(LOW_PACKET.replace(b"\xbe\xde", b"\x10\x00", 1), 10) is None


def test_two_byte_header_extension_is_read() -> None:
    packet = bytes.fromhex("906000010000000000000001100000010a016c00")
    assert read_extension(packet, 10) == b"l"


def test_demux_learns_each_ssrc_s_layer_once_and_ties_rtx_to_it() -> None:
    demux = LayerDemux(("h", "l"))
    assert demux.media(1, None) is None  # no rid yet: unknown
    assert demux.media(1, "h") == "h"
    assert demux.media(1, None) == "h"  # acknowledged streams stop naming their rid
    assert demux.media(2, "l") == "l"
    assert demux.media(3, "x") is None  # a rid the answer did not accept
    assert demux.repair(9, "l") == 2
    assert demux.repair(9, None) == 2
    assert demux.repair(8, "x") is None
    assert demux.media(4, "l") == "l"  # the layer restarted on a new SSRC
    assert demux.ssrc("l") == 4
    assert demux.media(2, None) is None


def keyframe(width: int, height: int) -> bytes:
    return (
        bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A])
        + width.to_bytes(2, "little")
        + height.to_bytes(2, "little")
    )


def test_vp8_keyframe_size() -> None:
    assert vp8_keyframe_size(keyframe(640, 360)) == (640, 360)
    assert vp8_keyframe_size(b"\x11" + keyframe(640, 360)[1:]) is None  # inter frame
    assert vp8_keyframe_size(b"\x10\x02") is None


TB = fractions.Fraction(1, 90000)


def frame(pts: int, key: bool, size: tuple[int, int] = (640, 360)) -> EncodedFrame:
    return EncodedFrame(keyframe(*size) if key else b"\x11\x00\x00", pts, TB, key)


async def test_a_leg_moves_at_the_target_s_keyframe_and_asks_that_layer_for_keyframes() -> None:
    publisher = ParticipantId("pt_publisher")
    asked = {"h": 0, "l": 0}
    high = Source(publisher, "video", layer="h", keyframe_interval=1e-9)
    low = Source(publisher, "video", layer="l", keyframe_interval=1e-9)
    high.bind_upstream(lambda: asked.__setitem__("h", asked["h"] + 1))
    low.bind_upstream(lambda: asked.__setitem__("l", asked["l"] + 1))
    leg = Leg("video")
    high.attach(leg)
    high.deliver(frame(0, True))
    high.deliver(frame(3000, False))
    assert len(leg._queue) == 2
    asked_before = dict(asked)

    leg.move_to(low)
    assert asked["l"] == asked_before["l"] + 1 and asked["h"] == asked_before["h"]
    low.deliver(frame(100, False, (320, 180)))  # not a keyframe: the leg stays on the high layer
    high.deliver(frame(6000, False))
    assert leg.source is high and leg.pending is low and len(leg._queue) == 3
    last_high_pts = leg._queue[-1].pts
    low.deliver(frame(3100, True, (320, 180)))
    assert leg.source is low and leg.pending is None
    assert low.frame_size == (320, 180)
    high.deliver(frame(9000, False))  # no longer received
    assert [f.keyframe for f in leg._queue] == [True]  # the new layer starts with its keyframe
    assert leg._queue[0].pts > last_high_pts  # one timeline across the move

    leg.request_keyframe()  # the subscriber's PLI goes to the layer it receives
    assert asked["l"] == asked_before["l"] + 2 and asked["h"] == asked_before["h"]

    leg.move_to(None)
    assert leg.source is None and leg not in low.legs
    leg.move_to(high)
    assert leg.source is high  # from paused: attached at once, starts at the next keyframe


async def test_a_move_cancelled_before_the_keyframe_leaves_the_leg_where_it_was() -> None:
    publisher = ParticipantId("pt_publisher")
    high = Source(publisher, "video", layer="h")
    low = Source(publisher, "video", layer="l")
    leg = Leg("video")
    high.attach(leg)
    leg.move_to(low)
    leg.move_to(high)
    low.deliver(frame(0, True))
    assert leg.source is high and leg.pending is None
    leg.move_to(low)
    low.close()
    low.deliver(frame(0, True))
    assert leg.source is high and leg.pending is None
