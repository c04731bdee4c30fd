"""Who holds the floor in one room: the dominant speaker, from the RFC 6464 levels publishers send.

Pure: levels and times in, decisions out; the clock is injected. The relay feeds every audio packet's level
(0 loudest ... 127 silence, -dBov) and gets back a :class:`SpeakerChange` when the floor moves.

How it decides (after LiveKit's windowed "active share" and Jitsi's rule that a challenger must beat the
current speaker clearly, not merely be loud once):

- A packet is *sound* when it is at least :data:`ACTIVE_LEVEL` loud and :data:`ABOVE_FLOOR` dB above that
  participant's own noise floor (the quietest recent level, drifting louder slowly), so a fan or a hum that
  never stops stops counting as speech within seconds.
- Time is cut into ticks of :data:`TICK` seconds. A participant's *share* is the fraction of their packets
  that were sound over the last :data:`WINDOW_TICKS` ticks; they are *speaking* at a share of at least
  :data:`SPEAKING_SHARE`.
- The floor goes to the speaking participant with the highest share when nobody holds it, or when that
  share beats the current speaker's by :data:`MARGIN` and the current speaker has held the floor for at least
  :data:`MIN_HOLD` seconds (the hysteresis: crosstalk and short interjections do not move it, and the room
  hears about at most one change per ``MIN_HOLD``).
- Silence changes nothing: with nobody speaking, the last speaker keeps the floor.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from vIOP.media.rtp import LEVEL_MASK

ACTIVE_LEVEL: Final = 40  # -40 dBov or louder (LiveKit's default threshold is -35 dBov)
ABOVE_FLOOR: Final = 10  # dB above the participant's own noise floor
FLOOR_RISE: Final = 5.0  # dB per second the noise floor drifts toward louder levels (from silence)
TICK: Final = 0.1
WINDOW_TICKS: Final = 4  # the share is measured over the last 0.4 s
SPEAKING_SHARE: Final = 0.4
MARGIN: Final = 0.3
MIN_HOLD: Final = 0.5
RECENT: Final = 4  # how many recent speakers a change names (the web client shows their video first)

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True, slots=True)
class SpeakerChange(Generic[Key]):
    """The floor moved: who has it now (None only when the speaker left) and the recent speakers, newest
    first, the current one included."""

    speaker: Key | None
    recent: tuple[Key, ...]


def video_rank(floor: SpeakerChange[Key] | None, publisher: Key) -> float:
    """How much ``publisher``'s video is worth keeping to a listener of this room: the speaker first, then
    the recent speakers newest first, then everyone else (0)."""
    if floor is None:
        return 0.0
    if publisher == floor.speaker:
        return float(len(floor.recent) + 1)
    recent = floor.recent
    return float(len(recent) - recent.index(publisher)) if publisher in recent else 0.0


@dataclass(slots=True)
class _Voice:
    floor: float
    floor_at: float
    sound: int = 0
    packets: int = 0
    shares: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW_TICKS))

    def share(self) -> float:
        return sum(self.shares) / WINDOW_TICKS


class DominantSpeaker(Generic[Key]):
    """One room's floor. :meth:`observe` per audio packet; :meth:`remove` when a publisher leaves."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._voices: dict[Key, _Voice] = {}
        self._tick_end: float | None = None
        self._speaker: Key | None = None
        self._since = 0.0
        self._recent: list[Key] = []

    @property
    def speaker(self) -> Key | None:
        return self._speaker

    @property
    def recent(self) -> tuple[Key, ...]:
        return tuple(self._recent)

    def observe(self, who: Key, level: int) -> SpeakerChange[Key] | None:
        """One audio packet of ``who`` at ``level`` (an RFC 6464 byte; the voice-activity bit is ignored,
        aiortc never sets it). Returns the change this packet's tick decided, if any."""
        now = self._clock()
        change = self._advance(now)
        level &= LEVEL_MASK
        voice = self._voices.get(who)
        if voice is None:
            voice = self._voices[who] = _Voice(floor=float(LEVEL_MASK), floor_at=now)
        # The floor (a level number: higher is quieter) follows quieter levels at once, louder ones slowly.
        voice.floor = max(float(level), voice.floor - FLOOR_RISE * (now - voice.floor_at))
        voice.floor_at = now
        voice.packets += 1
        if level <= ACTIVE_LEVEL and level <= voice.floor - ABOVE_FLOOR:
            voice.sound += 1
        return change

    def remove(self, who: Key) -> SpeakerChange[Key] | None:
        """``who`` stopped publishing (left, or their audio is no longer forwarded)."""
        if self._voices.pop(who, None) is None and who not in self._recent:
            return None
        was_recent = who in self._recent
        if was_recent:
            self._recent.remove(who)
        if who == self._speaker:
            self._speaker = None
            return SpeakerChange(None, tuple(self._recent))
        return SpeakerChange(self._speaker, tuple(self._recent)) if was_recent else None

    def _advance(self, now: float) -> SpeakerChange[Key] | None:
        if self._tick_end is None:
            self._tick_end = now + TICK
            return None
        if now < self._tick_end:
            return None
        ticks = min(int((now - self._tick_end) / TICK) + 1, WINDOW_TICKS)
        self._tick_end += TICK * (int((now - self._tick_end) / TICK) + 1)
        for voice in self._voices.values():
            voice.shares.append(voice.sound / voice.packets if voice.packets else 0.0)
            voice.shares.extend([0.0] * (ticks - 1))  # ticks in which nobody sent anything
            voice.sound = voice.packets = 0
        return self._decide(now)

    def _decide(self, now: float) -> SpeakerChange[Key] | None:
        shares = {who: voice.share() for who, voice in self._voices.items()}
        best = max(shares, key=shares.__getitem__, default=None)
        if best is None or best == self._speaker or shares[best] < SPEAKING_SHARE:
            return None  # silence, or the speaker still leads: nothing moves
        if self._speaker is not None:
            held = now - self._since
            if held < MIN_HOLD or shares[best] < shares.get(self._speaker, 0.0) + MARGIN:
                return None
        self._speaker, self._since = best, now
        if best in self._recent:
            self._recent.remove(best)
        self._recent.insert(0, best)
        del self._recent[RECENT:]
        return SpeakerChange(best, tuple(self._recent))
