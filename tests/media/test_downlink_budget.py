"""The subscriber-side estimate and budgets without a network: injected clock, exact decisions."""

from __future__ import annotations

import itertools

import pytest

from vIOP.ids import ParticipantId
from vIOP.media.budget import (
    AFTER_SWITCH,
    DOWN_AFTER,
    HOLD_DOWN,
    MAX_PROBE_HOLD,
    PROBE_MIN_BPS,
    PROBE_OCTETS,
    PROBE_SETTLE,
    TRIAL_CONFIRM,
    AudioOnlyReason,
    LinkView,
    RateMeter,
    RtxBudget,
    VideoAllocator,
    VideoCandidate,
)
from vIOP.media.downlink import (
    CONGESTION_MEMORY,
    DEFAULT_START_BPS,
    FEEDBACK_TIMEOUT,
    INHERENT_MAX,
    DownlinkEstimator,
    EstimateSource,
    loss_lower_bound,
)
from vIOP.media.fanout import LEG_KEYFRAME_INTERVAL, Leg, Source
from vIOP.media.keyframes import DEFAULT_KEYFRAME_INTERVAL
from vIOP.media.rtp import RtpWriter


class ManualTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def report(est: DownlinkEstimator, clock: ManualTime, loss: float, packets: int = 100, ssrc: int = 1) -> None:
    """One receiver report per second of ``packets`` packets with ``loss`` lost."""
    stream = est._streams.get(ssrc)
    highest = (stream.highest or 0) if stream is not None else 1000
    clock.now += 1.0
    est.on_report(ssrc, round(loss * 256), highest + packets)


# --- DownlinkEstimator -------------------------------------------------------------------------------------


def test_without_feedback_the_estimate_is_the_conservative_default() -> None:
    clock = ManualTime()
    est = DownlinkEstimator(clock=clock)
    assert est.bitrate == DEFAULT_START_BPS
    assert est.source is EstimateSource.DEFAULT and not est.has_feedback and est.remb is None


def test_loss_cuts_the_estimate_from_what_was_sent_and_low_loss_grows_it_to_what_is_sent() -> None:
    clock = ManualTime()
    est = DownlinkEstimator(clock=clock)
    est.on_sent(1_600_000)
    report(est, clock, 0.0)
    assert est.bitrate == pytest.approx(1_600_000 * 1.08)  # a clean link carries what is sent
    report(est, clock, 0.5)
    assert est.bitrate == pytest.approx(1_600_000 * (1 - 0.25), rel=0.01)  # cut by half the loss
    assert est.congested and est.overloaded and est.source is EstimateSource.LOSS
    est.on_sent(200_000)
    before = est.bitrate
    report(est, clock, 0.05)  # between 2 % and 10 %: hold
    assert est.bitrate == before
    report(est, clock, 0.0)  # app-limited: 200 kbit/s sent says nothing about the rest of the link
    assert est.bitrate == before
    assert est.congested  # one clean report right after lossy ones: still congested
    clock.now += CONGESTION_MEMORY
    assert not est.congested and not est.overloaded
    report(est, clock, 0.05)  # a few packets lost: not clean (no trial), but no reason to pause video
    assert est.congested and not est.overloaded


def test_growth_starts_from_the_least_sent_lately_not_from_a_stream_resumed_a_moment_ago() -> None:
    clock = ManualTime()
    est = DownlinkEstimator(clock=clock)
    est.on_sent(200_000)
    report(est, clock, 0.0)  # a stream's first report counts once: alone it is no evidence either way
    report(est, clock, 0.5)  # congested at 200 kbit/s: cut to 150k
    assert est.bitrate == pytest.approx(150_000)
    est.on_sent(150_000)
    clock.now += 0.5
    est.on_sent(500_000)  # a trial resume: the next report still describes the audio-only past
    report(est, clock, 0.0)
    assert est.bitrate == pytest.approx(150_000 * 1.08)


def test_a_probes_padding_is_no_ground_for_growth_only_what_is_carried_is() -> None:
    """Regression (issue 13, a Chromium behind 300 kbit/s): after a failed burst probe the padding meter's
    smoothed tail counted as sent, and clean reports grew the estimate from it to 424 kbit/s."""
    clock = ManualTime()
    est = DownlinkEstimator(clock=clock)
    est.on_sent(300_000)
    report(est, clock, 0.0)
    report(est, clock, 0.5)  # the probe overfilled the link: cut from what was sent
    assert est.bitrate < 300_000
    highest = est._streams[1].highest or 0
    for tick, padding in enumerate((192_000, 134_000, 94_000, 66_000, 46_000, 32_000, 22_000, 15_000)):
        clock.now += 0.5  # the relay's decisions every 0.5 s; clean reports every second
        est.on_sent(300_000 + padding, padding_bps=padding)
        if tick % 2:
            highest += 50
            est.on_report(1, 0, highest)
    assert est.bitrate == pytest.approx(300_000 * 1.08)


def test_the_loss_a_probe_causes_cuts_from_the_rate_with_its_padding_not_from_the_media_alone() -> None:
    """Regression (a flaky tests/media/test_simulcast.py run): a burst into a 500 kbit/s link carrying a
    150 kbit/s layer lost a quarter of what the reports covered; cut from the media alone, the estimate fell
    to ~140 kbit/s, under the layer it carried cleanly, and the budget paused it."""
    clock = ManualTime()
    est = DownlinkEstimator(clock=clock)
    est.on_sent(170_000)
    est.on_report(1, 0, 1000)
    before = est.bitrate
    clock.now += 0.5
    est.on_sent(170_000 + 1_600_000, padding_bps=1_600_000)  # the burst's tick
    clock.now += 0.5
    est.on_sent(170_000 + 480_000, padding_bps=480_000)  # its smoothed tail
    est.on_report(1, 64, 1400)  # 25 % of 400 packets lost: overloaded
    assert est.overloaded
    assert 0.8 * before <= est.bitrate < before
    # Congestion with no probe in the last SENT_MEMORY cuts from the media sent, as before.
    for _ in range(4):
        clock.now += 0.5
        est.on_sent(170_000)
    est.on_report(1, 64, 1800)
    assert est.bitrate < 170_000


def test_reports_are_pooled_by_packets_so_a_sparse_stream_weighs_little() -> None:
    clock = ManualTime()
    est = DownlinkEstimator(clock=clock)
    est.on_sent(1_000_000)
    est.on_report(1, 0, 5000)  # the first report is applied at once (clean): a window starts
    clock.now += 0.2
    est.on_report(2, 0, 100)  # first of a sparse stream: counts once
    clock.now += 0.2
    est.on_report(2, 128, 110)  # 50 % of 10 audio packets
    clock.now += 0.2
    est.on_report(1, 0, 6000)  # 0 % of 1000 video packets; the window is over: pooled
    assert est.last_loss == pytest.approx(5 / 1011)
    assert not est.congested


def test_remb_sets_are_summed_and_forgotten_when_stale() -> None:
    clock = ManualTime()
    est = DownlinkEstimator(clock=clock)
    est.on_remb(300_000, [11])  # aiortc: one REMB per video receiver
    est.on_remb(200_000, [12])
    est.on_remb(300_000, [11])  # the same set again replaces, not adds
    assert est.remb == 500_000 and est.source is EstimateSource.REMB
    est.on_remb(900_000, [11, 12])  # Chrome: one REMB naming every SSRC (delivered once per sender)
    est.on_remb(900_000, [12, 11])
    assert est.remb == 1_400_000
    clock.now += FEEDBACK_TIMEOUT + 0.1
    assert est.remb is None and not est.has_feedback
    assert est.bitrate == DEFAULT_START_BPS  # a client that stopped sending feedback: the default again


def test_a_remb_limits_only_after_it_fell() -> None:
    clock = ManualTime()
    est = DownlinkEstimator(clock=clock)
    est.on_remb(250_000, [11, 12])  # video paused: the receiver's REMB follows the little it gets
    est.on_remb(300_000, [11, 12])
    assert est.remb == 300_000 and not est.remb_limiting
    est.on_remb(200_000, [11, 12])  # it fell: overuse seen
    assert est.remb_limiting
    clock.now += CONGESTION_MEMORY + 0.1
    est.on_remb(210_000, [11, 12])
    assert not est.remb_limiting


def test_the_first_report_of_a_stream_resumed_after_a_long_pause_is_not_counted_as_loss() -> None:
    clock = ManualTime()
    est = DownlinkEstimator(clock=clock)
    est.on_sent(300_000)
    est.on_report(7, 0, 1000)
    clock.now += 1.0
    est.on_report(7, 0, 1100)
    clock.now += FEEDBACK_TIMEOUT + 10  # paused: the receiver stopped reporting the stream
    est.on_report(7, 170, 1172)  # its packets lost before the pause, reported only now
    clock.now += 1.0
    est.on_report(7, 0, 1250)
    assert est.last_loss == 0.0 and not est.congested and not est.overloaded
    clock.now += 1.0
    est.on_report(7, 64, 1350)  # loss while it flows counts as before
    assert est.last_loss == 0.25 and est.overloaded


def test_aiortc_sixteen_bit_sequence_numbers_wrap() -> None:
    clock = ManualTime()
    est = DownlinkEstimator(clock=clock)
    est.on_sent(500_000)
    est.on_report(1, 0, 65_500)
    clock.now += 1.0
    est.on_report(1, 26, 64)  # wrapped: 100 packets, ~10 % lost
    assert est.last_loss == pytest.approx(26 / 256)


def test_loss_over_ten_percent_must_be_significant_and_inherent_loss_is_learned_from_clean_blocks() -> None:
    clock = ManualTime()
    est = DownlinkEstimator(clock=clock)
    est.on_sent(1_000_000)
    highest = 1000

    def report(fraction: int, packets: int) -> None:
        nonlocal highest
        clock.now += 1.0
        highest += packets
        est.on_report(1, fraction, highest)

    report(0, 1)  # a stream's first report: where counting starts
    report(32, 40)  # 12.5 % of 40 packets: 5 lost, what 3 % random loss does about once in thirty
    assert est.last_loss == 0.125 and not est.overloaded
    clock.now += 3  # past CONGESTION_MEMORY, within FEEDBACK_TIMEOUT
    report(35, 400)  # 13.7 % of 400 packets: not yet significant alone ...
    assert not est.overloaded
    report(35, 400)  # ... but twice in a row, pooled over the last 2 s, it is
    assert est.overloaded and est.congested
    clock.now += 3  # past CONGESTION_MEMORY, within FEEDBACK_TIMEOUT
    report(51, 400)  # 20 % of 400 packets at once: no chance either
    assert est.overloaded and est.congested
    clock.now += 3  # past CONGESTION_MEMORY, within FEEDBACK_TIMEOUT
    for _ in range(20):  # steady 3 % (8/256): the link's own loss
        report(8, 100)
    assert 0.025 < est.inherent_loss < 0.035
    assert not est.congested and est.last_excess_loss < 0.01
    inherent = est.inherent_loss
    report(128, 400)  # 50 %: overloaded, and not taken for the link's own loss
    assert est.overloaded and est.inherent_loss == inherent
    for _ in range(20):
        report(200, 100)  # 78 % for long: still never more than INHERENT_MAX, and overloaded throughout
        assert est.overloaded
    assert est.inherent_loss <= INHERENT_MAX
    assert loss_lower_bound(0, 0, 3.0) == 0.0 and loss_lower_bound(80, 100, 3.0) > 0.6


# --- RateMeter and RtxBudget -------------------------------------------------------------------------------


def test_rate_meter_counts_packet_overhead() -> None:
    meter = RateMeter()
    assert meter.update(0.0, 0, 0) == 0.0
    assert meter.update(1.0, 10_000, 50) == pytest.approx(8 * (10_000 + 60 * 50))


def test_rtx_budget_answers_within_its_rate_and_refuses_beyond() -> None:
    budget = RtxBudget(80_000)  # 10 kB/s, burst 2.5 kB
    answered = sum(budget.take(t * 0.01, 1000) for t in range(100))  # 100 kB/s of NACKed packets for 1 s
    assert budget.refused == 100 - answered
    assert 8 <= answered <= 13  # about 10 kB/s plus the burst
    budget.set_rate(0)
    assert not budget.take(2.0, 1000)


def test_nacks_for_packets_older_than_a_second_are_not_answered() -> None:
    writer = RtpWriter(
        video=True, ssrc=1, rtx_ssrc=2, sequence=100, rtx_sequence=5, timestamp_origin=0, picture_id=0
    )
    writer.configure(payload_type=96, rtx_payload_type=97, mid=None, mid_id=None, abs_send_time_id=None)
    sent_at = 1000 << 32
    writer.frame(b"x" * 50, 0, sent_at)
    assert writer.retransmittable(100, sent_at + (1 << 31)) == 54  # half a second later: yes
    assert writer.retransmission(100, sent_at + (1 << 31)) is not None
    assert writer.retransmittable(100, sent_at + (3 << 31)) is None  # 1.5 s later: too late to help
    assert writer.retransmission(100, sent_at + (3 << 31)) is None
    assert writer.retransmittable(101, sent_at) is None  # never sent


# --- VideoAllocator ----------------------------------------------------------------------------------------


def link(
    estimate: float,
    *,
    congested: bool = False,
    remb: float | None = None,
    feedback: bool = True,
    loss_at: float | None = None,
    loss: float = 0.0,
) -> LinkView:
    return LinkView(
        estimate_bps=estimate,
        remb_bps=remb,
        audio_bps=100_000,
        rtx_bps=0,
        congested=congested,
        overloaded=congested,
        trusted=True,
        feedback=feedback,
        loss_at=loss_at,
        loss=loss,
    )


VIDEOS = [VideoCandidate(("a", "video"), 400_000), VideoCandidate(("b", "video"), 400_000)]


def test_congestion_pauses_the_lowest_priority_video_first_and_then_all_of_it() -> None:
    allocator = VideoAllocator()
    assert allocator.decide(0.0, link(2_000_000), VIDEOS).forward == {VIDEOS[0].key, VIDEOS[1].key}
    squeezed = link(700_000, congested=True)
    assert len(allocator.decide(1.0, squeezed, VIDEOS).forward) == 2  # not before DOWN_AFTER
    kept = allocator.decide(1.0 + DOWN_AFTER, squeezed, VIDEOS)
    assert kept.forward == {VIDEOS[0].key} and not kept.audio_only  # the first (most worth keeping) stays
    starved = link(300_000, congested=True)
    # The next step down waits until the reports describe the rate after the first (AFTER_SWITCH).
    settled = 1.0 + DOWN_AFTER + AFTER_SWITCH
    assert allocator.decide(settled - 0.5, starved, VIDEOS).forward == kept.forward
    allocator.decide(settled, starved, VIDEOS)
    gone = allocator.decide(settled + DOWN_AFTER, starved, VIDEOS)
    assert gone.forward == frozenset() and gone.reason is AudioOnlyReason.BANDWIDTH


def test_a_clean_link_whose_estimate_lags_is_not_paused() -> None:
    allocator = VideoAllocator()
    allocator.decide(0.0, link(2_000_000), VIDEOS)
    for t in range(10):  # the loss-based estimate lags what is sent, but nothing is lost
        assert len(allocator.decide(float(t), link(500_000), VIDEOS).forward) == 2


def test_a_remb_at_what_is_received_is_not_congestion_but_a_clear_drop_is() -> None:
    allocator = VideoAllocator()
    allocator.decide(0.0, link(5_000_000), VIDEOS)
    for t in range(5):  # a receiver's first REMB is what it receives (headers counted a little apart)
        assert len(allocator.decide(float(t), link(5_000_000, remb=760_000), VIDEOS).forward) == 2
    allocator.decide(10.0, link(5_000_000, remb=500_000), VIDEOS)
    dropped = allocator.decide(10.0 + DOWN_AFTER, link(5_000_000, remb=500_000), VIDEOS)
    assert dropped.forward == {VIDEOS[0].key}  # the REMB caps video: one 400k stream fits in 500k


def test_no_feedback_falls_back_to_the_default_budget() -> None:
    allocator = VideoAllocator()
    allocator.decide(0.0, link(600_000, feedback=False), VIDEOS)
    allocation = allocator.decide(DOWN_AFTER, link(600_000, feedback=False), VIDEOS)
    assert allocation.forward == {VIDEOS[0].key}  # 600k * 0.9 - 100k audio fits one 400k stream


def paused_allocator(candidates: list[VideoCandidate]) -> tuple[VideoAllocator, float]:
    """An allocator whose subscriber's link filled up: every video paused at the returned time."""
    allocator = VideoAllocator()
    allocator.decide(0.0, link(2_000_000), candidates)
    allocator.decide(1.0, link(200_000, congested=True), candidates)
    assert allocator.decide(1.0 + DOWN_AFTER, link(200_000, congested=True), candidates).audio_only
    return allocator, 1.0 + DOWN_AFTER


def clean(t: float) -> LinkView:
    """Audio only, nothing lost, reports pooled at ``t``; the estimate cannot show room for video."""
    return link(250_000, loss_at=t)


def test_a_paused_subscriber_is_probed_after_the_hold_down_and_resumed_when_the_probe_arrived_whole() -> None:
    one = VIDEOS[:1]
    allocator, paused_at = paused_allocator(one)
    t = paused_at
    while t + 0.5 < paused_at + HOLD_DOWN:
        t += 0.5
        allocation = allocator.decide(t, clean(t), one)
        assert allocation.forward == frozenset() and allocation.probe_octets == 0, t
    t += 0.5
    probe = allocator.decide(t, clean(t), one)
    assert probe.forward == frozenset() and probe.reason is AudioOnlyReason.BANDWIDTH
    assert probe.probe_octets == PROBE_OCTETS and probe.probe_key == one[0].key
    assert probe.probe_bps >= PROBE_MIN_BPS
    ended = t + 8 * PROBE_OCTETS / probe.probe_bps
    decisions = []
    while t < ended + PROBE_SETTLE + 20:
        t += 0.5
        decisions.append((t, allocator.decide(t, clean(t), one)))
    resumed = next(at for at, a in decisions if a.forward)
    assert ended + PROBE_SETTLE <= resumed <= ended + PROBE_SETTLE + 0.5  # the first report covering it
    assert all(a.probe_octets == 0 for _, a in decisions)  # one probe was enough
    # The resume does not lift "audio only" until it has held; then no flapping.
    lifted = next(at for at, a in decisions if a.reason is None)
    assert lifted == resumed + TRIAL_CONFIRM
    assert all(a.forward == {one[0].key} for at, a in decisions if at >= resumed)
    assert all(a.reason is None for at, a in decisions if at >= lifted)


def test_a_probe_is_judged_only_by_reports_that_cover_it() -> None:
    one = VIDEOS[:1]
    allocator, paused_at = paused_allocator(one)
    t = paused_at + HOLD_DOWN
    probe = allocator.decide(t, clean(t), one)
    assert probe.probe_octets == PROBE_OCTETS
    ended = t + 8 * PROBE_OCTETS / probe.probe_bps
    stale = clean(t)  # the reports keep describing the time before the probe: no verdict
    for n in range(1, 6):
        assert allocator.decide(t + 0.5 * n, stale, one).forward == frozenset()
    assert allocator.decide(t + 3.0, clean(ended + PROBE_SETTLE), one).forward == {one[0].key}


def test_a_probe_is_judged_by_loss_not_by_the_remb_fall_its_own_burst_causes() -> None:
    """A probe's burst raises the queueing delay on purpose, so the receiver's delay-based REMB falls after
    it on a clean link too (and on a loaded machine). Failing the probe on that fall kept a clean link's
    video down: in CI a browser's large tile stayed on the low layer for 15 s. Loss decides."""
    one = VIDEOS[:1]
    allocator, paused_at = paused_allocator(one)
    t = paused_at + HOLD_DOWN
    probe = allocator.decide(t, clean(t), one)
    assert probe.probe_octets == PROBE_OCTETS
    ended = t + 8 * PROBE_OCTETS / probe.probe_bps
    fell = link(250_000, remb=150_000, loss_at=t)  # the REMB fell as the burst arrived; nothing lost
    assert allocator.decide(t + 0.5, fell, one).forward == frozenset()
    covered = link(250_000, remb=150_000, loss_at=ended + PROBE_SETTLE)
    assert allocator.decide(ended + PROBE_SETTLE + 0.1, covered, one).forward == {one[0].key}


def test_a_probe_that_meets_loss_fails_and_the_next_waits_one_hold_down() -> None:
    one = VIDEOS[:1]
    allocator, paused_at = paused_allocator(one)
    t = paused_at + HOLD_DOWN
    assert allocator.decide(t, clean(t), one).probe_octets == PROBE_OCTETS
    # The capped link dropped part of the probe: a few per cent lost (audio's loss stays small).
    lossy = link(250_000, loss_at=t + 1.5, loss=0.04)
    failed_at = t + 1.5
    assert allocator.decide(failed_at, lossy, one).forward == frozenset()
    u = failed_at
    while u + 0.5 < failed_at + HOLD_DOWN:
        u += 0.5
        allocation = allocator.decide(u, link(250_000, loss_at=u, congested=u < failed_at + 2), one)
        assert allocation.forward == frozenset() and allocation.probe_octets == 0, u
    u += 0.5
    again = allocator.decide(u, clean(u), one)  # not doubled: a failed probe costs the link little
    assert again.probe_octets == PROBE_OCTETS and again.forward == frozenset()
    assert allocator.resumes == 0


def test_probes_that_keep_failing_back_off_to_one_per_max_probe_hold() -> None:
    # Issue 13: a 250 kbit/s receiver on audio only was probed every ~4 s for good; each probe overfills
    # its link for a moment (its audio with it). Failures in a row space the probes out, up to a bound.
    one = VIDEOS[:1]
    allocator, paused_at = paused_allocator(one)
    t, probes = paused_at, []
    while t < paused_at + 60:
        t += 0.5
        # The reports pooled 1.0-2.0 s after a probe show what the link did to it: 30 % lost.
        lossy = bool(probes) and probes[-1] + 1.0 <= t <= probes[-1] + 2.0
        allocation = allocator.decide(t, link(250_000, loss_at=t, loss=0.3 if lossy else 0.0), one)
        assert allocation.forward == frozenset()
        if allocation.probe_octets:
            probes.append(t)
    verdict = 1.5  # the first decision whose reports cover the probe (it ends 0.16 s in, + PROBE_SETTLE)
    spacing = [later - earlier - verdict for earlier, later in itertools.pairwise(probes)]
    assert spacing[:4] == [HOLD_DOWN, 2 * HOLD_DOWN, MAX_PROBE_HOLD, MAX_PROBE_HOLD]
    assert all(gap == MAX_PROBE_HOLD for gap in spacing[2:]) and len(probes) >= 6
    assert allocator.resumes == 0


def test_one_probe_clears_every_waiting_stream_its_rate_carries_one_resumed_per_decision() -> None:
    allocator, paused_at = paused_allocator(VIDEOS)
    t = paused_at + HOLD_DOWN
    probe = allocator.decide(t, clean(t), VIDEOS)
    assert probe.probe_key == VIDEOS[0].key  # padding on the first stream to come back
    t += 8 * PROBE_OCTETS / probe.probe_bps + PROBE_SETTLE + 0.01
    assert allocator.decide(t, clean(t), VIDEOS).forward == {VIDEOS[0].key}
    # 2 x 400k x 1.15 fits a 2 Mbit/s probe: the second follows at the next decision, without a probe.
    back = allocator.decide(t + 0.5, clean(t + 0.5), VIDEOS)
    assert back.forward == {VIDEOS[0].key, VIDEOS[1].key} and back.probe_octets == 0


def test_a_resume_that_meets_congestion_ends_at_the_next_decision_and_backs_off() -> None:
    one = VIDEOS[:1]
    allocator, paused_at = paused_allocator(one)
    t = paused_at + HOLD_DOWN
    probe = allocator.decide(t, clean(t), one)
    t += 8 * PROBE_OCTETS / probe.probe_bps + PROBE_SETTLE + 0.01
    assert allocator.decide(t, clean(t), one).forward == {one[0].key}
    t += 0.5
    assert allocator.decide(t, link(250_000, congested=True, loss_at=t), one).forward == frozenset()
    # The probe was wrong (a bigger burst allowance than it filled): the next one waits twice as long.
    u = t
    while u + 0.5 < t + 2 * HOLD_DOWN:
        u += 0.5
        assert allocator.decide(u, link(250_000, loss_at=u, congested=u < t + 2), one).probe_octets == 0, u
    later = [allocator.decide(u + 0.5 * k, clean(u + 0.5 * k), one).probe_octets for k in (1, 2)]
    assert PROBE_OCTETS in later


def test_save_data_pauses_every_video_and_says_why() -> None:
    allocator = VideoAllocator()
    allocation = allocator.decide(0.0, link(5_000_000), VIDEOS, save_data=True)
    assert allocation.forward == frozenset() and allocation.reason is AudioOnlyReason.SAVE_DATA
    assert allocator.decide(0.5, link(5_000_000), [], save_data=True).reason is None  # nothing to stop
    back = allocator.decide(1.0, link(5_000_000), VIDEOS)  # off again: what flowed before flows again
    assert back.forward == {VIDEOS[0].key, VIDEOS[1].key} and back.reason is None


def test_a_new_stream_is_admitted_on_a_clean_link_but_not_into_a_congested_one() -> None:
    clean = VideoAllocator()
    clean.decide(0.0, link(600_000), VIDEOS[:1])
    # Someone joins: the estimate (app-limited: 1.08x what is sent) shows no room, but nothing is lost.
    assert clean.decide(0.5, link(600_000), VIDEOS).forward == {VIDEOS[0].key, VIDEOS[1].key}
    full = VideoAllocator()
    full.decide(0.0, link(600_000, congested=True), VIDEOS[:1])
    assert full.decide(0.5, link(600_000, congested=True), VIDEOS).forward == {VIDEOS[0].key}
    silent = VideoAllocator()  # no feedback: the default budget decides
    silent.decide(0.0, link(600_000, feedback=False), VIDEOS[:1])
    assert silent.decide(0.5, link(600_000, feedback=False), VIDEOS).forward == {VIDEOS[0].key}


def test_a_new_stream_waits_while_video_is_paused_for_want_of_room() -> None:
    # Issue 13: a capped receiver on audio only has a clean link (nothing lost, the estimate no higher than
    # its audio); someone joining must not send it their video unprobed (500 kbit/s into 250 for seconds).
    one = VIDEOS[:1]
    allocator, paused_at = paused_allocator(one)
    t = paused_at + 0.5
    joined = allocator.decide(t, clean(t), VIDEOS)
    assert joined.forward == frozenset() and joined.reason is AudioOnlyReason.BANDWIDTH
    # It is probed for with the others once the hold-down has passed, and resumed if the probe passes.
    t = paused_at + HOLD_DOWN
    probe = allocator.decide(t, clean(t), VIDEOS)
    assert probe.probe_octets == PROBE_OCTETS and probe.probe_key == VIDEOS[0].key
    t += 8 * PROBE_OCTETS / probe.probe_bps + PROBE_SETTLE + 0.01
    assert allocator.decide(t, clean(t), VIDEOS).forward == {VIDEOS[0].key}
    assert allocator.decide(t + 0.5, clean(t + 0.5), VIDEOS).forward == {VIDEOS[0].key, VIDEOS[1].key}


# --- per-leg keyframe limit --------------------------------------------------------------------------------


async def test_one_subscribers_keyframe_requests_reach_the_source_once_per_leg_interval() -> None:
    source = Source(ParticipantId("pt_pub"), "video")
    source.bind_upstream(lambda: None)
    leg = Leg("video")
    source.attach(leg)
    for _ in range(50):  # a congested subscriber sends a PLI burst
        leg.request_keyframe()
    # One passes now; the rest wait for one trailing request LEG_KEYFRAME_INTERVAL later (KeyframeGate).
    assert leg.keyframe_requests_in == 50 and leg.keyframe_requests_passed == 1
    assert LEG_KEYFRAME_INTERVAL > DEFAULT_KEYFRAME_INTERVAL  # stricter than the room-wide gate
    leg.set_paused(True)
    leg.request_keyframe()  # a paused leg's requests are not passed on, nor counted
    assert leg.keyframe_requests_in == 50
    leg.stop()
