"""The aiortc internals vIOP relies on. If an aiortc upgrade moves any of them, these tests fail loudly."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import aiortc
import pytest
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterFrame

from tests.media.harness import LOOPBACK, wait_until
from vIOP.client.media import KeyframeOnRequestVideoTrack
from vIOP.media import aiortc_internals
from vIOP.media.aiortc_internals import (
    SUPPORTED_AIORTC,
    check_internals,
    close_peer_connection,
    install_encoded_output,
    internals_problems,
    media_ssrcs,
    on_keyframe_request,
    request_keyframe,
    skip_empty_frames,
)
from vIOP.media.frames import EncodedFrame, time_base
from vIOP.media.ice_gathering import advertising, peer_configuration


def test_every_internal_assumption_still_holds() -> None:
    problems = internals_problems()
    assert problems == [], "aiortc changed under vIOP's media pass-through:\n" + "\n".join(problems)
    check_internals()
    assert aiortc.__version__.startswith(SUPPORTED_AIORTC)


async def test_receiver_hands_over_encoded_frames_and_forwards_keyframe_requests_to_the_media_ssrc() -> None:
    publisher = RTCPeerConnection(peer_configuration([]))
    subscriber = RTCPeerConnection(peer_configuration([]))
    track = KeyframeOnRequestVideoTrack(160, 120, fps=20)
    sender = publisher.addTransceiver(track, direction="sendonly").sender
    on_keyframe_request(sender, track.request_keyframe)
    frames: list[EncodedFrame] = []
    try:
        with advertising(LOOPBACK):
            await publisher.setLocalDescription(await publisher.createOffer())
        await subscriber.setRemoteDescription(publisher.localDescription)
        receiver = subscriber.getTransceivers()[0].receiver
        install_encoded_output(receiver, "video", frames.append)
        with advertising(LOOPBACK):
            await subscriber.setLocalDescription(await subscriber.createAnswer())
        await publisher.setRemoteDescription(subscriber.localDescription)

        await wait_until(lambda: len(frames) >= 5, 5, "encoded frames at the receiver")
        assert all(isinstance(f, EncodedFrame) for f in frames)
        assert frames[0].keyframe and not any(f.keyframe for f in frames[1:5])
        assert frames[0].time_base == time_base(90_000)
        assert [f.pts for f in frames[:5]] == sorted(f.pts for f in frames[:5])

        assert media_ssrcs(receiver) == [sender._ssrc]  # never the RTX SSRC
        before = track.keyframes_sent
        assert await request_keyframe(receiver) == 1
        await wait_until(lambda: track.keyframes_sent > before, 3, "a keyframe after the PLI")
        assert track.keyframe_requests == 1
        with pytest.raises(RuntimeError):  # too late once the receiver runs
            install_encoded_output(receiver, "video", frames.append)
    finally:
        await publisher.close()
        await subscriber.close()


async def test_a_close_cut_short_still_stops_every_receivers_decoder_thread() -> None:
    """aiortc's decoder threads are not daemons: one left running keeps the process from exiting (a CI run
    hung after its last test). ``pc.close()`` cut short by a timeout leaves them running; this does not."""
    publisher = RTCPeerConnection(peer_configuration([]))
    subscriber = RTCPeerConnection(peer_configuration([]))
    publisher.addTransceiver(KeyframeOnRequestVideoTrack(160, 120, fps=20), direction="sendonly")
    receiver: aiortc.RTCRtpReceiver | None = None

    def decoding() -> bool:
        thread = getattr(receiver, "_RTCRtpReceiver__decoder_thread", None)
        return isinstance(thread, threading.Thread) and thread.is_alive()

    try:
        with advertising(LOOPBACK):
            await publisher.setLocalDescription(await publisher.createOffer())
        await subscriber.setRemoteDescription(publisher.localDescription)
        receiver = subscriber.getTransceivers()[0].receiver
        with advertising(LOOPBACK):
            await subscriber.setLocalDescription(await subscriber.createAnswer())
        await publisher.setRemoteDescription(subscriber.localDescription)
        await wait_until(decoding, 5, "the receiver's decoder thread")
        thread = receiver._RTCRtpReceiver__decoder_thread  # type: ignore[attr-defined]

        await close_peer_connection(subscriber, within=0)  # the close never gets to run
        assert not thread.is_alive()
        assert not decoding()
    finally:
        await publisher.close()
        await subscriber.close()


async def test_an_empty_frame_never_reaches_the_decoder() -> None:
    """aiortc's VP8 decoder takes an empty packet as "flush" and refuses every later frame ("End of file"):
    a frame of padding alone, which aiortc's jitter buffer can make of a probe, stopped a capped client's
    video for good (tests/media/test_simulcast.py, about one run in three)."""
    pc = RTCPeerConnection(peer_configuration([]))
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        skip_empty_frames(receiver)
        decoder_queue = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        codec = aiortc.RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96)
        decoder_queue.put((codec, JitterFrame(data=b"", timestamp=1)))
        assert decoder_queue.empty()
        decoder_queue.put((codec, JitterFrame(data=b"\x10", timestamp=2)))
        decoder_queue.put(None)  # the receiver's stop still gets through
        assert decoder_queue.get()[1].timestamp == 2 and decoder_queue.get() is None
    finally:
        await pc.close()


def internal_uses(path: Path) -> list[str]:
    """Imports of aioice or of aiortc's unexported submodules, and private attributes of other objects."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        found += [m for m in modules if m.split(".")[0] == "aioice" or m.startswith("aiortc.")]
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_no_other_module_touches_aiortc_internals() -> None:
    media = Path(aiortc_internals.__file__).parent
    sources = [*sorted(media.glob("*.py")), media.parent / "client" / "media.py"]
    assert internal_uses(media / "aiortc_internals.py")  # the scan sees them where they are
    offenders = {p.name: internal_uses(p) for p in sources if p.name != "aiortc_internals.py"}
    assert {name: uses for name, uses in offenders.items() if uses} == {}
