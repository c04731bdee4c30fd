"""Simulcast: a publisher's layers reach the relay as separate sources; each subscriber gets the layer chosen.

Real peers: a ``vIOP.client`` peer that publishes two live VP8 layers on two SSRCs with the RID extension, as
Chromium does (``vIOP.client.simulcast``), and ordinary ``vIOP.client`` subscribers that decode.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from bench.scenarios.impairment import ImpairedLink, Impairment, Shape
from tests.media.harness import LOOPBACK, Room, wait_until
from vIOP.client.media import KeyframeOnRequestVideoTrack, MediaPeer, silent_audio_track
from vIOP.client.simulcast import SimulcastLayer
from vIOP.errors import BadRequest, NotFound
from vIOP.ids import ParticipantId, new_participant_id
from vIOP.media.budget import AudioOnlyReason

HIGH, LOW = (640, 360), (320, 180)


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    room = Room()
    yield room
    await room.close()


class SimulcastPublisher(MediaPeer):
    """A peer that publishes only simulcast video: a high and a low layer, each a live VP8 encoder that sends
    a keyframe first and then only when a PLI/FIR for that layer's SSRC asks (as a browser does)."""

    def __init__(self, *, drop_every: int = 0) -> None:
        super().__init__(host_addresses=LOOPBACK)
        self.layers = (
            SimulcastLayer("h", KeyframeOnRequestVideoTrack(*HIGH, fps=15, bitrate=600_000), drop_every),
            SimulcastLayer("l", KeyframeOnRequestVideoTrack(*LOW, fps=15, bitrate=150_000), drop_every),
        )
        self.publish_simulcast(self.layers)


async def publish_simulcast(room: Room, publisher: SimulcastPublisher) -> tuple[ParticipantId, str]:
    """Not one of ``room.peers``: the relay's renegotiation offers to it go unanswered (it only sends)."""
    pid = new_participant_id()
    await room.relay.add_participant(pid)
    answer = await room.relay.handle_offer(pid, await publisher.create_offer())
    await publisher.accept_answer(answer)
    return pid, answer


async def test_the_answer_accepts_the_offered_layers_and_each_layer_becomes_a_source(room: Room) -> None:
    publisher = SimulcastPublisher()
    try:
        pid, answer = await publish_simulcast(room, publisher)
        assert "a=rid:h recv" in answer and "a=rid:l recv" in answer
        assert "a=simulcast:recv h;l" in answer
        assert "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" in answer
        high = room.relay.source(pid, "video")
        assert high is not None and high.layer == "h"
        await wait_until(lambda: room.relay.stats().frames_in > 20, 30, "frames of both layers")
        session = room.relay.session(pid)
        assert session is not None and session.video_ingress is not None
        ingress = session.video_ingress
        await wait_until(
            lambda: all(
                (a := ingress.layer_assembler(rid)) is not None and a.frames_out > 3 for rid in ("h", "l")
            ),
            10,
            "frames assembled per layer",
        )
        assert high.frame_size == HIGH
        assert ingress.unknown_packets == 0
    finally:
        await publisher.close()


async def test_a_subscriber_switched_between_layers_decodes_continuously_and_sees_each_layer_s_size(
    room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiortc")
    publisher = SimulcastPublisher()
    low_layer = publisher.layers[1]
    try:
        pid, _ = await publish_simulcast(room, publisher)
        viewer, peer = await room.join(silent_audio_track())
        _other, other_peer = await room.join(silent_audio_track())
        await wait_until(lambda: peer.video_size(pid) == HIGH, 20, "the high layer decoded by default")
        # Freezes count from here, for the switched viewer and for a control viewer that is never switched:
        # publisher, relay and both decoders share one process, whose stalls (measured: 0.3-3 s on this
        # busy machine, with no switch at all) reach both; a switch must add none of its own.
        await wait_until(lambda: peer.counter.frames(pid, "video") >= 30, 20, "a steady stream")
        peer.stats.restart()
        other_peer.stats.restart()

        low_asked = low_layer.keyframe_requests
        chosen = room.relay.set_layer(viewer, pid, "low")
        assert chosen is not None and chosen.layer == "l"
        await wait_until(lambda: peer.video_size(pid) == LOW, 20, "the low layer after the switch")
        assert low_layer.keyframe_requests > low_asked  # the target layer was asked for a keyframe
        assert room.relay.received_layer(viewer, pid) is chosen
        frames = peer.counter.frames(pid, "video")
        await wait_until(
            lambda: peer.counter.frames(pid, "video") >= frames + 10, 20, "low frames keep coming"
        )
        assert other_peer.video_size(pid) == HIGH  # a choice is per subscriber

        room.relay.set_layer(viewer, pid, "high")
        await wait_until(lambda: peer.video_size(pid) == HIGH, 20, "back to the high layer")
        frames = peer.counter.frames(pid, "video")
        await wait_until(
            lambda: peer.counter.frames(pid, "video") >= frames + 10, 20, "high frames keep coming"
        )

        assert [size for _, size in peer.video_sizes[pid]] == [HIGH, LOW, HIGH]
        report = peer.receive_report()[(pid, "video")]
        assert report.packets_missing == 0  # sequence numbers continuous across both switches
        control = other_peer.receive_report()[(pid, "video")]
        assert report.longest_freeze < max(0.5, control.longest_freeze + 0.25), (report, control)
        assert not [r for r in caplog.records if "decode" in r.getMessage().lower()]  # no decoder errors
    finally:
        await publisher.close()


async def test_paused_stops_that_video_to_that_subscriber_only_and_resumes(room: Room) -> None:
    publisher = SimulcastPublisher()
    try:
        pid, _ = await publish_simulcast(room, publisher)
        viewer, peer = await room.join(silent_audio_track())
        other, other_peer = await room.join(silent_audio_track())
        await wait_until(lambda: room.sees(viewer, pid, "video", 5) and room.sees(other, pid, "video", 5), 30)
        assert room.relay.set_layer(viewer, pid, "paused") is None
        assert room.relay.received_layer(viewer, pid) is None
        seen_by_other = other_peer.counter.frames(pid, "video")
        await wait_until(
            lambda: other_peer.counter.frames(pid, "video") >= seen_by_other + 10, 20, "others go on"
        )
        paused_at = peer.counter.frames(pid, "video")  # frames in flight at the pause have arrived by now
        seen_by_other = other_peer.counter.frames(pid, "video")
        await wait_until(
            lambda: other_peer.counter.frames(pid, "video") >= seen_by_other + 15, 20, "others go on"
        )
        assert peer.counter.frames(pid, "video") == paused_at
        room.relay.set_layer(viewer, pid, "low")
        await wait_until(lambda: peer.video_size(pid) == LOW, 20, "resumed on the low layer")
    finally:
        await publisher.close()


async def test_a_one_layer_publisher_serves_high_and_low_with_its_only_layer(room: Room) -> None:
    publisher, _ = await room.join()
    viewer, peer = await room.join()
    await wait_until(lambda: room.sees(viewer, publisher, "video", 3), 10)
    only = room.relay.source(publisher, "video")
    assert only is not None and only.layer is None
    assert room.relay.set_layer(viewer, publisher, "low") is only
    assert room.relay.set_layer(viewer, publisher, "high") is only
    frames = peer.counter.frames(publisher, "video")
    await wait_until(lambda: peer.counter.frames(publisher, "video") >= frames + 5, 20, "video goes on")


async def test_bad_layer_choices_get_typed_errors_and_change_nothing(room: Room) -> None:
    publisher, _ = await room.join()
    viewer, _peer = await room.join()
    await wait_until(lambda: room.sees(viewer, publisher, "video", 3), 10)
    before = room.relay.received_layer(viewer, publisher)
    with pytest.raises(BadRequest):
        room.relay.set_layer(viewer, publisher, "ultra")
    with pytest.raises(NotFound):
        room.relay.set_layer(viewer, new_participant_id(), "low")
    with pytest.raises(NotFound):
        room.relay.set_layer(viewer, viewer, "low")
    with pytest.raises(NotFound):
        room.relay.set_layer(new_participant_id(), publisher, "low")
    assert room.relay.received_layer(viewer, publisher) is before


async def test_tiles_choose_layers_thumbnails_low_large_high_off_screen_paused(room: Room) -> None:
    publisher = SimulcastPublisher()
    try:
        pid, _ = await publish_simulcast(room, publisher)
        viewer, peer = await room.join(silent_audio_track())
        other, _ = await room.join(silent_audio_track())
        await wait_until(lambda: peer.video_size(pid) == HIGH, 20, "the high layer decoded by default")
        room.relay.set_subscriptions(viewer, {pid: (160, 90), other: (1280, 720)})
        await wait_until(lambda: peer.video_size(pid) == LOW, 20, "a thumbnail gets the low layer")
        received = room.relay.received_layer(viewer, pid)
        assert received is not None and received.layer == "l"
        room.relay.set_subscriptions(viewer, {pid: (640, 360)})
        await wait_until(lambda: peer.video_size(pid) == HIGH, 20, "a large tile gets the high layer")
        assert room.relay.received_layer(viewer, other) is None  # no tile: paused
        with pytest.raises(NotFound):
            room.relay.set_subscriptions(viewer, {new_participant_id(): (160, 90)})
        with pytest.raises(NotFound):
            room.relay.set_subscriptions(viewer, {viewer: (160, 90)})
        high = room.relay.received_layer(viewer, pid)
        assert high is not None and high.layer == "h"  # the refused grids changed nothing
        assert room.relay.received_layer(viewer, other) is None
    finally:
        await publisher.close()


async def test_retransmissions_of_each_layer_are_recognised_by_the_rid_they_repair(room: Room) -> None:
    publisher = SimulcastPublisher(drop_every=40)  # no a=ssrc-group: only repaired-rtp-stream-id ties them
    try:
        pid, answer = await publish_simulcast(room, publisher)
        assert "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id" in answer
        viewer, peer = await room.join(silent_audio_track())
        await wait_until(lambda: peer.video_size(pid) == HIGH, 20, "the high layer decoded")
        room.relay.set_layer(viewer, pid, "low")
        await wait_until(lambda: peer.video_size(pid) == LOW, 20, "the low layer decoded")
        session = room.relay.session(pid)
        assert session is not None and session.video_ingress is not None
        ingress = session.video_ingress
        await wait_until(
            lambda: all(layer.retransmitted >= 3 for layer in publisher.layers), 30, "retransmissions sent"
        )
        frames = peer.counter.frames(pid, "video")
        await wait_until(lambda: peer.counter.frames(pid, "video") >= frames + 15, 20, "video goes on")
        for layer in publisher.layers:
            assembler = ingress.layer_assembler(layer.rid)
            assert assembler is not None and assembler.nacks_sent > 0
            assert assembler.gave_up == 0  # every held-back packet arrived by RTX, none waited out
            assert ingress.demux.repair(layer.rtx_ssrc, None) == layer.ssrc
    finally:
        await publisher.close()


async def test_a_subscriber_whose_link_carries_only_the_low_layer_gets_it_instead_of_audio_only(
    room: Room,
) -> None:
    """A 500 kbit/s downlink: the high layer (~600 kbit/s) does not fit, the low one (~150) does. The
    subscriber's budget moves it to the low layer and keeps it there; it is not paused, not audio only."""
    publisher = SimulcastPublisher()
    capped = ImpairedLink(Impairment(down=Shape(rate_bps=500_000)), seed=3)
    try:
        pid, _ = await publish_simulcast(room, publisher)
        viewer, peer = await room.join(silent_audio_track(), tap=capped)
        await wait_until(lambda: peer.video_size(pid) == LOW, 40, "the budget's move to the low layer")
        received = room.relay.received_layer(viewer, pid)
        assert received is not None and received.layer == "l"
        # What a failed browser test prints of the relay's legs says the same.
        assert any(line.startswith(f"{pid} active: on video/l,") for line in room.relay.video_legs()[viewer])
        session = room.relay.session(viewer)
        assert session is not None and session.allocator.downs >= 1
        # It stays on video: low frames keep coming for 6 s, and the person is never told "audio only".
        frames = peer.counter.frames(pid, "video")
        await wait_until(lambda: peer.counter.frames(pid, "video") >= frames + 6 * 10, 20, "low frames")
        assert (viewer, AudioOnlyReason.BANDWIDTH) not in room.audio_only
        assert session.allocator.pauses == 0
    finally:
        await publisher.close()
