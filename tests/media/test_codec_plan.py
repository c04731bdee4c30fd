"""The per-connection codec plan: payload types and extension ids stay put across re-offers."""

from __future__ import annotations

import aiortc
from aiortc import RTCPeerConnection

from vIOP.media.codec_plan import CodecPlan
from vIOP.media.ice_gathering import peer_configuration


async def test_codec_plan_fills_missing_kinds_without_payload_type_collisions() -> None:
    pc = RTCPeerConnection(peer_configuration([]))
    audio = pc.addTransceiver("audio")
    opus = next(c for c in aiortc.codecs.CODECS["audio"] if c.mimeType == "audio/opus")
    clash = aiortc.RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=97)
    audio._codecs = [clash]  # as if a browser had put Opus on 97, aiortc's VP8 number
    audio._headerExtensions = [
        aiortc.RTCRtpHeaderExtensionParameters(id=3, uri="urn:ietf:params:rtp-hdrext:sdes:mid")
    ]
    plan = CodecPlan.from_negotiated(pc)
    video_pts = [c.payloadType for c in plan.codecs["video"]]
    assert 97 not in video_pts and len(set(video_pts)) == 2
    vp8, rtx = plan.codecs["video"]
    assert vp8.mimeType == "video/VP8" and rtx.parameters["apt"] == vp8.payloadType
    ids = {e.uri: e.id for e in plan.extensions["video"]}
    assert ids["urn:ietf:params:rtp-hdrext:sdes:mid"] == 3  # one id per URI across the bundle
    assert 3 not in {i for u, i in ids.items() if u != "urn:ietf:params:rtp-hdrext:sdes:mid"}
    assert opus.payloadType == 96  # the global table itself is untouched
    await pc.close()
