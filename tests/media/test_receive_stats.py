"""The client's receive report: frames, freezes, missing audio, gaps, RTX repairs (a fake clock)."""

from __future__ import annotations

import pytest

from vIOP.client.receive_stats import ReceiveStats, SequenceTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_frame_rate_and_freezes_including_a_stream_that_stops() -> None:
    clock = Clock()
    stats = ReceiveStats(clock)
    for _ in range(20):  # 2 s at 10 fps
        clock.now += 0.1
        stats.frame("pt_a", "video")
    clock.now += 0.7  # a freeze
    stats.frame("pt_a", "video")
    clock.now += 0.3
    report = stats.report()[("pt_a", "video")]
    assert report.frames == 21 and report.frame_rate == pytest.approx(21 / 3.0)
    assert report.freezes == 1 and report.longest_freeze == pytest.approx(0.7)
    assert report.frozen_seconds == pytest.approx(0.7)
    clock.now += 2.0  # nothing more arrives: the trailing silence is a freeze too
    report = stats.report()[("pt_a", "video")]
    assert report.freezes == 2 and report.frozen_seconds == pytest.approx(3.0)


def test_audio_missing_is_counted_end_to_end_by_timestamp() -> None:
    """The relay renumbers each leg: a frame lost upstream leaves no sequence gap, only a timestamp gap."""
    clock = Clock()
    stats = ReceiveStats(clock)
    sequence = 0
    for frame in range(50):
        clock.now += 0.02
        if frame % 5 != 2:  # 20 % never reached the relay
            stats.packet("pt_a", "audio", 7, sequence, (1 << 32) - 4800 + frame * 960, 80, None)
            sequence += 1
    clock.now += 0.1
    report = stats.report()[("pt_a", "audio")]
    assert report.packets_missing == 0  # nothing lost on the last hop
    assert report.missing_percent == pytest.approx(20.0)  # across a timestamp wrap


def test_audio_missing_percent_and_gaps() -> None:
    clock = Clock()
    stats = ReceiveStats(clock)
    for sequence in range(100):
        clock.now += 0.02 if sequence != 50 else 0.25  # one 250 ms hole in arrivals
        if sequence % 10 != 3:  # 10 % lost
            stats.packet("pt_a", "audio", 7, sequence, sequence * 960, 80, None)
    clock.now += 1.5  # every loss has settled; the stream stopping is one more gap
    report = stats.report()[("pt_a", "audio")]
    assert report.packets == 90 and report.packets_missing == 10
    assert report.missing_percent == pytest.approx(10.0)
    assert report.audio_gaps == 2 and report.recovered_by_rtx == 0


def test_rtx_repairs_count_once_with_their_delay_and_recent_losses_are_not_yet_missing() -> None:
    clock = Clock()
    stats = ReceiveStats(clock)
    for sequence in (10, 11, 13, 14, 16):
        clock.now += 0.01
        stats.packet("pt_a", "video", 5, sequence, 0, 1000, None)
    clock.now += 0.05
    stats.packet("pt_a", "video", 6, 900, 0, 1000, repairs=12)  # RTX stream, own sequence numbers
    stats.packet("pt_a", "video", 6, 901, 0, 1000, repairs=12)  # a duplicate repair: useless
    report = stats.report()[("pt_a", "video")]
    assert report.recovered_by_rtx == 1 and report.useless_rtx == 1
    assert report.recovery_median_ms == pytest.approx(70.0)  # seen missing when 13 came
    assert report.packets_missing == 0  # 15 went missing 50 ms ago: it may still come
    clock.now += 1.0
    report = stats.report()[("pt_a", "video")]
    assert report.packets_missing == 1 and report.lost_video_recovered_percent == pytest.approx(50.0)


def test_sequence_numbers_wrap_and_a_restarted_stream_is_not_a_loss() -> None:
    tracker = SequenceTracker()
    for sequence in (65534, 65535, 1, 2):
        tracker.media(sequence, 0.0)
    assert list(tracker.missing) == [65536] and tracker.expected == 5
    tracker.media(0, 0.1)  # late, not lost
    assert not tracker.missing and tracker.received == 5
    tracker.media(40_000, 0.2)
    assert not tracker.missing


def test_restart_forgets_the_warm_up() -> None:
    clock = Clock()
    stats = ReceiveStats(clock)
    stats.frame("pt_a", "video")
    clock.now += 5
    stats.restart()
    assert stats.report() == {}
