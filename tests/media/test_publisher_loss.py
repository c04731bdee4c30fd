"""A publisher with 3 % uplink loss, real aiortc peers through the real relay on 127.0.0.1.

The loss is injected in the publisher client's own UDP path (``tap_datagrams``, as the impairment harness
does): per stream (SSRC), the same 3 of every 100 RTP packets are dropped, drawn once with a fixed seed, so
every run loses exactly 3 % of the publisher's audio, video and retransmissions (a random 3 % would put
anything from 1.5 % to 5 % into a short window). Counting starts with the measurement window, so one
retransmission is lost inside it (the second one: residue 1), the case that froze everyone before.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final

import pytest

from bench.scenarios.impairment import is_media, rtp_id
from tests.media.harness import Room, wait_until
from vIOP.client.media import (
    FrameCounter,
    PreEncodedTrack,
    ReceiveMode,
    encode_opus_clip,
    encode_video_clip,
)
from vIOP.ids import ParticipantId
from vIOP.media.aiortc_internals import sender_ssrcs

SEED: Final = 15
DROPPED: Final = frozenset(random.Random(SEED).sample(range(100), 3))  # {1, 26, 66}
WINDOW_FRAMES: Final = 120  # 8 s of the publisher's 15 fps video
MAX_FREEZE: Final = 0.5
FLOW_TIMEOUT: Final = 10.0


class UplinkLoss:
    """A ``DatagramTap`` dropping, per SSRC, the RTP packets whose index (from :meth:`arm`) is in DROPPED."""

    def __init__(self) -> None:
        self.armed = False
        self.seen: Counter[int] = Counter()
        self.dropped: Counter[int] = Counter()

    def arm(self) -> None:
        self.armed = True

    def incoming(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        deliver(data)

    def outgoing(self, data: bytes, send: Callable[[bytes], None]) -> None:
        rtp = rtp_id(data) if self.armed and is_media(data) else None
        if rtp is not None:
            ssrc = rtp[0]
            index = self.seen[ssrc]
            self.seen[ssrc] += 1
            if index % 100 in DROPPED:
                self.dropped[ssrc] += 1
                return
        send(data)


@dataclass(slots=True)
class ArrivalCounter(FrameCounter):
    """A FrameCounter that also keeps each frame's arrival time."""

    arrivals: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, publisher: str, kind: str, frames: int = 1) -> None:
        FrameCounter.add(self, publisher, kind, frames)
        self.arrivals.setdefault((publisher, kind), []).append(self.clock())


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    room = Room()
    yield room
    await room.close()


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest time without a frame in [start, end] (a frame just before ``start`` counts)."""
    before = [t for t in times if t < start]
    inside = [t for t in times if start <= t <= end]
    points = [before[-1] if before else start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(points))


async def test_clean_receivers_see_a_lossy_publisher_smoothly_and_miss_only_its_lost_audio(
    room: Room,
) -> None:
    video = PreEncodedTrack(encode_video_clip(320, 180, 15, 12.0, bitrate=300_000))  # one keyframe, 12 s
    audio = PreEncodedTrack(encode_opus_clip(1.0))
    loss = UplinkLoss()
    publisher, publisher_peer = await room.join(audio, video, receive=ReceiveMode.ENCODED, tap=loss)
    receivers: dict[ParticipantId, ArrivalCounter] = {}
    for _ in range(2):
        # Receivers publish audio only, so the relay sends the publisher a stream and measures its RTT.
        pid, peer = await room.join(PreEncodedTrack(encode_opus_clip(1.0)), receive=ReceiveMode.ENCODED)
        peer.counter = receivers[pid] = ArrivalCounter()
    await wait_until(
        lambda: all(c.frames(publisher, "video") >= 3 for c in receivers.values()),
        FLOW_TIMEOUT,
        "every receiver decoding the publisher's video",
    )

    counter = next(iter(receivers.values()))
    start, video_start, audio_start = counter.clock(), video.frames_sent, audio.frames_sent
    loss.arm()
    await wait_until(
        lambda: video.frames_sent >= video_start + WINDOW_FRAMES, 3 * WINDOW_FRAMES / 15, "the window"
    )
    end, video_sent, audio_sent = (
        counter.clock(),
        video.frames_sent - video_start,
        audio.frames_sent - audio_start,
    )

    media_ssrc, rtx_ssrc = sender_ssrcs(
        next(t.sender for t in publisher_peer.pc.getTransceivers() if t.kind == "video")
    )
    assert loss.dropped[media_ssrc] >= 3 and loss.dropped[rtx_ssrc] >= 1, (
        loss.dropped
    )  # a lost retransmission
    for pid, receiver in receivers.items():
        video_times = receiver.arrivals[(publisher, "video")]
        audio_times = receiver.arrivals[(publisher, "audio")]
        video_in = sum(start <= t <= end for t in video_times)
        audio_in = sum(start <= t <= end for t in audio_times)
        assert video_in >= 0.95 * video_sent, (pid, video_in, video_sent)
        assert longest_gap(video_times, start, end) <= MAX_FREEZE, (pid, longest_gap(video_times, start, end))
        assert 1 - audio_in / audio_sent < 0.04, (pid, audio_in, audio_sent)
    session = room.relay.session(publisher)
    assert session is not None and session.video_ingress is not None
    assembler = session.video_ingress.assembler
    assert assembler.gave_up == 0 and assembler.nacks_sent > loss.dropped[media_ssrc]  # asked again
