"""One subscriber's downlink estimate (bits per second), from the RTCP feedback its client sends.

Three sources, in order of trust:

- **REMB** (receiver estimated maximum bitrate, delay based). Chrome sends one REMB naming every SSRC it
  receives (the value is its total); aiortc sends one per video receiver (each value is that stream's).
  So the latest value per distinct SSRC set is kept and the sets are summed; a set not refreshed for
  ``feedback_timeout`` seconds (a paused stream, a client that stopped) is forgotten.
- **Receiver reports' loss fraction**, as GCC's loss-based controller (draft-ietf-rmcat-gcc section 6):
  below 2 % loss the rate may grow to 8 % above what is being sent (never beyond: an application-limited
  sender learns nothing about the link, as in libwebrtc), above 10 % it is cut by half the loss fraction,
  in between it holds. Reports are pooled per update (packets expected from the extended highest sequence
  numbers), so a busy video stream weighs more than a sparse one.

  Steady random loss (Wi-Fi, a lossy last hop) is not congestion, and a pool of a few dozen packets is
  noisy (3 % of 40 packets is 1.2 on average; 5 lost, 12.5 %, happens one pool in thirty). So, like
  libwebrtc's loss-based estimator v2, which models an *inherent* loss apart from the loss that grows with
  the sending rate: a pool counts as over 10 % only when its loss, or that of the pools of the last
  :data:`CONGESTION_MEMORY` together, is *significantly* over 10 % (the lower end of its 99.9 % Wilson
  interval), and as lossy (over 2 %) only when significantly over the link's
  :attr:`~DownlinkEstimator.inherent_loss` plus 2 %. The inherent loss is the lower quartile of the loss in
  the last blocks of 500 packets not overloaded (a capped link paused to audio only loses next to nothing,
  so its inherent loss is ~0; a randomly lossy one keeps losing at any rate), and at most 5 %.
- A conservative **default** while neither has arrived (a client that never sends feedback).

:attr:`bitrate` is the loss-based estimate of the whole link; :attr:`remb` the delay-based one, which
budgets video (aiortc's REMB covers only video streams) while it is :attr:`remb_limiting` (it fell: the
receiver saw overuse; a REMB that merely follows a low receive rate says nothing about the link). Pure: the clock is injected, nothing here does
I/O; the caller tells it what it sends (:meth:`on_sent`).
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Final

from vIOP.media.budget import LinkView

DEFAULT_START_BPS: Final = 600_000
"""Until feedback arrives: enough for every participant's audio and one small video stream."""
MIN_BPS: Final = 30_000
MAX_BPS: Final = 20_000_000
FEEDBACK_TIMEOUT: Final = 5.0
LOSS_UPDATE_INTERVAL: Final = 0.5  # pool receiver reports at least this long before acting on them
LOW_LOSS: Final = 0.02
HIGH_LOSS: Final = 0.10
INCREASE: Final = 1.08
SENT_MEMORY: Final = 1.5  # growth starts from the least sent over this long: reports lag what is sent
CONGESTION_MEMORY: Final = 2.0  # loss seen (or a REMB fall) this recently still counts as congestion
REMB_FALL: Final = 0.9  # a REMB this far under the previous one from the same receiver: it saw overuse
OVERLOAD_CONFIDENCE: Final = 0.999
"""A pool is overloaded when its loss is over :data:`HIGH_LOSS` at this confidence: pausing someone's video
needs strong evidence (a capped link loses most of what exceeds it: 80 % of 20 packets is enough)."""
LOSSY_CONFIDENCE: Final = 0.95  # lossy (no probes, no growth): a cheaper verdict, a weaker test
INHERENT_BLOCK_PACKETS: Final = 500
INHERENT_BLOCKS: Final = 12  # 6,000 packets: 15-30 s of a group's streams
INHERENT_MAX: Final = 0.05  # more than this is never taken for the link's own loss

_Z_OVERLOAD: Final = NormalDist().inv_cdf(OVERLOAD_CONFIDENCE)
_Z_LOSSY: Final = NormalDist().inv_cdf(LOSSY_CONFIDENCE)


def loss_lower_bound(lost: float, expected: float, z: float) -> float:
    """The lower end of the Wilson score interval for a loss rate of ``lost`` in ``expected`` packets: the
    least loss rate the reports support at the confidence ``z`` stands for (one-sided)."""
    if expected <= 0:
        return 0.0
    p = min(1.0, max(0.0, lost / expected))
    z2n = z * z / expected
    margin = z * math.sqrt(p * (1 - p) / expected + z2n / (4 * expected))
    return max(0.0, (p + z2n / 2 - margin) / (1 + z2n))


class EstimateSource(enum.StrEnum):
    REMB = "remb"
    LOSS = "loss"
    DEFAULT = "default"


@dataclass(slots=True)
class _Stream:
    highest: int | None = None  # extended highest sequence number of the last report
    at: float | None = None  # when it came


@dataclass(slots=True)
class DownlinkEstimator:
    """Per subscriber; feed it every report and REMB its client sends, read :attr:`bitrate`."""

    clock: Callable[[], float] = time.monotonic
    start_bps: int = DEFAULT_START_BPS
    feedback_timeout: float = FEEDBACK_TIMEOUT
    loss_based: float = field(init=False)
    last_loss: float = field(init=False, default=0.0)
    last_excess_loss: float = field(init=False, default=0.0)
    """``last_loss`` beyond :attr:`inherent_loss` (what a probe's verdict reads)."""
    last_loss_at: float | None = field(init=False, default=None)
    _remb: dict[frozenset[int], tuple[int, float]] = field(init=False, default_factory=dict)
    _streams: dict[int, _Stream] = field(init=False, default_factory=dict)
    _expected: int = field(init=False, default=0)
    _lost: float = field(init=False, default=0.0)
    _window_start: float | None = field(init=False, default=None)
    last_feedback_at: float | None = field(init=False, default=None)
    informed: bool = field(init=False, default=False)
    """A REMB arrived, or a loss update was made while the relay was known to be sending."""
    known: bool = field(init=False, default=False)
    """The start is what an earlier connection learned of this link (:meth:`start_known`), not a guess."""
    _sent_bps: float = field(init=False, default=0.0)
    _sent: deque[tuple[float, float]] = field(init=False, default_factory=deque)
    _padding: deque[tuple[float, float]] = field(init=False, default_factory=deque)  # (at, padding bps)
    _lossy_at: float | None = field(init=False, default=None)
    _remb_fell_at: float | None = field(init=False, default=None)
    _overloaded_at: float | None = field(init=False, default=None)
    _block: tuple[int, float] = field(init=False, default=(0, 0.0))  # (expected, lost) of the open block
    _pools: deque[tuple[float, int, float]] = field(init=False, default_factory=deque)  # (at, expected, lost)
    _blocks: deque[float] = field(init=False, default_factory=lambda: deque(maxlen=INHERENT_BLOCKS))

    def __post_init__(self) -> None:
        self.loss_based = float(self.start_bps)

    def start_known(self, bitrate: int) -> None:
        """Start from what an earlier connection found this link carries (``vIOP.media.link_memory``):
        the allocator trusts it from the first decision, where a guess waits for feedback."""
        self.start_bps = bitrate
        self.loss_based = float(bitrate)
        self.known = True

    def on_sent(self, bitrate: float, padding_bps: float = 0.0) -> None:
        """What the relay sends this subscriber now (media and retransmissions, with packet overhead), and
        how much of it is a probe's padding. The estimate grows only from what is sent apart from padding: a
        probe's verdict is the allocator's, and the padding meter's smoothed tail after a *failed* probe,
        counted as carried, let the estimate climb to 1.4x a 300 kbit/s link's rate (loss 0 on the audio
        and one low layer it did carry), and paused layers resumed into it "by budget" and failed again."""
        now = self.clock()
        bitrate = max(0.0, bitrate - padding_bps)
        self._sent_bps = bitrate
        for history, value in ((self._sent, bitrate), (self._padding, padding_bps)):
            history.append((now, value))
            while history and now - history[0][0] > SENT_MEMORY:
                history.popleft()

    def _least_sent(self) -> float:
        """A report describes the past: a stream resumed a moment ago must not count as carried."""
        return min((bps for _, bps in self._sent), default=self._sent_bps)

    # --- feedback ---------------------------------------------------------------------------------------

    def on_remb(self, bitrate: int, ssrcs: Iterable[int]) -> None:
        now = self.clock()
        key = frozenset(ssrcs)
        previous = self._remb.get(key)
        if previous is not None and bitrate < REMB_FALL * previous[0]:
            self._remb_fell_at = now
        self._remb[key] = (max(0, bitrate), now)
        self.last_feedback_at = now
        self.informed = True

    def on_report(self, ssrc: int, fraction_lost: int, highest_sequence: int) -> None:
        """One report block for a stream this subscriber receives (``fraction_lost`` in 1/256)."""
        now = self.clock()
        self.last_feedback_at = now
        stream = self._streams.setdefault(ssrc, _Stream())
        expected = 0 if stream.highest is None else highest_sequence - stream.highest
        if expected < -32768:  # aiortc reports the 16-bit sequence number, not the extended one: wrapped
            expected += 65536
        # A stream not reported for a while (paused video: Chrome stops reporting an SSRC 8 s after its
        # last packet) is reported again with the loss of its last packets before the pause, which a
        # full link dropped long ago (measured: 25-67 % "loss" in the first report of a video resumed on
        # a freed link). That report describes the past: it only sets where the next one counts from.
        stale = stream.at is not None and now - stream.at > self.feedback_timeout
        stream.highest, stream.at = highest_sequence, now
        if stale:
            return
        if expected <= 0:
            expected = 1  # first report of a stream, or a reordered one: counts once
        self._expected += expected
        self._lost += expected * min(max(fraction_lost, 0), 255) / 256
        if self._window_start is None:
            self._window_start = now
        if self.last_loss_at is None or now - self._window_start >= LOSS_UPDATE_INTERVAL:
            self._apply_loss(now)

    def _apply_loss(self, now: float) -> None:
        expected, lost = self._expected, self._lost
        loss = lost / expected if expected else 0.0
        self._expected, self._lost, self._window_start = 0, 0.0, now
        inherent = self.inherent_loss
        self.last_loss, self.last_loss_at = loss, now
        self.last_excess_loss = max(0.0, loss - inherent)
        if self._sent_bps > 0:
            self.informed = True
        # Evidence adds up: this pool alone, or the pools of the last CONGESTION_MEMORY together.
        pools = self._pools
        pools.append((now, expected, lost))
        while now - pools[0][0] >= CONGESTION_MEMORY:
            pools.popleft()
        recent_expected = sum(p[1] for p in pools)
        recent_lost = sum(p[2] for p in pools)
        overloaded = loss_lower_bound(lost, expected, _Z_OVERLOAD) > HIGH_LOSS
        evidence = overloaded or loss_lower_bound(recent_lost, recent_expected, _Z_OVERLOAD) > HIGH_LOSS
        lossy = overloaded or loss_lower_bound(lost, expected, _Z_LOSSY) - inherent >= LOW_LOSS
        if lossy or evidence:
            self._lossy_at = now
        if evidence:
            self._overloaded_at = now
        # The rate follows this pool (GCC): cut when it lost over 10 % on a link shown to be full, grow
        # when it was clean.
        if evidence and loss > HIGH_LOSS:
            # Cut from what was sent when the loss happened (the link carried less than that), a probe's
            # padding included: the loss a burst causes is the burst's, and cut from the media alone it took
            # a 500 kbit/s link carrying a 150 kbit/s layer to a ~140 kbit/s estimate, which paused that
            # layer (a flaky tests/media/test_simulcast.py run).
            sent = self._sent_bps + max((bps for _, bps in self._padding), default=0.0)
            base = min(self.loss_based, sent) if self._sent_bps > 0 else self.loss_based
            self.loss_based = max(MIN_BPS, base * (1 - 0.5 * loss))
        elif not lossy:
            self.loss_based = min(MAX_BPS, max(self.loss_based, self._least_sent() * INCREASE))
        if not overloaded:
            self._note_block(expected, lost)

    def _note_block(self, expected: int, lost: float) -> None:
        """Pools not overloaded, in blocks of :data:`INHERENT_BLOCK_PACKETS`, for :attr:`inherent_loss`."""
        block_expected, block_lost = self._block[0] + expected, self._block[1] + lost
        if block_expected >= INHERENT_BLOCK_PACKETS:
            self._blocks.append(block_lost / block_expected)
            block_expected, block_lost = 0, 0.0
        self._block = (block_expected, block_lost)

    @property
    def inherent_loss(self) -> float:
        """The loss this link shows whatever is sent: the lower quartile of the last blocks (so the few a
        probe or a short overload made lossy do not count), at most :data:`INHERENT_MAX`; 0 before the
        first block."""
        if not self._blocks:
            return 0.0
        ordered = sorted(self._blocks)
        return min(INHERENT_MAX, ordered[len(ordered) // 4])

    # --- reading ----------------------------------------------------------------------------------------

    def _remb_total(self, now: float) -> int | None:
        stale = [k for k, (_, at) in self._remb.items() if now - at > self.feedback_timeout]
        for key in stale:
            del self._remb[key]
        if not self._remb:
            return None
        return sum(value for value, _ in self._remb.values())

    @property
    def source(self) -> EstimateSource:
        if self._remb_total(self.clock()) is not None:
            return EstimateSource.REMB
        if self.last_loss_at is not None:
            return EstimateSource.LOSS
        return EstimateSource.DEFAULT

    @property
    def has_feedback(self) -> bool:
        """Feedback arrived within ``feedback_timeout``: without it, only the default applies."""
        at = self.last_feedback_at
        return at is not None and self.clock() - at <= self.feedback_timeout

    @property
    def bitrate(self) -> int:
        """The whole link (loss based); the start default while no report has arrived recently."""
        value = self.loss_based if self.has_feedback else min(self.loss_based, self.start_bps)
        return int(min(MAX_BPS, max(MIN_BPS, value)))

    @property
    def overloaded(self) -> bool:
        """Loss significantly above 10 % within :data:`CONGESTION_MEMORY` (where GCC cuts the rate): the link
        is full. Between 2 and 10 % a link is not clean, but a few lost or reordered packets are no reason to
        stop someone's video; nor is one small pool over 10 % by chance."""
        at = self._overloaded_at
        return at is not None and self.clock() - at <= CONGESTION_MEMORY

    @property
    def remb_limiting(self) -> bool:
        """A REMB fell within :data:`CONGESTION_MEMORY`: the receiver's delay-based estimator saw overuse.

        Otherwise a REMB only follows what the receiver gets (at most 1.5x it, in Chrome and aiortc): with
        video paused it is low because little arrives, and says nothing about the link.
        """
        at = self._remb_fell_at
        return at is not None and self.clock() - at <= CONGESTION_MEMORY

    @property
    def remb(self) -> int | None:
        """The latest REMB total (fresh sets only), None when the client sends none."""
        return self._remb_total(self.clock())

    @property
    def congested(self) -> bool:
        """A pooled report within :data:`CONGESTION_MEMORY` showed loss significantly above the link's inherent
        loss plus 2 % (one clean report between lossy ones does not make a full link clean)."""
        at = self._lossy_at
        return at is not None and self.clock() - at <= CONGESTION_MEMORY

    # --- the allocator's view ---------------------------------------------------------------------------

    def link_view(
        self, *, audio_bps: float, rtx_bps: float, grace_over: bool, sent_bps: float = 0.0
    ) -> LinkView:
        """What :class:`vIOP.media.budget.VideoAllocator` is told at one tick. ``grace_over``: the time a
        new subscriber's first feedback may take has passed (until the estimate has seen what is sent, it
        knows nothing about the link: no pausing before that)."""
        return LinkView(
            estimate_bps=self.bitrate,
            remb_bps=self.remb if self.remb_limiting else None,
            audio_bps=audio_bps,
            rtx_bps=rtx_bps,
            congested=self.congested,
            overloaded=self.overloaded,
            trusted=(self.has_feedback and self.informed) or grace_over or self.known,
            feedback=self.has_feedback,
            loss_at=self.last_loss_at,
            loss=self.last_excess_loss,
            sent_bps=sent_bps,
        )
