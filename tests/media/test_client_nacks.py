"""The client's browser-like NACKs: at once for a new gap, again once per retry interval, then never."""

from __future__ import annotations

from dataclasses import dataclass

from vIOP.client.nacks import PacedNacks


@dataclass
class Packet:
    sequence_number: int


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_gap_is_nacked_at_once_and_again_only_after_the_retry_interval() -> None:
    clock = Clock()
    nacks = PacedNacks(clock, retry_seconds=0.125, max_retries=3)  # binary-exact times
    assert not nacks.add(Packet(100))
    assert nacks.add(Packet(103)) and nacks.missing == {101, 102}
    clock.now = 0.0625
    assert not nacks.add(Packet(104))  # aiortc would re-NACK both with the next gap; a browser waits
    assert nacks.add(Packet(106)) and nacks.missing == {105}  # a new gap is asked for at once, alone
    clock.now = 0.125
    assert nacks.add(Packet(107)) and nacks.missing == {101, 102}  # the retry, once per interval
    assert not nacks.add(Packet(102))  # a retransmission arrived
    clock.now = 0.25
    assert nacks.add(Packet(108)) and nacks.missing == {101, 105}  # 101 for the third and last time
    clock.now = 0.375
    assert nacks.add(Packet(109)) and nacks.missing == {105}
    clock.now = 0.5
    assert not nacks.add(Packet(110)) and not nacks.pending
    assert nacks.nacked == 2 + 1 + 2 + 2 + 1


def test_packets_too_old_to_help_are_forgotten_and_sequence_numbers_wrap() -> None:
    clock = Clock()
    nacks = PacedNacks(clock, retry_seconds=0.1, max_age_seconds=1.0)
    nacks.add(Packet(65534))
    assert nacks.add(Packet(1)) and nacks.missing == {65535, 0}
    clock.now = 1.5
    assert not nacks.add(Packet(2)) and not nacks.pending
    assert not nacks.add(Packet(30_000))  # a jump this large is a new stream, not 29,997 losses
    assert not nacks.pending
