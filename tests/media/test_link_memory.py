"""What a connection learned of a short downlink, for the same participant's next connection from the same
address (``vIOP.media.link_memory``), and how the allocator starts from it. No network: injected clocks."""

from __future__ import annotations

from vIOP.media.budget import PACED_GAIN, LinkView, VideoAllocator, VideoCandidate
from vIOP.media.downlink import DEFAULT_START_BPS, DownlinkEstimator
from vIOP.media.link_memory import LINK_MEMORY_SECONDS, MAX_REMEMBERED, KnownLink, LinkMemory

SHORT = KnownLink(estimate_bps=230_000, ceiling_bps=314_000)
AUDIO = 200_000
A, B = ("a", "video"), ("b", "video")
VIDEO = [VideoCandidate(A, 500_000, (150_000,)), VideoCandidate(B, 500_000, (150_000,))]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_lesson_is_recalled_for_the_same_participant_from_the_same_address_only() -> None:
    memory = LinkMemory()
    home = memory.tag("198.51.100.7")
    memory.remember("pt_a", home, SHORT)
    assert memory.recall("pt_a", memory.tag("198.51.100.7")) == SHORT
    assert memory.recall("pt_a", memory.tag("203.0.113.9")) is None  # another network
    assert memory.recall("pt_b", home) is None  # another person behind the same address


def test_the_address_is_kept_only_as_a_digest_keyed_per_process() -> None:
    one, other = LinkMemory(), LinkMemory()
    tag = one.tag("198.51.100.7")
    assert b"198.51.100.7" not in tag and len(tag) == 16
    assert other.tag("198.51.100.7") != tag  # a random key each: a digest cannot be looked up elsewhere
    one.remember("pt_a", tag, SHORT)
    assert "198.51.100.7" not in repr(one)


def test_a_lesson_expires_and_the_oldest_go_first_when_full() -> None:
    clock = Clock()
    memory = LinkMemory(clock=clock)
    tag = memory.tag("198.51.100.7")
    memory.remember("pt_a", tag, SHORT)
    clock.now += LINK_MEMORY_SECONDS
    assert memory.recall("pt_a", tag) == SHORT
    clock.now += 1
    assert memory.recall("pt_a", tag) is None and len(memory) == 0

    for n in range(MAX_REMEMBERED + 1):
        memory.remember(f"pt_{n}", tag, SHORT)
    assert len(memory) == MAX_REMEMBERED
    assert memory.recall("pt_0", tag) is None and memory.recall(f"pt_{MAX_REMEMBERED}", tag) == SHORT


def test_the_estimate_starts_from_a_known_link_and_is_trusted_before_any_feedback() -> None:
    clock = Clock()
    downlink = DownlinkEstimator(clock=clock)
    view = downlink.link_view(audio_bps=AUDIO, rtx_bps=0, grace_over=False)
    assert not view.trusted and view.estimate_bps == DEFAULT_START_BPS
    downlink.start_known(SHORT.estimate_bps)
    view = downlink.link_view(audio_bps=AUDIO, rtx_bps=0, grace_over=False)
    assert view.trusted and not view.feedback and view.estimate_bps == SHORT.estimate_bps


def view(*, feedback: bool, sent: float, estimate: float = SHORT.estimate_bps) -> LinkView:
    return LinkView(
        estimate_bps=estimate,
        remb_bps=None,
        audio_bps=AUDIO,
        rtx_bps=0,
        congested=False,
        overloaded=False,
        trusted=True,
        feedback=feedback,
        sent_bps=sent,
    )


def test_from_a_known_short_link_video_waits_for_room_though_the_audio_alone_reports_clean() -> None:
    fresh, known = VideoAllocator(), VideoAllocator()
    known.start_known(SHORT.ceiling_bps)
    # Clean feedback about the audio alone: a fresh connection forwards its newcomers (nothing says the
    # link is full), one from a known short link admits only what fits (nothing does here).
    assert fresh.decide(0.0, view(feedback=True, sent=AUDIO), VIDEO).forward == {A, B}
    allocation = known.decide(0.0, view(feedback=True, sent=AUDIO), VIDEO)
    assert allocation.forward == frozenset() and allocation.audio_only
    # With room for one low layer, that one comes (the active speaker's).
    roomy = VideoAllocator()
    roomy.start_known(None)
    allocation = roomy.decide(0.0, view(feedback=True, sent=AUDIO, estimate=(AUDIO + 160_000) / 0.9), VIDEO)
    assert allocation.forward == {A} and allocation.level(A) == 1


def test_from_a_known_short_link_the_first_probe_is_paced_from_what_is_sent_not_a_burst() -> None:
    known = VideoAllocator()
    known.start_known(SHORT.ceiling_bps)
    single = [VideoCandidate(A, 300_000), VideoCandidate(B, 300_000)]  # one layer: paced probes apply
    probes = [known.decide(t * 0.5, view(feedback=True, sent=AUDIO), single) for t in range(4)]
    probe = next(p for p in probes if p.probe_octets > 0)
    assert AUDIO + probe.probe_bps <= PACED_GAIN * AUDIO + 1, probe.probe_bps


def test_a_newcomer_not_yet_priced_is_decided_at_the_next_tick_not_at_no_cost() -> None:
    known = VideoAllocator()
    known.start_known(SHORT.ceiling_bps)
    unpriced = [VideoCandidate(A, 0.0, (0.0,))]  # its rate meter's first tick
    assert known.decide(0.0, view(feedback=False, sent=0), unpriced).forward == frozenset()
    priced = [VideoCandidate(A, 500_000, (150_000,))]
    allocation = known.decide(0.5, view(feedback=False, sent=AUDIO, estimate=(AUDIO + 160_000) / 0.9), priced)
    assert allocation.forward == {A} and allocation.level(A) == 1  # judged at its cost: the low layer fits
