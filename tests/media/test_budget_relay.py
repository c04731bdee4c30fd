"""Subscriber budgets with real aiortc peers: a receiver behind a 250 kbit/s cap in a five-person group.

The cap is a token bucket with tail drop in the receiver's own UDP path (``bench.scenarios.impairment``).
Publishers replay pre-encoded VP8 (640x360, 15 fps, ~350 kbit/s) and Opus (16 kbit/s), so the relay's CPU, not the
clients' encoders, is what runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bench.scenarios.impairment import ImpairedLink, Impairment, Shape, is_media, rtp_id
from tests.media.harness import Room, wait_until
from vIOP.client.media import (
    FrameCounter,
    MediaPeer,
    PreEncodedTrack,
    ReceiveMode,
    encode_opus_clip,
    encode_video_clip,
)
from vIOP.ids import ParticipantId
from vIOP.media.budget import AudioOnlyReason
from vIOP.media.downlink import DEFAULT_START_BPS
from vIOP.media.fanout import LEG_KEYFRAME_INTERVAL

CAP_BPS = 250_000
VIDEO = encode_video_clip(640, 360, 15, 2.0, bitrate=500_000)  # ~350 kbit/s
AUDIO = encode_opus_clip(1.0, bitrate=16_000)


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    room = Room()
    yield room
    await room.close()


def audio_frames(room: Room, viewer: ParticipantId, publishers: list[ParticipantId]) -> dict[str, int]:
    return {p: room.peers[viewer].counter.frames(p, "audio") for p in publishers}


async def publishers_and_a_capped_receiver(
    room: Room, publishers: int, link: ImpairedLink
) -> tuple[list[ParticipantId], ParticipantId]:
    """``publishers`` people sending the clips, then one receiver behind ``link`` (it sends audio only)."""
    pids = []
    for _ in range(publishers):
        pid, _peer = await room.join(
            PreEncodedTrack(AUDIO), PreEncodedTrack(VIDEO), receive=ReceiveMode.PACKETS
        )
        pids.append(pid)
    # ENCODED, not PACKETS: its receivers run aiortc's receive path, so it sends reports and REMB.
    capped, _ = await room.join(PreEncodedTrack(AUDIO), receive=ReceiveMode.ENCODED, tap=link)
    return pids, capped


async def test_a_capped_receiver_gets_audio_within_its_cap_and_is_told_audio_only(room: Room) -> None:
    link = ImpairedLink(Impairment(down=Shape(rate_bps=CAP_BPS)), seed=1)
    publishers, capped = await publishers_and_a_capped_receiver(room, 4, link)
    clean = publishers[0]
    others = publishers[1:]

    # The estimate settles: the relay tells the capped receiver it is on audio only.
    await wait_until(
        lambda: (capped, AudioOnlyReason.BANDWIDTH) in room.audio_only,
        25,
        "audio_only for the capped receiver",
    )
    assert room.relay.audio_only(capped) is AudioOnlyReason.BANDWIDTH

    # A measurement window bounded by what the clean receiver gets: 8 s of one publisher's audio.
    before_offered = link.down.stats.offered_bytes
    before_audio = {v: audio_frames(room, v, others) for v in (clean, capped)}
    before_video = {p: room.peers[clean].counter.frames(p, "video") for p in others}
    before_keyframes = {p: room.relay.source(p, "video").keyframe_requests_sent for p in publishers}  # type: ignore[union-attr]
    capped_session = room.relay.session(capped)
    assert capped_session is not None
    before_passed = sum(s.leg.keyframe_requests_passed for s in capped_session.slots)
    first = others[0]
    seconds = await wait_until(
        lambda: room.peers[clean].counter.frames(first, "audio") >= before_audio[clean][first] + 400,
        20,
        "8 s of audio at the clean receiver",
    )

    # The relay sent the capped receiver no more than 1.2x its cap (what reached its link, before the cap).
    offered_bps = 8 * (link.down.stats.offered_bytes - before_offered) / seconds
    assert offered_bps <= 1.2 * CAP_BPS, offered_bps
    # It kept every other person's audio (as much of it as the clean receiver got, within 3 %).
    for p in others:
        got = room.peers[capped].counter.frames(p, "audio") - before_audio[capped][p]
        reference = room.peers[clean].counter.frames(p, "audio") - before_audio[clean][p]
        assert got >= 0.97 * reference, (got, reference)
    # The clean receiver is unaffected: full frame rate of every publisher, never audio only.
    for p in others:
        fps = (room.peers[clean].counter.frames(p, "video") - before_video[p]) / seconds
        assert fps >= 0.9 * 15, fps
    assert all(pid == capped for pid, _ in room.audio_only)
    # The capped receiver did not drive the publishers' keyframes: at most one request per leg interval.
    passed = sum(s.leg.keyframe_requests_passed for s in capped_session.slots) - before_passed
    assert passed <= len(others) * (seconds / LEG_KEYFRAME_INTERVAL + 1), passed
    for p in others:
        sent = room.relay.source(p, "video").keyframe_requests_sent - before_keyframes[p]  # type: ignore[union-attr]
        assert sent <= seconds / LEG_KEYFRAME_INTERVAL + 1, (p, sent)


class NoFeedback:
    """A client whose RTCP never reaches the relay (a broken or hostile client): its SRTCP is dropped."""

    def __init__(self) -> None:
        self.dropped = 0
        self.received = 0

    def incoming(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        if is_media(data):
            self.received += len(data)
        deliver(data)

    def outgoing(self, data: bytes, send: Callable[[bytes], None]) -> None:
        if is_media(data) and rtp_id(data) is None:  # SRTCP: reports, REMB, NACK, PLI
            self.dropped += 1
            return
        send(data)


async def test_a_receiver_that_never_sends_feedback_falls_back_to_the_default_budget(room: Room) -> None:
    publishers = []
    for _ in range(4):
        pid, _peer = await room.join(
            PreEncodedTrack(AUDIO), PreEncodedTrack(VIDEO), receive=ReceiveMode.PACKETS
        )
        publishers.append(pid)
    silent = NoFeedback()
    mute, _ = await room.join(PreEncodedTrack(AUDIO), receive=ReceiveMode.PACKETS, tap=silent)
    session = room.relay.session(mute)
    assert session is not None
    # After the grace for feedback, the default budget holds: video legs paused, audio all kept.
    await wait_until(
        lambda: any(s.leg.paused for s in session.slots if s.leg.kind == "video"), 20, "a paused video leg"
    )
    assert not session.downlink.has_feedback and silent.dropped > 0
    before = silent.received
    before_audio = {p: room.peers[mute].counter.frames(p, "audio") for p in publishers}
    first = publishers[0]
    seconds = await wait_until(
        lambda: room.peers[mute].counter.frames(first, "audio") >= before_audio[first] + 250,
        20,
        "5 s of audio",
    )
    received_bps = 8 * (silent.received - before) / seconds
    assert received_bps <= 1.2 * DEFAULT_START_BPS, received_bps
    for p in publishers:  # every person's audio, whole (Opus at 50 packets/s)
        assert room.peers[mute].counter.frames(p, "audio") - before_audio[p] >= 0.95 * 250
    # Four 350 kbit/s videos do not fit the default: the relay says so instead of drowning the link.
    assert sum(not _paused(room, mute, p) for p in publishers) <= 1


def _paused(room: Room, viewer: ParticipantId, publisher: ParticipantId) -> bool:
    session = room.relay.session(viewer)
    assert session is not None
    return any(s.leg.paused for s in session.slots if s.key == (publisher, "video"))


async def _reconnect(room: Room, pid: ParticipantId, link: ImpairedLink, host: str) -> None:
    """What the web client does after its connection dropped: a new peer connection, a new offer."""
    old = room.peers[pid]
    peer = MediaPeer(host_addresses=(host,), receive=ReceiveMode.ENCODED, counter=FrameCounter(), tap=link)
    peer.publish(PreEncodedTrack(AUDIO))
    room.peers[pid] = peer
    await peer.accept_answer(await room.relay.handle_offer(pid, await peer.create_offer()))
    await old.close()


async def test_a_capped_receiver_that_reconnects_starts_within_what_its_last_connection_learned(
    room: Room,
) -> None:
    first_link = ImpairedLink(Impairment(down=Shape(rate_bps=CAP_BPS)), seed=1)
    publishers, capped = await publishers_and_a_capped_receiver(room, 3, first_link)
    await wait_until(
        lambda: room.relay.audio_only(capped) is AudioOnlyReason.BANDWIDTH,
        25,
        "the first connection on audio only",
    )
    first = room.relay.session(capped)
    assert first is not None and first.started_known is None
    learned = first.learned_link()
    assert learned is not None and learned.estimate_bps < CAP_BPS * 1.5, learned

    # Same participant, same address, the same 250 kbit/s link: the new connection starts from the lesson.
    link = ImpairedLink(Impairment(down=Shape(rate_bps=CAP_BPS)), seed=2)
    await _reconnect(room, capped, link, "127.0.0.1")
    await wait_until(
        lambda: all(room.peers[capped].counter.frames(p, "audio") >= 150 for p in publishers),
        20,
        "3 s of everyone's audio on the new connection",
    )
    second = room.relay.session(capped)
    assert second is not None and second is not first
    assert second.started_known == learned
    # (Told once its video legs are negotiated and decided: a loaded machine takes a while.)
    await wait_until(
        lambda: room.relay.audio_only(capped) is AudioOnlyReason.BANDWIDTH,
        20,
        "the new connection on audio only",
    )
    # Every second of it within 1.2x the cap (a first connection is sent everyone's video until its first
    # feedback: 3 x ~350 kbit/s here).
    per_second = link.down.stats.offered_bytes_per_second()
    assert len(per_second) >= 2 and max(per_second) <= 1.2 * CAP_BPS / 8, per_second
    assert link.down.stats.overflowed == 0
    assert all(room.peers[capped].counter.frames(p, "video") == 0 for p in publishers)
    # "Save data" is the person's choice, not a lesson about the link.
    assert second.learned_link() is not None
    second.set_save_data(True)
    assert second.learned_link() is None


async def test_a_reconnect_from_another_address_starts_afresh(room: Room) -> None:
    link = ImpairedLink(Impairment(down=Shape(rate_bps=CAP_BPS // 2)), seed=1)
    [publisher], capped = await publishers_and_a_capped_receiver(room, 1, link)
    await wait_until(
        lambda: room.relay.audio_only(capped) is AudioOnlyReason.BANDWIDTH,
        25,
        "the first connection on audio only",
    )
    first = room.relay.session(capped)
    assert first is not None and first.learned_link() is not None

    # Another network (a phone off the home Wi-Fi): nothing is known about this link.
    await _reconnect(room, capped, ImpairedLink(Impairment(), seed=2), "127.0.0.2")
    await wait_until(lambda: room.sees(capped, publisher, "video", 10), 20, "video on the new connection")
    second = room.relay.session(capped)
    assert second is not None and second is not first and second.started_known is None
    assert len(room.relay.links) == 1  # the lesson of the first address is kept, for a return to it
