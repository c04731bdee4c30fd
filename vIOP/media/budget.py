"""A subscriber's budgets: which video it can carry, how much retransmission, how many keyframe requests.

Pure decision logic (the caller owns the clock, the legs and the network), one class per budget:

- :class:`RateMeter` turns byte and packet counters into bits per second, packet overhead included.
- :class:`RtxBudget`, a token bucket: a retransmission is answered only while the subscriber's budget has
  room for it (retransmissions into a full link only make it fuller: that is how a 250 kbit/s receiver was
  offered 22 Mbit/s).
- :class:`VideoAllocator` decides which video streams a subscriber receives. Audio is never part of the
  decision: it always flows, and video gets what is left. It pauses the lowest-priority streams when what
  it forwards does not fit the estimate, resumes one at a time when it does (or, when the estimate is
  merely held low by the little it receives, after a *probe*: the caller pads the link at what the waiting
  video would cost for one tick, and the video resumes if the receiver's next reports show no loss), and
  says when no video is left (audio only) and why. Priority is the caller's: the relay ranks
  streams (a hook for active speaker); ties keep the caller's order.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Final

from vIOP.rooms.audio_only import AudioOnlyReason as AudioOnlyReason  # re-exported for the relay

PACKET_OVERHEAD_BYTES: Final = 60  # IPv4 20 + UDP 8 + RTP 12 + extensions ~10 + SRTP tag 10
SMOOTHING: Final = 0.3  # weight of a new rate sample (frames do not line up with ticks)
RTX_SHARE: Final = 0.15  # of the estimate, for retransmissions
RTX_BURST_SECONDS: Final = 0.25
HEADROOM: Final = 0.9  # video plans to fill at most this share of the estimate
REMB_BELOW: Final = 0.85
"""A REMB under this share of what video is sent is congestion: a receiver's estimate starts at what it
receives (Chrome's does) and counts headers a little differently; only a clear drop is evidence."""
DOWN_AFTER: Final = 1.0  # seconds over budget before video is paused
UP_AFTER: Final = 2.0  # seconds with room before a stream is resumed
UP_MARGIN: Final = 1.15  # a resumed stream must fit with this margin
HOLD_DOWN: Final = (
    2.5  # after pausing or a failed probe, no probe before this (doubles after a failed resume)
)
MAX_HOLD_DOWN: Final = 16.0  # a resume that keeps failing (a probe that lied) backs off to this
MAX_PROBE_HOLD: Final = 8.0
"""Probes that keep failing back off (doubling from the second) to one per this long: each one overfills a
capped link for a moment and costs its audio (measured: a 250 kbit/s receiver probed every ~4 s lost 2-3 %
of everyone's audio and was sent 1.1x its cap on average), while a link freed later is still found soon."""
PROBE_OCTETS: Final = 40_000
"""A probe's size: more than a home shaper's usual burst allowance (the capped-link benchmark's tbf holds
16 kB plus a 100 ms queue), so a capped link drops some of it; a bigger bucket lets a probe pass falsely,
and the resume it allows then meets congestion and backs off like any other."""
PROBE_MIN_BPS: Final = 2_000_000  # sent fast: a capped link drops for the shortest time (audio with it)
PROBE_SETTLE: Final = 1.2
"""Reports pooled this long after the probe ended cover it (Chrome reports a video stream about once a
second): one pooled earlier may describe only what came before the probe."""
PROBE_VERDICT_WITHIN: Final = 3.0  # no report describing the probe by then: it failed
PROBE_CLEAN: Final = 0.02
"""A passing probe: the reports after it lost under 2 % beyond the link's inherent loss (``LinkView.loss``;
a capped link drops more)."""
TRIAL_CONFIRM: Final = 8.0  # a trial resume must hold this long before "audio only" is lifted
FEEDBACK_GRACE: Final = 5.0  # a new subscriber's first feedback arrives well within this


class RateMeter:
    """Bits per second from growing (octets, packets) counters, smoothed; packet overhead included."""

    __slots__ = ("_at", "_octets", "_packets", "bps")

    def __init__(self) -> None:
        self._at: float | None = None
        self._octets = 0
        self._packets = 0
        self.bps = 0.0

    def update(self, now: float, octets: int, packets: int) -> float:
        if self._at is None or now <= self._at:
            if self._at is None:
                self._at, self._octets, self._packets = now, octets, packets
            return self.bps
        elapsed = now - self._at
        sample = 8 * ((octets - self._octets) + PACKET_OVERHEAD_BYTES * (packets - self._packets)) / elapsed
        self.bps = sample if self.bps == 0 else (1 - SMOOTHING) * self.bps + SMOOTHING * sample
        self._at, self._octets, self._packets = now, octets, packets
        return self.bps


class RtxBudget:
    """Token bucket for one subscriber's retransmissions, in bits; its rate follows the estimate."""

    __slots__ = ("_at", "_tokens", "answered", "rate_bps", "refused")

    def __init__(self, rate_bps: float) -> None:
        self.rate_bps = rate_bps
        self._tokens = rate_bps * RTX_BURST_SECONDS
        self._at: float | None = None
        self.answered = 0
        self.refused = 0

    def set_rate(self, rate_bps: float) -> None:
        self.rate_bps = max(0.0, rate_bps)

    def take(self, now: float, octets: int) -> bool:
        """May a retransmission of ``octets`` payload bytes go out at ``now``? Counts it if so."""
        burst = self.rate_bps * RTX_BURST_SECONDS
        if self._at is not None:
            self._tokens = min(burst, self._tokens + (now - self._at) * self.rate_bps)
        self._at = now
        cost = 8 * (octets + PACKET_OVERHEAD_BYTES)
        if self._tokens < cost:
            self.refused += 1
            return False
        self._tokens -= cost
        self.answered += 1
        return True


@dataclass(frozen=True, slots=True)
class VideoCandidate:
    key: Hashable
    bps: float  # what forwarding it costs now, overhead included (measured at its source)


@dataclass(frozen=True, slots=True)
class Allocation:
    forward: frozenset[Hashable]
    reason: AudioOnlyReason | None  # set when video exists but none is forwarded
    probe_octets: int = 0  # pad the link with this much now (see VideoAllocator.decide) ...
    probe_bps: float = 0.0  # ... at this rate ...
    probe_key: Hashable | None = None  # ... on this paused stream (its receiver reports the padding's loss)

    @property
    def audio_only(self) -> bool:
        return self.reason is not None


@dataclass(frozen=True, slots=True)
class LinkView:
    """What the allocator is told about the subscriber's downlink at one tick."""

    estimate_bps: float  # the whole link (loss based, or the default)
    remb_bps: float | None  # delay based, budgets video; None when none is limiting (see downlink)
    audio_bps: float
    rtx_bps: float
    congested: bool  # recent reports showed loss (>= 2 %): no trial resumes
    overloaded: bool  # recent reports showed loss over 10 %: evidence for pausing
    trusted: bool  # feedback has arrived (or the grace for it has passed)
    feedback: bool = True  # False: the client sends none (the estimate is the default)
    loss_at: float | None = None  # when reports' loss was last pooled (a probe's verdict waits for one)
    loss: float = 0.0  # the loss fraction pooled then, beyond the link's inherent (random) loss


@dataclass(slots=True)
class VideoAllocator:
    """Per subscriber; :meth:`decide` once per tick with the candidates in priority order (best first)."""

    hold_down: float = HOLD_DOWN
    _forward: set[Hashable] = field(default_factory=set)
    _known: set[Hashable] = field(default_factory=set)
    _over_since: float | None = None
    _room_since: float | None = None
    _last_down: float | None = None
    _last_up: float | None = None
    _trial: frozenset[Hashable] = frozenset()  # resumed after a probe; not yet confirmed
    _saved: set[Hashable] | None = None  # forwarded when "save data" began
    _probe: tuple[float, float, float, tuple[Hashable, ...]] | None = None  # started, ended, bps, streams
    _probe_due: bool = False  # a probe was decided and not yet handed to the caller
    _cleared: list[Hashable] = field(default_factory=list)  # a passed probe's streams, resumed one a tick
    _failed_probes: int = 0  # probes failed in a row since video was last paused or a probe passed
    _hold: float = field(init=False)
    pauses: int = 0
    resumes: int = 0

    def __post_init__(self) -> None:
        self._hold = self.hold_down

    def budget(self, link: LinkView) -> float:
        """Bits per second video may use: the link minus audio and retransmissions, capped by REMB (which
        budgets video: aiortc's covers only video streams, Chrome's is its total)."""
        budget = link.estimate_bps * HEADROOM - link.audio_bps - link.rtx_bps
        if link.remb_bps is not None:
            budget = min(budget, link.remb_bps)
        return max(0.0, budget)

    def decide(
        self, now: float, link: LinkView, candidates: Sequence[VideoCandidate], *, save_data: bool = False
    ) -> Allocation:
        keys = [c.key for c in candidates]
        self._forward &= set(keys)
        self._known &= set(keys)
        if save_data:
            if self._saved is None:
                self._saved = set(self._forward)
            self._forward.clear()
            self._known.update(keys)
            return Allocation(frozenset(), AudioOnlyReason.SAVE_DATA if keys else None)
        if self._saved is not None:
            # Back from "save data": what flowed before does again (the link carried it; evidence of
            # congestion pauses it as usual). Streams that arrived meanwhile are admitted if they fit.
            self._forward = self._saved & set(keys)
            self._known = set(self._saved)
            self._saved = None
        cost = {c.key: c.bps for c in candidates}
        budget = self.budget(link)

        # Video is paused on evidence only: loss over 10 %, a REMB that fell below what is sent, or no
        # feedback at all (the default budget). A clean link whose estimate lags what is sent is not congested.
        # While a resume is on trial its REMB is no evidence: a receiver's delay-based estimate climbs from
        # the audio-only rate it saw (measured: Chrome's REMB dipped as the keyframes arrived and paused
        # video on a freed link); the probe already answered for the link, loss still ends the trial.
        remb_counts = not self._trial

        def congested(need: float) -> bool:
            return (
                link.overloaded
                or not link.feedback
                or (remb_counts and link.remb_bps is not None and link.remb_bps < REMB_BELOW * need)
            )

        # A stream seen for the first time (someone joined) is forwarded unless the link is known to be
        # full: it fits, or nothing says the link is congested (an app-limited estimate cannot show room).
        # Video already paused for want of room says the link is full too: a newcomer waits with it (and
        # is probed for) rather than going, unprobed, into the link that could not carry it.
        waiting = any(k in self._known and k not in self._forward for k in keys)
        for key in keys:
            if key not in self._known:
                self._known.add(key)
                need = self._need(cost) + cost[key]
                if not link.trusted or need <= budget or not (waiting or congested(need)):
                    self._forward.add(key)
        need = self._need(cost)
        evidence = congested(need)
        if link.trusted and evidence and need > budget and self._forward:
            self._room_since = None
            if self._over_since is None:
                self._over_since = now
            # A trial that meets congestion ends at once: a probe must cost the link as little as it can.
            self._probe = None
            self._cleared.clear()
            if now - self._over_since >= DOWN_AFTER or self._trial:
                self._pause_until_fits(keys, cost, budget, now)
        else:
            self._over_since = None
            self._maybe_resume(now, link, keys, cost, budget)
        forward = frozenset(self._forward)
        if self._last_up is None or now - self._last_up >= TRIAL_CONFIRM:
            self._trial = frozenset()
        self._trial &= forward
        # A resume that has not held yet does not lift "audio only": the person is told once, not per probe.
        shown = forward - self._trial
        reason = AudioOnlyReason.BANDWIDTH if keys and not shown else None
        if self._probe is not None and self._probe_due:
            self._probe_due = False
            _started, _ended, rate, probed = self._probe
            return Allocation(forward, reason, PROBE_OCTETS, rate, probed[0])
        return Allocation(forward, reason)

    def _need(self, cost: dict[Hashable, float]) -> float:
        return sum(cost[k] for k in self._forward)

    def _pause_until_fits(
        self, keys: list[Hashable], cost: dict[Hashable, float], budget: float, now: float
    ) -> None:
        for key in reversed(keys):  # lowest priority first
            if self._need(cost) <= budget:
                break
            if key in self._forward:
                self._forward.discard(key)
                self.pauses += 1
        if self._last_up is not None and now - self._last_up < self._hold + UP_AFTER:
            self._hold = min(MAX_HOLD_DOWN, self._hold * 2)  # the last resume did not hold: back off
        elif self._last_up is None or now - self._last_up > 4 * MAX_HOLD_DOWN:
            self._hold = self.hold_down
        self._last_down = now
        self._over_since = None
        self._failed_probes = 0

    def _maybe_resume(
        self, now: float, link: LinkView, keys: list[Hashable], cost: dict[Hashable, float], budget: float
    ) -> None:
        waiting = [k for k in keys if k not in self._forward]
        if not waiting:
            self._room_since = self._probe = None
            return
        best = waiting[0]
        fits = self._need(cost) + cost[best] * UP_MARGIN <= budget
        held = self._last_down is not None and now - self._last_down < self._hold_down()
        if fits and not held:
            self._probe = None
            if self._room_since is None:
                self._room_since = now
            if now - self._room_since >= UP_AFTER:
                self._resume([best], now, trial=False)
            return
        self._room_since = None
        # Streams a probe cleared come back one per decision, so their keyframes do not arrive as one burst
        # (a precaution: the 25-67 % loss first seen after resuming three together turned out to be stale
        # reports, see DownlinkEstimator.on_report; resuming all at once was not measured to be safe).
        self._cleared = [k for k in self._cleared if k in waiting]
        if self._cleared:
            if link.overloaded or link.remb_bps is not None:
                self._cleared.clear()
                self._last_down = now
            else:
                self._resume([self._cleared.pop(0)], now)
            return
        # The estimate cannot rise above what little is sent (REMB follows the receive rate; loss says
        # nothing about capacity that is not used): the relay sends a short, fast burst of padding on the best
        # waiting stream and resumes every waiting stream the burst's rate covers if the receiver's next
        # reports show (almost) no loss. On a full link a probe costs a few dropped packets, most of them its own.
        probe = self._probe
        if probe is not None:
            _started, ended, _rate, probed = probe
            if link.overloaded or link.remb_bps is not None:
                self._probe_failed(now)
            elif link.loss_at is not None and link.loss_at >= ended + PROBE_SETTLE:
                self._probe = None
                if link.loss < PROBE_CLEAN:
                    self._failed_probes = 0
                    cleared = [k for k in probed if k in waiting]
                    self._resume(cleared[:1], now)
                    self._cleared = cleared[1:]
                else:
                    self._probe_failed(now)
            elif now - ended > PROBE_VERDICT_WITHIN:
                self._probe_failed(now)
            return
        if not link.trusted or link.congested or held:
            return
        rate = max(PROBE_MIN_BPS, UP_MARGIN * cost[best])
        chosen: list[Hashable] = []
        total = 0.0
        for key in waiting:  # as many as the probe's rate covers, in priority order
            if chosen and total + UP_MARGIN * cost[key] > rate:
                break
            chosen.append(key)
            total += UP_MARGIN * cost[key]
        self._probe = (now, now + 8 * PROBE_OCTETS / rate, rate, tuple(chosen))
        self._probe_due = True

    def _hold_down(self) -> float:
        """How long after the last pause or failed probe no probe is sent."""
        if self._failed_probes < 2:
            return self._hold
        return max(self._hold, min(MAX_PROBE_HOLD, self.hold_down * 2.0 ** (self._failed_probes - 1)))

    def _probe_failed(self, now: float) -> None:
        """The next probe waits a hold-down: one after the first failure, doubling after the next ones."""
        self._probe = None
        self._last_down = now
        self._failed_probes += 1

    def _resume(self, resumed: list[Hashable], now: float, *, trial: bool = True) -> None:
        self._forward.update(resumed)
        self.resumes += len(resumed)
        self._last_up = now
        self._room_since = None
        if trial:
            self._trial |= frozenset(resumed)
