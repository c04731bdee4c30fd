"""The aiortc internals vIOP relies on. If an aiortc upgrade moves any of them, these tests fail loudly."""

from __future__ import annotations

import aiortc
import pytest
from aiortc import RTCPeerConnection

from tests.media.harness import LOOPBACK, wait_until
from vIOP.client.media import KeyframeOnRequestVideoTrack, encode_video_clip
from vIOP.errors import BadRequest
from vIOP.media import passthrough
from vIOP.media.passthrough import EncodedFrame


def test_every_internal_assumption_still_holds() -> None:
    problems = passthrough.internals_problems()
    assert problems == [], "aiortc changed under vIOP's media pass-through:\n" + "\n".join(problems)
    passthrough.check_internals()
    assert aiortc.__version__.startswith(passthrough.SUPPORTED_AIORTC)


def test_vp8_keyframe_flag_matches_the_encoder() -> None:
    clip = encode_video_clip(160, 120, 15, seconds=0.4)
    flags = [passthrough.is_vp8_keyframe(f) for f in clip.frames]
    assert flags[0] and not any(flags[1:])
    assert not passthrough.is_vp8_keyframe(b"")


async def test_receiver_hands_over_encoded_frames_and_forwards_keyframe_requests_to_the_media_ssrc() -> None:
    publisher = RTCPeerConnection(passthrough.peer_configuration([]))
    subscriber = RTCPeerConnection(passthrough.peer_configuration([]))
    track = KeyframeOnRequestVideoTrack(160, 120, fps=20)
    sender = publisher.addTransceiver(track, direction="sendonly").sender
    passthrough.on_keyframe_request(sender, track.request_keyframe)
    frames: list[EncodedFrame] = []
    try:
        with passthrough.advertising(LOOPBACK):
            await publisher.setLocalDescription(await publisher.createOffer())
        await subscriber.setRemoteDescription(publisher.localDescription)
        receiver = subscriber.getTransceivers()[0].receiver
        passthrough.install_encoded_output(receiver, "video", frames.append)
        with passthrough.advertising(LOOPBACK):
            await subscriber.setLocalDescription(await subscriber.createAnswer())
        await publisher.setRemoteDescription(subscriber.localDescription)

        await wait_until(lambda: len(frames) >= 5, 5, "encoded frames at the receiver")
        assert all(isinstance(f, EncodedFrame) for f in frames)
        assert frames[0].keyframe and not any(f.keyframe for f in frames[1:5])
        assert frames[0].time_base == passthrough._time_base(90_000)
        assert [f.pts for f in frames[:5]] == sorted(f.pts for f in frames[:5])

        assert passthrough.media_ssrcs(receiver) == [sender._ssrc]  # never the RTX SSRC
        before = track.keyframes_sent
        assert await passthrough.request_keyframe(receiver) == 1
        await wait_until(lambda: track.keyframes_sent > before, 3, "a keyframe after the PLI")
        assert track.keyframe_requests == 1
        with pytest.raises(RuntimeError):  # too late once the receiver runs
            passthrough.install_encoded_output(receiver, "video", frames.append)
    finally:
        await publisher.close()
        await subscriber.close()


async def test_advertising_controls_host_candidates_only_inside_the_block() -> None:
    async def candidates(hosts: tuple[str, ...]) -> list[str]:
        pc = RTCPeerConnection(passthrough.peer_configuration([]))
        pc.addTransceiver("audio")
        try:
            with passthrough.advertising(hosts):
                await pc.setLocalDescription(await pc.createOffer())
            sdp = pc.localDescription.sdp
            return [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]
        finally:
            await pc.close()

    assert set(await candidates(LOOPBACK)) == {"127.0.0.1"}
    assert "127.0.0.1" not in await candidates(())  # aioice's default skips loopback
    assert not any(c.startswith("stun") for c in await candidates(LOOPBACK))


async def test_no_stun_server_unless_configured() -> None:
    config = passthrough.peer_configuration([])
    assert config.iceServers == []
    pc = RTCPeerConnection(config)
    transceiver = pc.addTransceiver("audio")
    connection = transceiver.receiver.transport.transport.iceGatherer._connection
    assert connection.stun_server is None and connection.turn_server is None
    await pc.close()


@pytest.mark.parametrize(
    "sdp",
    [
        "v=0\r\nm=audio x y z\r\n",
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96\r\n",
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=candidate:1 1 udp\r\n",
    ],
)
def test_malformed_sdp_is_a_bad_request(sdp: str) -> None:
    with pytest.raises(BadRequest):
        passthrough.summarize_sdp(sdp)


def test_sdp_without_media_sections_summarizes_to_nothing() -> None:
    assert passthrough.summarize_sdp("garbage").media == ()


def test_candidate_lines_are_parsed_or_refused() -> None:
    line = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
    candidate = passthrough.parse_candidate(line, "0")
    assert (candidate.ip, candidate.port, candidate.type, candidate.sdpMid) == (
        "127.0.0.1",
        50000,
        "host",
        "0",
    )
    for bad in [
        "",
        "candidate:1 1 udp",
        "candidate:1 1 sctp 1 127.0.0.1 5 typ host",
        "1 1 udp 1 1.2.3.4 0 typ host",
        "1 1 udp 1 1.2.3.4 5 typ bogus",
        "1 x udp 1 1.2.3.4 5 typ host",
    ]:
        with pytest.raises(BadRequest):
            passthrough.parse_candidate(bad, None)


async def test_codec_plan_fills_missing_kinds_without_payload_type_collisions() -> None:
    pc = RTCPeerConnection(passthrough.peer_configuration([]))
    audio = pc.addTransceiver("audio")
    opus = next(c for c in aiortc.codecs.CODECS["audio"] if c.mimeType == "audio/opus")
    clash = aiortc.RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=97)
    audio._codecs = [clash]  # as if a browser had put Opus on 97, aiortc's VP8 number
    audio._headerExtensions = [
        aiortc.RTCRtpHeaderExtensionParameters(id=3, uri="urn:ietf:params:rtp-hdrext:sdes:mid")
    ]
    plan = passthrough.CodecPlan.from_negotiated(pc)
    video_pts = [c.payloadType for c in plan.codecs["video"]]
    assert 97 not in video_pts and len(set(video_pts)) == 2
    vp8, rtx = plan.codecs["video"]
    assert vp8.mimeType == "video/VP8" and rtx.parameters["apt"] == vp8.payloadType
    ids = {e.uri: e.id for e in plan.extensions["video"]}
    assert ids["urn:ietf:params:rtp-hdrext:sdes:mid"] == 3  # one id per URI across the bundle
    assert 3 not in {i for u, i in ids.items() if u != "urn:ietf:params:rtp-hdrext:sdes:mid"}
    assert opus.payloadType == 96  # the global table itself is untouched
    await pc.close()
