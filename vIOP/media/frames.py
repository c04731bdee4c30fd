"""Encoded frames: what the relay receives from a publisher and forwards unchanged (no decode, no re-encode).

An :class:`EncodedFrame` is what a receiver's jitter buffer reassembles and what a sender's codec ``pack()``
reads (``bytes(x)``, ``x.pts``, ``x.time_base``). Pure: no aiortc.
"""

from __future__ import annotations

import fractions
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# The only codecs the relay carries (nothing is transcoded), as aiortc spells their MIME types.
VIDEO_CODEC: Final = "video/VP8"
AUDIO_CODEC: Final = "audio/opus"
RTX_CODEC: Final = "video/rtx"


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One complete encoded frame as the sender's ``pack()`` reads it (``bytes()``, ``pts``, ``time_base``)."""

    data: bytes
    pts: int
    time_base: fractions.Fraction
    keyframe: bool
    audio_level: int | None = None  # the publisher's RFC 6464 byte for this audio frame, when it sent one

    def __bytes__(self) -> bytes:
        return self.data

    def with_pts(self, pts: int) -> EncodedFrame:
        return EncodedFrame(self.data, pts, self.time_base, self.keyframe, self.audio_level)


FrameSink = Callable[[EncodedFrame], None]


def is_vp8_keyframe(data: bytes) -> bool:
    """RFC 6386 section 9.1: bit 0 of the frame tag is 0 for a key frame."""
    return bool(data) and not data[0] & 0x01


_TIME_BASES: dict[int, fractions.Fraction] = {}


def time_base(clock_rate: int) -> fractions.Fraction:
    """``1/clock_rate``, one shared object per rate (a frame is built per received frame: no new Fraction)."""
    base = _TIME_BASES.get(clock_rate)
    if base is None:
        base = _TIME_BASES[clock_rate] = fractions.Fraction(1, clock_rate)
    return base
