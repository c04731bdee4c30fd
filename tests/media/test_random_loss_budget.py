"""Steady random downlink loss is not congestion; a capped link still is (issue 13, "a receiver with 3 %
downlink loss": no freezes of its own).

Pure: the subscriber's estimator and allocator are fed the receiver reports and REMBs an aiortc receiver
would send (one report per stream every 0.5-1.5 s, ``fraction_lost`` over the packets since its last
report), with an injected clock and a seeded random loss, and decide every budget tick as the relay does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from vIOP.media.budget import FEEDBACK_GRACE, Allocation, VideoAllocator, VideoCandidate
from vIOP.media.downlink import DownlinkEstimator
from vIOP.media.rtp import PADDING_OCTETS

TICK = 0.5  # the relay's budget tick
STEP = 0.01
AUDIO_BPS, AUDIO_PPS = 45_000, 50.0  # Opus 20 ms frames, packet overhead included
VIDEO_BPS, VIDEO_PPS = 500_000, 45.0  # the impaired bench's 640x360 15 fps VP8


class ManualTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Stream:
    """One leg as the subscriber's aiortc receiver sees it: packets arrive, a report goes out now and then."""

    ssrc: int
    video: bool
    next_report: float
    highest: int = 1000
    arrived: float = 0.0  # packets since the last report (fractional: rates do not fit the step)
    lost: int = 0


@dataclass
class Downlink:
    """A subscriber of ``publishers`` people on a link with random ``loss`` and/or a ``cap_bps`` (tail drop:
    what the relay sends above the cap is lost, from every stream alike)."""

    publishers: int
    loss: float = 0.0
    cap_bps: float | None = None
    seed: int = 13
    clock: ManualTime = field(default_factory=ManualTime)
    remb_per_video: float | None = None  # each video receiver's REMB (aiortc: one per stream); None: none

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.estimator = DownlinkEstimator(clock=self.clock)
        self.allocator = VideoAllocator()
        self.started = self.clock.now
        self.streams = [
            Stream(ssrc=10 * n + video, video=bool(video), next_report=self._first_report())
            for n in range(self.publishers)
            for video in (0, 1)
        ]
        self.videos = [VideoCandidate(s.ssrc, VIDEO_BPS) for s in self.streams if s.video]
        self.forward: frozenset[object] = frozenset(c.key for c in self.videos)
        self.probe_left = 0.0  # padding octets still to go out
        self.probe_bps = 0.0
        self.probe_key: object = None
        self.decisions: list[tuple[float, Allocation]] = []
        self.offered_bits = 0.0  # what the relay sent this subscriber (media and padding)

    def _first_report(self) -> float:
        return self.clock.now + self.rng.uniform(0.5, 1.5)

    def sending_bps(self) -> float:
        video = sum(c.bps for c in self.videos if c.key in self.forward)
        return self.publishers * AUDIO_BPS + video + (self.probe_bps if self.probe_left > 0 else 0.0)

    def _lost(self, bps: float) -> float:
        """Probability a packet is lost now: random loss, then the cap's tail drop."""
        drop = 0.0 if self.cap_bps is None else max(0.0, 1 - self.cap_bps / bps)
        return 1 - (1 - self.loss) * (1 - drop)

    def _step(self) -> None:
        clock, rng = self.clock, self.rng
        bps = self.sending_bps()
        p = self._lost(bps)
        self.offered_bits += bps * STEP
        for stream in self.streams:
            if stream.video and stream.ssrc not in self.forward:
                new = 0.0
            else:
                new = (VIDEO_PPS if stream.video else AUDIO_PPS) * STEP
            if self.probe_left > 0 and stream.ssrc == self.probe_key:
                octets = min(self.probe_left, self.probe_bps * STEP / 8)
                self.probe_left -= octets
                new += octets / PADDING_OCTETS
            before = int(stream.arrived)
            stream.arrived += new
            stream.lost += sum(rng.random() < p for _ in range(int(stream.arrived) - before))
            if clock.now >= stream.next_report:
                expected = int(stream.arrived)
                fraction = (stream.lost << 8) // expected if expected else 0
                stream.highest += expected
                self.estimator.on_report(stream.ssrc, min(fraction, 255), stream.highest)
                stream.arrived -= expected
                stream.lost = 0
                stream.next_report = clock.now + rng.uniform(0.5, 1.5)

    def _tick(self, save_data: bool = False) -> Allocation:
        now = self.clock.now
        est = self.estimator
        if self.remb_per_video is not None:
            for stream in self.streams:
                if stream.video:
                    est.on_remb(int(self.remb_per_video), [stream.ssrc])
        est.on_sent(self.sending_bps())
        link = est.link_view(
            audio_bps=self.publishers * AUDIO_BPS,
            rtx_bps=0.0,
            grace_over=now - self.started >= FEEDBACK_GRACE,
        )
        allocation = self.allocator.decide(now, link, self.videos)
        self.forward = allocation.forward
        if allocation.probe_octets > 0:
            self.probe_left, self.probe_bps = float(allocation.probe_octets), allocation.probe_bps
            self.probe_key = allocation.probe_key
        self.decisions.append((now, allocation))
        return allocation

    def run(self, seconds: float) -> None:
        end = self.clock.now + seconds
        next_tick = self.clock.now + TICK
        while self.clock.now < end:
            self.clock.now += STEP
            self._step()
            if self.clock.now >= next_tick:
                next_tick += TICK
                self._tick()

    def paused_at(self) -> list[float]:
        return [t for t, a in self.decisions if len(a.forward) < len(self.videos)]


# --- steady random loss --------------------------------------------------------------------------------------


def test_three_percent_random_loss_never_pauses_a_receivers_video() -> None:
    """One, two and four people sending to a receiver whose link drops 3 % of packets at random, for ten
    minutes each: every video stays forwarded. Before the fix a single report pool over a few dozen packets
    (3 % of 40 is 1.2 on average, 5 is 12.5 %) read as "over 10 % loss", cut the estimate and paused video,
    and the pause lasted for good (the 2-10 % zone blocks every probe)."""
    for publishers in (1, 2, 4):
        link = Downlink(publishers, loss=0.03, seed=13)
        link.run(600)
        assert link.paused_at() == [], (publishers, link.paused_at()[:3])
        assert link.allocator.pauses == 0
        assert all(a.reason is None for _, a in link.decisions)
        assert not link.estimator.overloaded


def test_eight_percent_random_loss_is_not_read_as_over_ten() -> None:
    """Heavier random loss (8 %, where tests/media/test_client_rtx.py used to run): reports pooled over a
    hundred-odd packets are sometimes over 10 % by chance; only loss significantly over 10 % is overload."""
    link = Downlink(2, loss=0.08, seed=21)
    link.run(300)
    assert link.allocator.pauses == 0, link.paused_at()[:3]


def test_a_randomly_lossy_receiver_paused_by_a_remb_drop_gets_its_video_back() -> None:
    """Its receiver's delay-based REMB fell (a real queue for a while): video pauses, as it must. Once the
    REMB is back, the random 3 % the link always loses must not keep the video off: a probe is judged
    against the link's own loss, not against 2 % (before the fix it never came back)."""
    link = Downlink(4, loss=0.03, seed=5, remb_per_video=1_500_000)
    link.run(20)
    assert link.paused_at() == []
    link.remb_per_video = 100_000  # every receiver's REMB fell: overuse seen
    link.run(3)
    assert len(link.decisions[-1][1].forward) == 0  # paused: REMB 400k < one video
    dropped_at = link.clock.now
    link.remb_per_video = None  # the estimate recovers; REMB sets go stale after FEEDBACK_TIMEOUT
    link.run(40)
    back = [t for t, a in link.decisions if t > dropped_at and len(a.forward) == 4]
    assert back, "video never came back"
    assert back[0] - dropped_at <= 25, back[0] - dropped_at
    last = [a for t, a in link.decisions if t > link.clock.now - 10]
    assert all(len(a.forward) == 4 and a.reason is None for a in last)


# --- the capped receiver must not be weakened -----------------------------------------------------------


def test_a_capped_receiver_is_still_paused_within_two_seconds_and_kept_under_its_cap() -> None:
    """Four 500 kbit/s videos into 250 kbit/s: the loss is massive and significant at once."""
    link = Downlink(4, cap_bps=250_000, seed=3)
    link.run(60)
    first_report = link.started + 0.5
    paused = [t for t, a in link.decisions if not a.forward]
    assert paused and paused[0] - first_report <= 2.5, paused[:1]
    settled = [a for t, a in link.decisions if t >= paused[0]]
    assert all(a.reason is not None for a in settled)  # told audio-only, never lifted
    # What the relay offered it after the pause: audio, plus the probes that failed.
    link.offered_bits = 0.0
    link.run(60)
    assert link.offered_bits / 60 <= 1.2 * 250_000, link.offered_bits / 60
    assert all(not a.forward for _, a in link.decisions[-100:])


def test_random_loss_on_top_of_a_cap_still_pauses() -> None:
    """A capped link that also drops 3 % at random: the cap's loss is what counts."""
    link = Downlink(2, loss=0.03, cap_bps=250_000, seed=8)
    link.run(10)
    assert all(not a.forward for _, a in link.decisions[-10:])
