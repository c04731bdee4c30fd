"""``vIOP.client`` repairs its downlink losses by RTX in a group, and reports what it received."""

from __future__ import annotations

from bench.scenarios.impairment import ImpairedLink, Impairment, Shape
from tests.media.harness import Room, wait_until
from vIOP.client.media import (
    MediaPeer,
    PreEncodedTrack,
    ReceiveMode,
    encode_video_clip,
    silent_audio_track,
)


def video_lost(peer: MediaPeer) -> int:
    reports = peer.receive_report().values()
    return sum(r.recovered_by_rtx + r.packets_missing for r in reports if r.kind == "video")


async def test_a_receiver_with_downlink_loss_recovers_lost_video_by_rtx_in_a_group() -> None:
    """aiortc 1.16 drops every RTX packet on a connection with two video streams; the client must not."""
    room = Room()
    # 8 % random loss: packets lost on both streams within seconds. Steady random loss is not congestion:
    # the relay's budget must not pause the video (before downlink.py judged loss by significance and
    # against the link's inherent loss, it paused it in 2 of 3 runs at 8 %, and this test ran at 3 %).
    link = ImpairedLink(Impairment(down=Shape(loss=0.08)), seed=13)
    try:
        clip = encode_video_clip(320, 180, fps=15, seconds=2, bitrate=400_000)  # ~3 packets a frame
        publishers = [(await room.join(silent_audio_track(), PreEncodedTrack(clip)))[0] for _ in range(2)]
        viewer, peer = await room.join(silent_audio_track(), receive=ReceiveMode.ENCODED, tap=link)
        await wait_until(lambda: video_lost(peer) >= 20, 60, "20 lost video packets settled")

        video = [r for r in peer.receive_report().values() if r.kind == "video"]
        assert {r.publisher for r in video} == set(publishers)
        recovered = sum(r.recovered_by_rtx for r in video)
        lost = sum(r.recovered_by_rtx + r.packets_missing for r in video)
        assert recovered >= 0.9 * lost, [(r.recovered_by_rtx, r.packets_missing) for r in video]
        assert all(r.recovered_by_rtx > 0 for r in video)  # on both streams, not just one
        # The client's own count of lost packets matches what the harness dropped on the wire.
        assert lost <= len(link.down.stats.dropped_rtp)
        assert all(room.sees(viewer, p, "video", 5) for p in publishers)
    finally:
        await room.close()
        link.close()
