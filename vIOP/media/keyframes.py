"""Rate limiting of keyframe requests sent upstream to one publisher.

A keyframe costs the publisher several times a delta frame's bits, and every subscriber of a source may ask
at once (a join, a loss burst), so requests for one source are limited to one per ``interval``. A request
that arrives inside the window is not lost: one trailing request goes out when the window ends, so the
last asker is still served within ``interval``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_KEYFRAME_INTERVAL: Final = 0.5


@dataclass(frozen=True, slots=True)
class KeyframeDecision:
    send_now: bool
    send_at: float | None  # schedule one trailing request at this time (None: nothing to schedule)


class KeyframeGate:
    """Pure decision logic; the caller owns the clock and the timer."""

    __slots__ = ("_interval", "_last_sent", "_trailing_at")

    def __init__(self, interval: float = DEFAULT_KEYFRAME_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._interval = interval
        self._last_sent: float | None = None
        self._trailing_at: float | None = None

    def request(self, now: float) -> KeyframeDecision:
        """A subscriber wants a keyframe at ``now``."""
        if self._last_sent is None or now - self._last_sent >= self._interval:
            self._last_sent = now
            self._trailing_at = None  # this send serves whoever the pending one was for
            return KeyframeDecision(send_now=True, send_at=None)
        if self._trailing_at is not None:
            return KeyframeDecision(send_now=False, send_at=None)  # already scheduled: coalesce
        self._trailing_at = self._last_sent + self._interval
        return KeyframeDecision(send_now=False, send_at=self._trailing_at)

    def fire_trailing(self, now: float) -> bool:
        """The timer from a ``send_at`` decision went off; True means send now."""
        if self._trailing_at is None:
            return False
        self._trailing_at = None
        self._last_sent = now
        return True
