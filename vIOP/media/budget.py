"""A subscriber's budgets: which video it can carry, how much retransmission, how many keyframe requests.

Pure decision logic (the caller owns the clock, the legs and the network), one class per budget:

- :class:`RateMeter` turns byte and packet counters into bits per second, packet overhead included.
- :class:`RtxBudget`, a token bucket: a retransmission is answered only while the subscriber's budget has
  room for it (retransmissions into a full link only make it fuller: that is how a 250 kbit/s receiver was
  offered 22 Mbit/s).
- :class:`VideoAllocator` decides which video a subscriber receives, and at which simulcast layer. Audio is
  never part of the decision: it always flows, and video gets what is left. The budget is spent as a
  ladder (every stream's lowest layer in priority order, then each one's next layer up in priority order);
  when what it forwards does not fit, on evidence, it walks the ladder back (a stream's high layer goes to
  low before anyone is paused), and it climbs one step at a time when a step fits with margin for a while
  or a *probe* passed (the caller pads the link at what the waiting steps would cost for one tick; they
  are taken if the receiver's next reports show no loss). It says when no video is left (audio only) and
  why. Priority is the caller's (active speaker first); ties keep the caller's order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Hashable, Mapping, Sequence
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
SWITCH_SETTLE: Final = 1.5
"""After a step down (or the reports covering a probe) this long, reports describe the old rate (the old
layer flows until the new one's keyframe, the queue drains, reports come about once a second): no evidence
for another step down. Measured: a receiver moved to the low layer was paused 2 s later by the reports of
the high layer's last packets."""
EVIDENCE_MEMORY: Final = 2.0  # how long the estimator counts a lossy report (downlink.CONGESTION_MEMORY)
AFTER_SWITCH: Final = SWITCH_SETTLE + EVIDENCE_MEMORY
"""From then on, every kind of evidence counts again; before it (after SWITCH_SETTLE) only a pooled loss
fresher than the settling, of at least PROBE_CLEAN, and it moves down at once."""
DROWNING_LOSS: Final = 0.3  # a fresh report losing this much moves down at once (see decide)
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
MAX_HOLD_DOWN_FLOWING: Final = HOLD_DOWN
"""The back-off's ceiling while video that held still flows (a low layer): no growth. A failed step up is
caught by live reports within a second or two and undone, and the high layer must come back within 10 s of
the link freeing up (measured with a 4 s ceiling: 3.5-11.2 s, and twice not within 12 s)."""
PROBE_OCTETS: Final = 40_000
"""A probe's size: more than a home shaper's usual burst allowance (the capped-link benchmark's tbf holds
16 kB plus a 100 ms queue), so a capped link drops some of it; a bigger bucket lets a probe pass falsely,
and the resume it allows then meets congestion and backs off like any other."""
PROBE_MIN_BPS: Final = 2_000_000  # sent fast: a capped link drops for the shortest time (audio with it)
PROBE_SETTLE: Final = 1.2
"""Reports pooled this long after the probe ended cover it (Chrome reports a video stream about once a
second): one pooled earlier may describe only what came before the probe."""
PROBE_VERDICT_WITHIN: Final = 3.0  # no report describing the probe by then: it failed
PROBE_CLEAN: Final = 0.02  # a passing probe: the reports after it lost under 2 % (a capped link drops more)
PACED_GAIN: Final = 1.08
"""On audio only, once the link is known to have failed at some rate (the *ceiling*), a probe is padding
paced at this many times the rate proven clean (what is sent, or the last paced probe that passed), not a
burst: a burst into a capped link is 2-3x the cap in its second and costs everyone's audio (measured: a
250 kbit/s receiver offered 2.2-2.5x its cap in each probe's second, 2 audio gaps > 200 ms a minute). Each
passing paced probe raises the next one's rate by this factor; one that reaches the ceiling shows the link
is better than when it failed, and the next probe is a burst again (video back within seconds). 1.08, not
more: a probe just over a shaper's rate can pass falsely (its bucket and queue absorb about 100 kbit over
PACED_SECONDS in the benchmark's), and the next one must still stay within 1.2x of the real rate (issue
13; measured with 1.1: a probe at 1.07x the cap passed, the next one was sent at 1.20x)."""
PACED_SECONDS: Final = 5.0
"""A paced probe lasts this long: at 10 % over a link's rate, long enough to overflow a home shaper's burst
allowance and queue (about 100 kbit: 3-4 s at 250 kbit/s), so a link that cannot carry it drops some."""
PACED_FAIL_LOSS: Final = 0.05  # one pool losing this much fails a paced probe (else two at PROBE_CLEAN)
CEILING_PASSES: Final = 2  # paced probes passing at the ceiling in a row before bursts resume
PACED_LOSS_FROM: Final = 0.5  # a paced probe fails as soon as reports pooled this long after its start lose
TRIAL_CONFIRM: Final = 8.0  # a trial resume must hold this long before "audio only" is lifted
FEEDBACK_GRACE: Final = 5.0  # a new subscriber's first feedback arrives well within this
CHANGES_KEPT: Final = 32  # the allocator's last changes, for diagnostics (see VideoAllocator.changes)


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
    bps: float  # what forwarding its best wanted layer costs now, overhead included (measured at its source)
    lower: tuple[float, ...] = ()
    """What each lower layer costs (simulcast), next lower first; empty: one layer (an old browser, or
    the subscriber's tile wants the lowest)."""

    def cost(self, level: int) -> float:
        """Level 0 is :attr:`bps`, level n the n-th lower layer."""
        return self.bps if level == 0 else self.lower[level - 1]

    @property
    def bottom(self) -> int:
        return len(self.lower)


Step = tuple[Hashable, int]  # (stream, the level it moves up to)


@dataclass(frozen=True, slots=True)
class Allocation:
    forward: frozenset[Hashable]
    reason: AudioOnlyReason | None  # set when video exists but none is forwarded
    probe_octets: int = 0  # pad the link with this much now (see VideoAllocator.decide) ...
    probe_bps: float = 0.0  # ... at this rate ...
    probe_key: Hashable | None = None  # ... on this stream (its receiver reports the padding's loss)
    levels: Mapping[Hashable, int] = field(default_factory=dict)
    """The layer of each forwarded stream (0: its best wanted one, see :attr:`VideoCandidate.lower`)."""
    probe_stop: bool = False  # stop the padding still to go out (a paced probe failed before its end)

    @property
    def audio_only(self) -> bool:
        return self.reason is not None

    def level(self, key: Hashable) -> int | None:
        """The layer ``key`` is forwarded at (None: paused)."""
        return self.levels.get(key) if key in self.forward else None


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
    loss: float = 0.0  # the loss fraction pooled then
    sent_bps: float = 0.0  # what the relay sends the subscriber now, probes' padding apart (0: not known)


def ladder(candidates: Sequence[VideoCandidate]) -> list[Step]:
    """The order the budget is spent in: every stream's lowest layer in priority order (as many people
    as fit are seen at all), then each stream one layer up, in priority order, layer by layer. Going down
    walks it backwards: the least important stream drops to its low layer first, and nobody is paused
    while someone else could still drop a layer."""
    steps: list[Step] = [(c.key, c.bottom) for c in candidates]
    for depth in range(1, 1 + max((c.bottom for c in candidates), default=0)):
        steps += [(c.key, c.bottom - depth) for c in candidates if c.bottom >= depth]
    return steps


@dataclass(slots=True)
class VideoAllocator:
    """Per subscriber; :meth:`decide` once per tick with the candidates in priority order (best first).

    Each stream is forwarded at one of its layers or paused. Moving down needs :data:`DOWN_AFTER` seconds
    of evidence (or a trial that met congestion) and goes only as far as the budget needs; moving up needs
    the next layer to fit with :data:`UP_MARGIN` for :data:`UP_AFTER` seconds, or a probe that passed.
    """

    hold_down: float = HOLD_DOWN
    _level: dict[Hashable, int] = field(default_factory=dict)  # forwarded streams and their layers
    # each stream's lowest level last seen (kept while it is parked: a parked simulcast stream is probed by bursts)
    _depth: dict[Hashable, int] = field(default_factory=dict)
    _known: set[Hashable] = field(default_factory=set)
    # streams gone from the candidates (their tile left the screen): layers above their lowest, None: paused
    _parked: dict[Hashable, int | None] = field(default_factory=dict)
    _over_since: float | None = None
    _room_since: float | None = None
    _last_down: float | None = None
    _last_up: float | None = None
    _trial: dict[Hashable, int] = field(default_factory=dict)  # stepped up after a probe: level before (-1)
    _saved: dict[Hashable, tuple[int, int]] | None = None  # (level, lowest level) when "save data" began
    _probe: tuple[float, float, float, tuple[Step, ...]] | None = None  # started, ended, bps, steps
    _probe_due: bool = False  # a probe was decided and not yet handed to the caller
    _cleared: list[Step] = field(default_factory=list)  # a passed probe's steps, taken one a tick
    _settle_from: float = float("-inf")  # see SWITCH_SETTLE
    _failed_probes: int = 0  # probes failed in a row since video last stepped down or a probe passed
    # The probe in flight: its key, its size, the whole rate it tries (what is sent plus what it clears),
    # and whether it is paced (see PACED_GAIN).
    _probe_key: Hashable | None = None
    _probe_octets: int = PROBE_OCTETS
    _probe_target: float = 0.0
    _probe_paced: bool = False
    _stop_padding: bool = False
    _ceiling: float | None = None  # the least rate the link was last found short at (see PACED_GAIN)
    _from_known: bool = False  # started from a link an earlier connection found short, not yet probed past it
    _proven: float = 0.0  # the rate the last paced probe that passed carried
    _ceiling_passes: int = 0  # paced probes in a row that passed at the ceiling
    _paced_lossy_pools: int = 0  # pools losing PROBE_CLEAN while the paced probe in flight ran
    _paced_pool_seen: float | None = None  # the last pool it counted (one pool is seen at several ticks)
    _restored_at: float = float("-inf")  # when "save data" ended and what flowed before came back
    _hold: float = field(init=False)
    pauses: int = 0
    resumes: int = 0
    downs: int = 0  # moves to a lower layer
    ups: int = 0  # moves to a higher layer
    changes: deque[str] = field(default_factory=lambda: deque(maxlen=CHANGES_KEPT))
    """Each layer change and probe verdict with its reason and the link then, newest last: what support
    staff and a failed test read to tell why someone got the video they got (ids only, no PHI)."""

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
        by_key = {c.key: c for c in candidates}
        keys = list(by_key)
        self._follow_ladders(by_key)
        if save_data:
            if self._saved is None:
                self._saved = {k: (v, self._depth.get(k, 0)) for k, v in self._level.items()}
            self._level.clear()
            self._known.update(keys)
            return Allocation(frozenset(), AudioOnlyReason.SAVE_DATA if keys else None)
        if self._saved is not None:
            # Back from "save data": what flowed before does again (the link carried it; evidence of
            # congestion pauses it as usual). Streams that arrived meanwhile are admitted if they fit. A stream
            # whose tile the grid hid meanwhile (the web client compacts it on audio only) comes back at its
            # layer when shown again, not as budget-paused video, which would keep "audio only" on.
            saved = self._saved
            self._level = {k: min(v, by_key[k].bottom) for k, (v, _) in saved.items() if k in by_key}
            for key, (level, depth) in saved.items():
                if key in self._parked:
                    self._parked[key] = max(0, depth - level)
            self._known = {k for k in saved if k in by_key}
            self._saved = None
            self._restored_at = now
        budget = self.budget(link)

        # Video is paused on evidence only: loss over 10 %, a REMB that fell below what is sent, or no
        # feedback at all (the default budget). A clean link whose estimate lags what is sent is not congested.
        # While a resume is on trial its REMB is no evidence: a receiver's delay-based estimate climbs from
        # the audio-only rate it saw (measured: Chrome's REMB dipped as the keyframes arrived and paused
        # video on a freed link); the probe already answered for the link, loss still ends the trial.
        # The same holds for video back from "save data": the receiver's REMB climbs from the audio-only rate.
        remb_counts = not self._trial and now - self._restored_at >= TRIAL_CONFIRM

        def congested(need: float) -> bool:
            return (
                link.overloaded
                or not link.feedback
                or (remb_counts and link.remb_bps is not None and link.remb_bps < REMB_BELOW * need)
            )

        # Right after a step down or a probe, what reports say is about the rate before it; then for a
        # while only fresh loss counts (a lossy report is remembered for EVIDENCE_MEMORY), and any loss
        # (>= 2 %) does: the link was just found short, and a step that left it lossy was not enough (audio
        # shares that loss). A trial is judged at once: the probe already answered for the link.
        after_switch = not (
            self._trial or now >= self._settle_from + EVIDENCE_MEMORY or not link.feedback
        ) and (now >= self._settle_from)

        def evidence_for(need: float) -> bool:
            if self._trial or now >= self._settle_from + EVIDENCE_MEMORY or not link.feedback:
                return congested(need)
            return after_switch and (
                link.loss_at is not None and link.loss_at >= self._settle_from and link.loss >= PROBE_CLEAN
            )

        # A stream seen for the first time (someone joined) is forwarded unless the link is known to be
        # full: it fits, or nothing says the link is congested (an app-limited estimate cannot show room).
        # It starts at the best layer that fits (its lowest when none does). Video already paused for want of
        # room says the link is full too: a newcomer then waits with it (and is probed for) unless a layer
        # fits, rather than going, unprobed, into the link that could not carry it.
        # On a link an earlier connection found short (start_known), newcomers are admitted only where they
        # fit, like those that wait: clean feedback about the audio alone says nothing about room for video;
        # and one whose cost is not measured yet (its rate meter's first tick) is decided at the next tick:
        # priced at nothing, it would fit any budget. (Only there: a fresh connection's newcomers go out at
        # once, as before; deferring them too left a cluster test's first video paused for 30 s, twice in
        # three CI runs.)
        waiting = self._from_known or any(k in self._known and k not in self._level for k in keys)
        for c in candidates:
            if c.key not in self._known:
                base = self._need(by_key)
                if self._from_known and c.bps <= 0:
                    continue
                self._known.add(c.key)
                fit = next((n for n in range(c.bottom + 1) if base + c.cost(n) <= budget), None)
                if not link.trusted or not (waiting or congested(base + c.bps)):
                    self._level[c.key] = 0
                elif fit is not None:
                    self._level[c.key] = fit
        need = self._need(by_key)
        evidence = evidence_for(need)
        if link.trusted and evidence and need > budget and self._level:
            self._room_since = None
            if self._over_since is None:
                self._over_since = now
            # A trial that meets congestion ends at once: a probe must cost the link as little as it can.
            if self._probe is not None:
                self._stop_padding = True
            self._probe = None
            self._cleared.clear()
            # (Fresh loss right after a switch moves down at once, but never stops the last video: that
            # takes the usual DOWN_AFTER of evidence.)
            at_once = after_switch and len(self._level) > 1
            # Most of what is sent lost, in a report about what is sent now: the link is far too small
            # (a receiver behind a 250 kbit/s cap offered everyone's video as it joins loses 30-85 %); a
            # second of waiting costs everyone's audio there. Random loss never comes near this.
            drowning = (
                link.overloaded
                and link.loss >= DROWNING_LOSS
                and link.loss_at is not None
                and link.loss_at >= self._settle_from
            )
            if now - self._over_since >= DOWN_AFTER or self._trial or at_once or drowning:
                patient = now - self._over_since >= DOWN_AFTER or bool(self._trial) or drowning
                before = dict(self._level)
                self._step_down_until_fits(candidates, by_key, budget, now, keep_one=not patient)
                self._found_short(link.sent_bps)
                self._proven = 0.0  # the link is worse than any paced probe showed
                self._note(
                    now, f"down {before} -> {self._level}: need {need:.0f} > budget {budget:.0f}", link
                )
        else:
            self._over_since = None
            self._maybe_step_up(now, link, candidates, by_key, budget)
        forward = frozenset(self._level)
        if self._last_up is None or now - self._last_up >= TRIAL_CONFIRM:
            self._trial.clear()
        self._trial = {k: v for k, v in self._trial.items() if k in self._level and self._level[k] != v}
        # A resume that has not held yet does not lift "audio only": the person is told once, not per probe.
        shown = {k for k in forward if self._trial.get(k, 0) >= 0}
        # Streams the budget paused stay "video that exists" while the subscriber's grid hides them (the
        # web client compacts its grid on audio only: without this, audio only would flap with the grid).
        hidden_paused = any(above is None for above in self._parked.values())
        reason = AudioOnlyReason.BANDWIDTH if (keys or hidden_paused) and not shown else None
        levels = dict(self._level)
        if self._probe is not None and self._probe_due:
            self._probe_due = False
            _started, _ended, rate, _steps = self._probe
            return Allocation(forward, reason, self._probe_octets, rate, self._probe_key, levels)
        stop, self._stop_padding = self._stop_padding, False
        return Allocation(forward, reason, levels=levels, probe_stop=stop)

    @property
    def ceiling(self) -> float | None:
        """The least rate the link was last found short at (None: not known, or a later probe passed it)."""
        return self._ceiling

    def on_trial(self, key: Hashable) -> bool:
        """``key`` was stepped up after a probe and has not held for TRIAL_CONFIRM yet."""
        return key in self._trial

    @property
    def proven(self) -> float:
        """The rate the last paced probe that passed carried (0: none since the link was last found short)."""
        return self._proven

    def start_known(self, ceiling: float | None) -> None:
        """A new connection on a link an earlier one found short at ``ceiling`` (``vIOP.media.link_memory``):
        probes toward video are paced from what is sent, never bursts into it, until they pass there."""
        self._ceiling = ceiling
        self._from_known = True

    def _note(self, now: float, change: str, link: LinkView) -> None:
        self.changes.append(
            f"{now:.1f} {change} (estimate {link.estimate_bps:.0f}, remb {link.remb_bps}, loss {link.loss:.3f}"
            f"{', overloaded' if link.overloaded else ''}{'' if link.feedback else ', no feedback'})"
        )

    def retain(self, existing: Collection[Hashable]) -> None:
        """Forget hidden streams that no longer exist (their publisher left)."""
        for key in [k for k in self._parked if k not in existing]:
            del self._parked[key]
            self._depth.pop(key, None)

    def _follow_ladders(self, by_key: dict[Hashable, VideoCandidate]) -> None:
        """Keep each stream on the layer it is on when its ladder changes (its subscriber's tile grew or
        shrank, so the best wanted layer is another): levels count from the top, so they shift."""
        # A stream that leaves the candidates and comes back (its subscriber's grid changed: the web client
        # compacts it while on audio only) comes back where it was, not as a newcomer on its best layer.
        for key in [k for k in self._known if k not in by_key]:
            level = self._level.pop(key, None)
            depth = self._depth.get(key, 0)
            self._parked[key] = None if level is None else depth - level
            self._known.discard(key)
        for key, c in by_key.items():
            if key in self._parked:
                above = self._parked.pop(key)
                self._known.add(key)
                self._depth[key] = c.bottom
                if above is not None:
                    self._level[key] = max(0, c.bottom - above)
                continue
            before = self._depth.get(key)
            self._depth[key] = c.bottom
            if before is not None and key in self._level:
                self._level[key] = min(c.bottom, max(0, self._level[key] + c.bottom - before))

    def _need(self, by_key: dict[Hashable, VideoCandidate]) -> float:
        return sum(by_key[k].cost(level) for k, level in self._level.items())

    def _step_down_until_fits(
        self,
        candidates: Sequence[VideoCandidate],
        by_key: dict[Hashable, VideoCandidate],
        budget: float,
        now: float,
        *,
        keep_one: bool = False,
    ) -> None:
        flowing = any(k not in self._trial for k in self._level)  # video that held (not on trial)
        lowered: set[Hashable] = set()
        # A trial that met congestion is undone first: the steps a probe allowed go back to where they were.
        for key, before in self._trial.items():
            if key not in self._level:
                continue
            if before < 0:
                del self._level[key]
                self.pauses += 1
            else:
                self._level[key] = before
                self.downs += 1
            lowered.add(key)
        self._trial.clear()
        for key, level in reversed(ladder(candidates)):  # the least worth keeping first
            if self._need(by_key) <= budget:
                break
            if self._level.get(key) != level:
                continue
            if level < by_key[key].bottom:
                self._level[key] = level + 1
                lowered.add(key)
                self.downs += 1
            elif key not in lowered and not (keep_one and len(self._level) == 1):
                # A stream lowered now is paused only by evidence about its lower layer (AFTER_SWITCH):
                # an estimate cut by the old layer's losses must not take the new one's place too.
                del self._level[key]
                self.pauses += 1
        if self._last_up is not None and now - self._last_up < self._hold + UP_AFTER:
            # The last step up did not hold: back off. While video still flows the next probe is capped
            # lower: its verdict comes from live reports within a second or two, and a person on a low
            # layer should get the high one back soon after their link frees up (issue 13: within 10 s).
            ceiling = MAX_HOLD_DOWN_FLOWING if flowing else MAX_HOLD_DOWN
            self._hold = min(ceiling, self._hold * 2)
        elif self._last_up is None or now - self._last_up > 4 * MAX_HOLD_DOWN:
            self._hold = self.hold_down
        self._last_down = now
        self._failed_probes = 0
        self._settle_from = now + SWITCH_SETTLE
        self._over_since = None

    def _pending_steps(self, candidates: Sequence[VideoCandidate]) -> list[Step]:
        return [(k, n) for k, n in ladder(candidates) if self._level.get(k, n + 1) > n]

    def _step_cost(
        self, by_key: dict[Hashable, VideoCandidate], step: Step, levels: dict[Hashable, int]
    ) -> float:
        key, level = step
        c = by_key[key]
        now = c.cost(levels[key]) if key in levels else 0.0
        return c.cost(level) - now

    def _maybe_step_up(
        self,
        now: float,
        link: LinkView,
        candidates: Sequence[VideoCandidate],
        by_key: dict[Hashable, VideoCandidate],
        budget: float,
    ) -> None:
        pending = self._pending_steps(candidates)
        if not pending:
            self._room_since = None
            self._cleared.clear()
            self._probe_for_hidden(now, link)
            return
        best = pending[0]
        fits = self._need(by_key) + self._step_cost(by_key, best, self._level) * UP_MARGIN <= budget
        held = self._last_down is not None and now - self._last_down < self._hold_down()
        if fits and not held:
            self._probe = None
            if self._room_since is None:
                self._room_since = now
            if now - self._room_since >= UP_AFTER:
                self._step_up(best, now, probed=False)
                self._note(now, f"up {best} (fits the budget {budget:.0f})", link)
            return
        self._room_since = None
        # Streams a probe cleared come back one per decision, so their keyframes do not arrive as one burst
        # (a precaution: the 25-67 % loss first seen after resuming three together turned out to be stale
        # reports, see DownlinkEstimator.on_report; resuming all at once was not measured to be safe); each
        # goes straight to the best layer the probe cleared for it (one switch, one keyframe).
        self._cleared = [s for s in self._cleared if s in pending]
        if self._cleared:
            if link.overloaded:
                self._cleared.clear()
                self._last_down = now
            else:
                self._take_cleared(now)
            return
        # The estimate cannot rise above what little is sent (REMB follows the receive rate; loss says
        # nothing about capacity that is not used): the relay sends a short, fast burst of padding on the
        # stream of the next step and takes every step the burst's rate covers if the receiver's next
        # reports show (almost) no loss. On a full link a probe costs a few dropped packets, most of them
        # its own.
        probe = self._probe
        if probe is not None:
            started, ended, _rate, probed = probe
            what = f"{'paced ' if self._probe_paced else ''}probe to {self._probe_target:.0f} for {probed}"
            # Judged by loss only: a burst sent at 2 Mbit/s raises the queueing delay on purpose, so the
            # receiver's delay-based REMB falls after almost every probe, on a clean link too (and on a loaded
            # machine whose processing delay looks like queueing); a link the burst overfilled drops it.
            if link.overloaded:
                self._probe_failed(now)
                self._note(now, f"{what} failed: congestion", link)
            elif self._paced_probe_lost(link, started):
                self._probe_failed(now)
                self._note(now, f"{what} failed: loss while it ran", link)
            elif link.loss_at is not None and link.loss_at >= ended + PROBE_SETTLE:
                if link.loss < PROBE_CLEAN:
                    self._probe_passed()
                    self._cleared = [s for s in probed if s in pending]
                    self._take_cleared(now)
                    self._note(now, f"{what} passed: now {self._level}", link)
                else:
                    self._probe_failed(now)
                    self._note(now, f"{what} failed: loss", link)
            elif now - ended > PROBE_VERDICT_WITHIN:
                self._probe_failed(now)
                self._note(now, f"{what} failed: no report", link)
            return
        if not link.trusted or link.congested or held:
            return
        levels = dict(self._level)
        # Paced only toward single-layer video: a simulcast stream's low layer is a small step, and the
        # paced ramp (1.08x a probe) from the audio alone took over 40 s to bring one back on a link that
        # carries it (a CI run of tests/media/test_simulcast.py), where a burst takes one probe.
        layered = any(c.bottom > 0 for c in candidates if (c.key, c.bottom) in pending)
        paced = None if layered else self._paced_target(link)
        if paced is None:
            rate = room = max(PROBE_MIN_BPS, UP_MARGIN * self._step_cost(by_key, best, levels))
        else:
            rate = room = paced - link.sent_bps
        chosen: list[Step] = []
        total = 0.0
        for step in pending:  # as many steps as the probe's rate covers, in the ladder's order
            extra = UP_MARGIN * self._step_cost(by_key, step, levels)
            # (A burst clears at least the first step; a paced probe only what its rate covers, maybe
            # nothing yet: passing, it raises the rate the next one tries.)
            if (chosen or paced is not None) and total + extra > room:
                break
            chosen.append(step)
            total += extra
            levels[step[0]] = step[1]
        # A burst pads a stream that flows when there is one (the first in priority order): its receiver
        # reports it without a break. A stream paused longer than the reports' timeout is reported again
        # only once its packets resume, and that first report is set aside as stale (DownlinkEstimator
        # .on_report), so a burst on it went unjudged and passed falsely (measured: a burst into a capped
        # Chromium's 300 kbit/s link "passed", and the layers it cleared failed on loss 2 s later).
        padded = next((c.key for c in candidates if c.key in self._level), best[0])
        self._start_probe(now, padded, rate, tuple(chosen), paced, link.sent_bps + total)

    def _paced_target(self, link: LinkView) -> float | None:
        """The whole rate a paced probe tries now, or None when the next probe is a burst (video flows, no
        failure is known, or what is sent is not known): see :data:`PACED_GAIN`."""
        if self._level or self._ceiling is None or link.sent_bps <= 0:
            return None
        # Never above the least rate the link failed at: reaching it cleanly is what a paced probe is for.
        return min(self._ceiling, PACED_GAIN * max(link.sent_bps, self._proven))

    def _start_probe(
        self,
        now: float,
        key: Hashable,
        rate: float,
        steps: tuple[Step, ...],
        paced: float | None,
        target: float,
    ) -> None:
        """Pad ``key``'s stream at ``rate``: a burst of PROBE_OCTETS, or PACED_SECONDS of paced padding.
        ``target``: the whole rate it tries (a failed one is the link's new ceiling)."""
        seconds = PACED_SECONDS if paced is not None else 8 * PROBE_OCTETS / rate
        ended = now + seconds
        self._probe = (now, ended, rate, steps)
        self._probe_due = True
        self._probe_key = key
        self._probe_paced = paced is not None
        self._probe_octets = int(rate * seconds / 8) if paced is not None else PROBE_OCTETS
        self._probe_target = paced if paced is not None else target
        self._paced_lossy_pools, self._paced_pool_seen = 0, None
        # Its own loss is no evidence: the reports pooled after PROBE_SETTLE cover it.
        self._settle_from = max(self._settle_from, ended + PROBE_SETTLE + 1.0)

    def _paced_probe_lost(self, link: LinkView, started: float) -> bool:
        """A paced probe meets loss while it runs: it fails at once (its rest is not sent). On evidence:
        one pool losing PACED_FAIL_LOSS, or two losing PROBE_CLEAN. A link a paced probe overfills keeps
        losing (everything above its rate, once its allowance is full); one pool at 2 % also happens on a
        link with room (measured: a failure at 0.86x the cap, after which two passes there let a burst
        out at 2x)."""
        if not (
            self._probe_paced
            and link.loss_at is not None
            and link.loss_at >= started + PACED_LOSS_FROM
            and link.loss_at != self._paced_pool_seen
        ):
            return False
        self._paced_pool_seen = link.loss_at
        if link.loss >= PROBE_CLEAN:
            self._paced_lossy_pools += 1
        return link.loss >= PACED_FAIL_LOSS or self._paced_lossy_pools >= 2

    def _probe_passed(self) -> None:
        """The link carried what the probe tried: a paced one raises the next one's rate (and, reaching the
        ceiling, shows the link is better than when it failed); a burst proves the link for its steps."""
        self._probe = None
        self._failed_probes = 0
        if self._probe_paced:
            self._proven = max(self._proven, self._probe_target)
            if self._ceiling is not None and self._probe_target >= self._ceiling:
                # Twice in a row: near its rate a link passes and fails by chance (measured: one pass at
                # the rate that had just failed let a burst go out at 2x the cap).
                self._ceiling_passes += 1
                if self._ceiling_passes >= CEILING_PASSES:
                    self._ceiling = None
                    self._from_known = False
                    self._ceiling_passes = 0
        else:
            self._ceiling = None
            self._from_known = False

    def _found_short(self, rate: float) -> None:
        """The link could not carry ``rate`` (0: not known)."""
        self._ceiling_passes = 0
        if rate > 0:
            self._ceiling = rate if self._ceiling is None else min(self._ceiling, rate)

    def _probe_for_hidden(self, now: float, link: LinkView) -> None:
        """Only paused streams the subscriber's grid hides are waiting (the web client hides its tiles while
        on audio only, so it would never ask for them again): probe for them as for any paused stream; a
        probe that passes marks them as carried at their lowest layer, which lifts "audio only" so the grid
        shows them again (they come back there, see _follow_ladders)."""
        hidden = [k for k, above in self._parked.items() if above is None]
        probe = self._probe
        if not hidden:
            if probe is not None:
                self._stop_padding = True
            self._probe = None
            return
        if probe is not None:
            started, ended, _rate, _probed = probe
            what = f"{'paced ' if self._probe_paced else ''}probe to {self._probe_target:.0f} for hidden {hidden}"
            if (
                link.overloaded or now - ended > PROBE_VERDICT_WITHIN or self._paced_probe_lost(link, started)
            ):  # by loss, as above
                self._probe_failed(now)
                self._note(now, f"{what} failed", link)
            elif link.loss_at is not None and link.loss_at >= ended + PROBE_SETTLE:
                if link.loss < PROBE_CLEAN:
                    was_paced = self._probe_paced
                    self._probe_passed()
                    if not was_paced:  # a paced one only raised the rate of the next probe
                        for key in hidden:
                            self._parked[key] = 0
                        self._last_up = now
                    self._note(now, f"{what} passed", link)
                else:
                    self._probe_failed(now)
                    self._note(now, f"{what} failed: loss", link)
            return
        held = self._last_down is not None and now - self._last_down < self._hold_down()
        if not link.trusted or link.congested or held:
            return
        # Paced only toward single-layer video, as in _maybe_step_up: a hidden simulcast stream comes back on
        # its low layer, which one burst clears (the paced ramp from the audio alone kept a CI run's capped
        # Chromium on audio only for the whole 30 s after its link was freed).
        layered = any(self._depth.get(k, 0) > 0 for k in hidden)
        paced = None if layered else self._paced_target(link)
        rate = PROBE_MIN_BPS if paced is None else paced - link.sent_bps
        # A burst tries the hidden stream's lowest layer, whose cost is not known here: what it tries is
        # counted as its own rate on top of what is sent.
        self._start_probe(now, hidden[0], rate, ((hidden[0], 0),), paced, link.sent_bps + rate)

    def _hold_down(self) -> float:
        """How long after the last step down or failed probe no probe is sent. Failed probes back off only
        while no video flows (audio only: each probe then costs the person everyone's audio, and nothing is
        gained until the link frees up); while a layer still flows a failed probe costs little, and the
        high layer must come back soon after the link frees up (measured on merged main with the back-off
        applied there too: 10.6-13.1 s after the lift, against 6.5-8.3 s without)."""
        flowing = any(k not in self._trial for k in self._level)
        if self._failed_probes < 2 or flowing:
            return self._hold
        return max(self._hold, min(MAX_PROBE_HOLD, self.hold_down * 2.0 ** (self._failed_probes - 1)))

    def _probe_failed(self, now: float) -> None:
        """The next probe waits a hold-down: one after the first failure, doubling after the next ones. What
        it tried is the link's ceiling now; padding still to go out is not sent."""
        if self._probe is not None:
            if now < self._probe[1]:
                self._stop_padding = True
            self._found_short(self._probe_target)
        self._probe = None
        self._last_down = now
        self._failed_probes += 1

    def _take_cleared(self, now: float) -> None:
        """The next stream a passed probe cleared, at the best layer it cleared for it."""
        if not self._cleared:
            return
        key = self._cleared[0][0]
        best = min(level for k, level in self._cleared if k == key)
        self._cleared = [s for s in self._cleared if s[0] != key]
        self._step_up((key, best), now)

    def _step_up(self, step: Step, now: float, *, probed: bool = True) -> None:
        """Take ``step`` on trial: congestion before TRIAL_CONFIRM undoes it at once (an estimate that
        overshot, or a probe that passed falsely, costs one undo, not DOWN_AFTER of loss)."""
        key, level = step
        before = self._level.get(key, -1)
        self._level[key] = level
        if before < 0:
            self.resumes += 1
        else:
            self.ups += 1
        self._last_up = now
        self._trial.setdefault(key, before)
        if probed:
            self._room_since = None
        # else: the room lasted UP_AFTER and still fits the next step with its margin (the need counts the
        # step just taken): the next one follows at the next decision.
