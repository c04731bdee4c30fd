"""Dominant-speaker detection on a fake clock: who gets the floor, how fast, and that silence never moves it."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from vIOP.media.speaker import MIN_HOLD, RECENT, DominantSpeaker, SpeakerChange, video_rank
from vIOP.signaling.messages import MAX_RECENT_SPEAKERS

PACKET = 0.02  # 20 ms Opus frames, as browsers and aiortc send them
LOUD, QUIET, SILENT = 20, 70, 127  # -20 dBov speech, -70 dBov room noise, digital silence


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def play(
    detector: DominantSpeaker[str], clock: Clock, levels: Mapping[str, int], seconds: float
) -> list[tuple[float, SpeakerChange[str]]]:
    """Everyone sends one packet per 20 ms at their level for ``seconds``; the changes and when they came."""
    changes = []
    for _ in range(round(seconds / PACKET)):
        clock.now += PACKET
        for who, level in levels.items():
            change = detector.observe(who, level)
            if change is not None:
                changes.append((clock.now, change))
    return changes


def room() -> tuple[DominantSpeaker[str], Clock]:
    clock = Clock()
    return DominantSpeaker(clock), clock


def test_the_first_speaker_gets_the_floor_within_half_a_second() -> None:
    detector, clock = room()
    assert (
        play(detector, clock, {"a": QUIET, "b": QUIET, "c": QUIET}, 2.0) == []
    )  # nobody speaks: nobody named
    start = clock.now
    changes = play(detector, clock, {"a": QUIET, "b": LOUD, "c": QUIET}, 2.0)
    assert [c.speaker for _, c in changes] == ["b"]
    assert changes[0][0] - start <= 0.5
    assert changes[0][1] == SpeakerChange("b", ("b",))


def test_each_change_of_speaker_is_named_within_a_second_and_once() -> None:
    detector, clock = room()
    people = ["a", "b", "c", "d"]
    for turn in ["a", "b", "c", "d", "a", "c"]:
        start = clock.now
        changes = play(detector, clock, {p: LOUD if p == turn else SILENT for p in people}, 2.5)
        assert [c.speaker for _, c in changes] == [turn]
        assert changes[0][0] - start <= 1.0
    assert detector.recent == ("c", "a", "d", "b")[:RECENT]


def test_silence_and_room_noise_never_move_the_floor() -> None:
    detector, clock = room()
    play(detector, clock, {"a": LOUD, "b": SILENT, "c": QUIET}, 2.0)
    assert detector.speaker == "a"
    assert play(detector, clock, {"a": SILENT, "b": SILENT, "c": QUIET}, 30.0) == []
    assert play(detector, clock, {"a": QUIET, "b": QUIET, "c": QUIET}, 30.0) == []
    assert detector.speaker == "a"


def test_a_short_interjection_during_a_pause_does_not_take_the_floor() -> None:
    detector, clock = room()
    play(detector, clock, {"a": LOUD, "b": SILENT}, 3.0)
    for _ in range(10):  # "mm-hmm" (0.16 s) while the speaker pauses for 0.3 s, then talks on
        play(detector, clock, {"a": SILENT, "b": SILENT}, 0.14)
        assert play(detector, clock, {"a": SILENT, "b": LOUD}, 0.16) == []
        assert play(detector, clock, {"a": LOUD, "b": SILENT}, 1.0) == []
    assert detector.speaker == "a"


def test_crosstalk_moves_the_floor_at_most_once_per_hold() -> None:
    detector, clock = room()
    turns = [("a", "b"), ("b", "a")] * 20
    changes = []
    for loud, soft in turns:  # two people talking over each other, leading in turn every 0.3 s
        changes += play(detector, clock, {loud: LOUD, soft: SILENT}, 0.3)
    times = [at for at, _ in changes]
    assert times  # the floor does move between them...
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= MIN_HOLD >= 0.5 for gap in gaps)  # ...but the room hears at most two changes a second


def test_steady_noise_stops_counting_as_speech() -> None:
    """A fan at -35 dBov on someone's microphone never stops: their noise floor learns it."""
    detector, clock = room()
    play(detector, clock, {"fan": 35, "b": SILENT}, 30.0)
    start = clock.now
    changes = play(detector, clock, {"fan": 35, "b": LOUD}, 2.0)
    assert detector.speaker == "b" and changes and changes[0][0] - start <= 1.0
    assert play(detector, clock, {"fan": 35, "b": SILENT}, 30.0) == []


def test_a_leaving_speaker_clears_the_floor_and_the_recent_list() -> None:
    detector, clock = room()
    play(detector, clock, {"a": LOUD, "b": SILENT}, 2.0)
    play(detector, clock, {"a": SILENT, "b": LOUD}, 2.0)
    assert (detector.speaker, detector.recent) == ("b", ("b", "a"))
    assert detector.remove("a") == SpeakerChange("b", ("b",))
    assert detector.remove("b") == SpeakerChange(None, ())
    assert detector.remove("b") is None
    assert detector.remove("nobody") is None
    changes = play(detector, clock, {"c": LOUD}, 1.0)
    assert [c.speaker for _, c in changes] == ["c"]


def test_gaps_in_a_publishers_packets_count_as_silence() -> None:
    detector, clock = room()
    play(detector, clock, {"a": LOUD}, 2.0)
    clock.now += 5.0  # a's packets stop (network); b starts
    changes = play(detector, clock, {"b": LOUD}, 1.0)
    assert [c.speaker for _, c in changes] == ["b"]


def test_the_recent_list_fits_the_wire() -> None:
    assert RECENT <= MAX_RECENT_SPEAKERS


def test_video_rank_keeps_the_speaker_then_recent_speakers_newest_first() -> None:
    """A congested listener keeps the video of whom they are listening to (the budget's priority)."""
    floor = SpeakerChange(speaker="b", recent=("b", "a", "c"))
    ranked = sorted("abcde", key=lambda who: -video_rank(floor, who))
    assert ranked[:3] == ["b", "a", "c"]
    assert video_rank(floor, "d") == video_rank(floor, "e") == 0.0  # never spoke: join order decides
    assert video_rank(None, "a") == 0.0  # nobody has spoken yet
    left = SpeakerChange(speaker=None, recent=("a",))  # the speaker left: recent speakers still count
    assert video_rank(left, "a") > video_rank(left, "b")
