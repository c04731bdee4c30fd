"""NACKs as a browser sends them, for ``vIOP.client``'s video receivers (tests and benchmarks see browser load).

aiortc's own ``NackGenerator`` NACKs when a new gap appears, and then lists every packet still missing
(up to 128 behind): a packet whose retransmission was lost is asked for again only when some other packet
goes missing, and on a congested link each new gap re-requests the whole backlog at once. libwebrtc's
``NackRequester`` (Chrome, Safari, Firefox's WebRTC stack) asks for a packet as soon as the gap is seen, then
again at most once per round-trip time, up to 10 times, and forgets packets too old to help.
:class:`PacedNacks` does the same, with a fixed retry interval standing in for the round-trip time (a
browser starts from 100 ms before it has measured one).

It speaks aiortc's ``NackGenerator`` protocol (``add(packet) -> bool``, then ``missing`` is what to NACK
now); ``vIOP.media.aiortc_internals.replace_nack_generator`` installs it. Pure: times come from ``clock``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

RETRY_SECONDS: Final = 0.1
"""libwebrtc's round-trip time before it has measured one."""
MAX_RETRIES: Final = 10
"""libwebrtc's ``kMaxNackRetries``."""
MAX_AGE_SECONDS: Final = 1.0
"""A packet missing longer than this no longer helps a real-time decoder (a browser asks for a keyframe)."""
_MAX_GAP: Final = 1_000
"""A jump of more sequence numbers than this is a new stream, not a loss."""


class HasSequenceNumber(Protocol):
    @property
    def sequence_number(self) -> int: ...


@dataclass(slots=True)
class _Missing:
    seen_at: float
    sent_at: float | None = None
    retries: int = 0


def _newer(a: int, b: int) -> bool:
    """RFC 1982 serial-number order on 16 bits: ``a`` comes after ``b``."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


class PacedNacks:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        retry_seconds: float = RETRY_SECONDS,
        max_retries: int = MAX_RETRIES,
        max_age_seconds: float = MAX_AGE_SECONDS,
    ) -> None:
        self.clock = clock
        self.retry_seconds = retry_seconds
        self.max_retries = max_retries
        self.max_age_seconds = max_age_seconds
        self.max_seq: int | None = None
        self.pending: dict[int, _Missing] = {}
        self.missing: set[int] = set()
        """The sequence numbers to NACK now (read by aiortc right after :meth:`add` returns True)."""
        self.nacked = 0  # sequence numbers sent in NACKs, retries included

    def add(self, packet: HasSequenceNumber) -> bool:
        """A packet arrived (RTX already unwrapped); True when some packets are due for a NACK now."""
        now = self.clock()
        sequence = packet.sequence_number
        if self.max_seq is None:
            self.max_seq = sequence
        elif _newer(sequence, self.max_seq):
            gap = (sequence - self.max_seq - 1) & 0xFFFF
            if gap > _MAX_GAP:
                self.pending.clear()
            else:
                for n in range(1, gap + 1):
                    self.pending[(self.max_seq + n) & 0xFFFF] = _Missing(now)
            self.max_seq = sequence
        else:
            self.pending.pop(sequence, None)
        self.missing = self._due(now)
        return bool(self.missing)

    def _due(self, now: float) -> set[int]:
        due = set()
        expired = []
        for sequence, entry in self.pending.items():
            if now - entry.seen_at > self.max_age_seconds:
                expired.append(sequence)
            elif entry.sent_at is None or now - entry.sent_at >= self.retry_seconds:
                entry.sent_at = now
                entry.retries += 1
                due.add(sequence)
                if entry.retries >= self.max_retries:
                    expired.append(sequence)  # asked for the last time
        for sequence in expired:
            del self.pending[sequence]
        self.nacked += len(due)
        return due
