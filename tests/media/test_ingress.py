"""The publisher hop's receive path (``vIOP.media.ingress``), pure: byte fixtures in, frames and NACKs out.

Packets are the ones aiortc's own sender wrote (``fixtures/aiortc_rtp.json``), or made by ``RtpWriter``
(checked byte for byte against those in ``test_rtp.py``) from the fixture's frames; time is a number the
test moves, never a sleep.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vIOP.media.frames import EncodedFrame
from vIOP.media.ingress import AudioIngress, NackPolicy, NackScheduler, Vp8Assembler, vp8_frame_start
from vIOP.media.rtp import RtpWriter, parse_rtp, parse_rtx_payload, parse_vp8_payload

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "aiortc_rtp.json").read_text())
STREAMS = {s["kind"]: s for s in FIXTURE["streams"]}
VIDEO = STREAMS["video"]
KEYFRAME = bytes.fromhex(VIDEO["frames"][0]["data"])  # 2 packets
DELTA = bytes.fromhex(VIDEO["frames"][1]["data"])  # 1 packet
BIG_DELTA = DELTA * 8  # 3 packets
RTT = 0.05
POLICY = NackPolicy()


@dataclass(frozen=True, slots=True)
class Packet:
    sequence_number: int
    timestamp: int
    marker: bool
    start: bool
    data: bytes


def parsed(raw: bytes) -> Packet:
    rtp = parse_rtp(raw)
    return Packet(
        rtp.sequence_number,
        rtp.timestamp,
        rtp.marker,
        vp8_frame_start(rtp.payload),
        parse_vp8_payload(rtp.payload).data,
    )


def stream(frames: list[bytes], *, sequence: int = 1000, timestamp: int = 5000) -> list[list[Packet]]:
    """Each frame's packets as aiortc's packetizer writes them (RtpWriter), 33 ms (3000 ticks) apart."""
    writer = RtpWriter(
        video=True,
        ssrc=1,
        rtx_ssrc=2,
        sequence=sequence,
        rtx_sequence=0,
        timestamp_origin=timestamp,
        picture_id=7,
    )
    writer.configure(payload_type=96, rtx_payload_type=97, mid=None, mid_id=None, abs_send_time_id=None)
    return [[parsed(raw) for raw in writer.frame(data, 3000 * n, 0)[0]] for n, data in enumerate(frames)]


@dataclass
class Recorder:
    rtt: float | None = RTT
    frames: list[EncodedFrame] = field(default_factory=list)
    nacks: list[list[int]] = field(default_factory=list)
    keyframe_requests: int = 0

    def assembler(self, policy: NackPolicy = POLICY) -> Vp8Assembler:
        return Vp8Assembler(self.frames.append, self.nacks.append, self.request, lambda: self.rtt, policy)

    def request(self) -> None:
        self.keyframe_requests += 1


def feed(assembler: Vp8Assembler, packets: list[Packet], now: float) -> None:
    for p in packets:
        assembler.add(p.sequence_number, p.timestamp, p.marker, p.start, p.data, now)


# --- fixtures from aiortc ----------------------------------------------------------------------------------


def test_aiortc_packets_reassemble_into_the_frames_aiortc_sent() -> None:
    recorder = Recorder()
    assembler = recorder.assembler()
    for frame in VIDEO["frames"]:
        feed(assembler, [parsed(bytes.fromhex(p)) for p in frame["packets"]], 0.0)
    assert [f.data for f in recorder.frames] == [bytes.fromhex(f["data"]) for f in VIDEO["frames"]]
    assert [f.pts for f in recorder.frames] == [f["pts"] for f in VIDEO["frames"]]  # 0, 6000, 12000
    assert [f.keyframe for f in recorder.frames] == [True, False, False]
    assert recorder.nacks == [] and recorder.keyframe_requests == 0


def test_a_lost_packet_is_nacked_and_its_rtx_completes_the_frame() -> None:
    recorder = Recorder()
    assembler = recorder.assembler()
    packets = [parsed(bytes.fromhex(p)) for f in VIDEO["frames"] for p in f["packets"]]
    lost = packets[0]  # the keyframe's first packet: aiortc's capture retransmitted exactly this one
    feed(assembler, packets[:1], 0.0)  # ... establish the stream, then lose the second one instead
    feed(assembler, packets[2:], 0.01)
    assert recorder.nacks == [[packets[1].sequence_number]]
    assert recorder.frames == []  # everything waits behind the keyframe's missing tail
    rtx = parse_rtp(bytes.fromhex(VIDEO["retransmissions"][0]["packet"]))
    original, payload = parse_rtx_payload(rtx.payload)
    assert original == lost.sequence_number == VIDEO["retransmissions"][0]["sequence_number"]
    assert parse_vp8_payload(payload).data == lost.data  # RTX carries the original payload
    feed(assembler, packets[1:2], 0.02)
    assert [f.data for f in recorder.frames] == [bytes.fromhex(f["data"]) for f in VIDEO["frames"]]


# --- NACK pacing and bounded waits (injected clock) ----------------------------------------------------------


def test_a_lost_retransmission_is_nacked_again_every_round_trip_until_it_arrives() -> None:
    recorder = Recorder(rtt=RTT)
    assembler = recorder.assembler()
    frames = stream([KEYFRAME, BIG_DELTA, DELTA, DELTA])
    feed(assembler, frames[0], 0.0)
    missing = frames[1][1]
    feed(assembler, [frames[1][0], frames[1][2], *frames[2], *frames[3]], 0.1)
    assert recorder.nacks == [[missing.sequence_number]]
    interval = POLICY.retry_interval(RTT)  # 1.5 RTT
    assert interval == pytest.approx(0.075)
    assert assembler.next_wakeup() == pytest.approx(0.1 + interval)
    assembler.tick(0.1 + interval - 0.001)
    assert len(recorder.nacks) == 1  # not before a round trip has passed
    assembler.tick(0.1 + interval + 1e-9)  # the retransmission was lost too: ask again
    assembler.tick(0.1 + 2 * interval + 2e-9)
    assert recorder.nacks == [[missing.sequence_number]] * 3
    assert len(recorder.frames) == 1  # the keyframe; the rest waits (no skipping while it may come)
    feed(assembler, [missing], 0.1 + 2 * interval + 0.01)
    assert [f.data for f in recorder.frames] == [KEYFRAME, BIG_DELTA, DELTA, DELTA]
    assert [f.pts for f in recorder.frames] == [0, 3000, 6000, 9000]
    assert assembler.next_wakeup() is None  # nothing pending: no timer
    assert recorder.keyframe_requests == 0 and assembler.gave_up == 0


def test_a_packet_that_never_comes_ends_the_wait_at_the_bound_then_decoding_restarts_at_a_keyframe() -> None:
    recorder = Recorder(rtt=RTT)
    assembler = recorder.assembler()
    frames = stream([KEYFRAME, BIG_DELTA, DELTA, DELTA, KEYFRAME, DELTA])
    feed(assembler, frames[0], 0.0)
    feed(assembler, [frames[1][0], frames[1][2], *frames[2], *frames[3]], 0.1)
    bound = POLICY.wait(RTT)  # 4 RTT + 100 ms, at least 250 ms
    assert bound == pytest.approx(0.3)
    assembler.tick(0.1 + bound - 0.001)
    assert len(recorder.frames) == 1 and recorder.keyframe_requests == 0
    assert assembler.next_wakeup() is not None and assembler.next_wakeup() <= 0.1 + bound  # type: ignore[operator]
    assembler.tick(0.1 + bound)
    assert recorder.keyframe_requests == 1 and assembler.gave_up == 1
    assert len(recorder.frames) == 1  # the deltas behind the loss cannot be decoded: dropped
    feed(assembler, frames[4] + frames[5], 0.5)
    assert [f.data for f in recorder.frames] == [KEYFRAME, KEYFRAME, DELTA]
    assert recorder.frames[1].keyframe and recorder.frames[1].pts == 4 * 3000
    late = frames[1][1]
    feed(assembler, [late], 0.6)  # too late now: dropped, not forwarded out of order
    assert len(recorder.frames) == 3 and assembler.late == 1


def test_a_complete_keyframe_behind_a_loss_ends_the_wait_at_once() -> None:
    recorder = Recorder()
    assembler = recorder.assembler()
    frames = stream([KEYFRAME, DELTA, DELTA, KEYFRAME, DELTA])
    feed(assembler, frames[0], 0.0)
    feed(assembler, frames[2] + frames[3] + frames[4], 0.05)  # frame 1 lost entirely
    assert [f.data for f in recorder.frames] == [KEYFRAME, KEYFRAME, DELTA]
    assert recorder.keyframe_requests == 0  # the publisher already sent one
    assert assembler.next_wakeup() is None


def test_nacks_stop_after_max_tries_and_the_rtt_paces_them() -> None:
    scheduler = NackScheduler(NackPolicy(max_tries=3, min_retry=0.02))
    assert scheduler.lost(10, 12, 0.0) == [10, 11]
    assert scheduler.due(0.149, None) == []  # unknown RTT: the default (100 ms) x 1.5
    assert scheduler.due(0.151, None) == [10, 11]
    scheduler.arrived(10)
    assert scheduler.due(0.151 + 0.021, 0.001) == [11]  # a 1 ms RTT: never more often than min_retry
    assert scheduler.due(1.0, 0.001) == []  # three tries each
    assert scheduler.sent == 5
    scheduler.forget_before(12)
    assert len(scheduler) == 0 and scheduler.next_due(None) is None


def test_the_wait_bound_follows_the_rtt_within_limits() -> None:
    assert POLICY.wait(0.001) == POLICY.min_wait
    assert POLICY.wait(None) == pytest.approx(4 * POLICY.default_rtt + POLICY.wait_margin)
    assert POLICY.wait(0.15) == pytest.approx(0.7)
    assert POLICY.wait(2.0) == POLICY.max_wait


def test_sequence_numbers_and_timestamps_wrap_without_a_gap() -> None:
    recorder = Recorder()
    assembler = recorder.assembler()
    frames = stream([KEYFRAME, BIG_DELTA, DELTA, DELTA], sequence=65533, timestamp=0xFFFFFFFF - 4000)
    for frame in frames:
        feed(assembler, frame, 0.0)
    assert [f.pts for f in recorder.frames] == [0, 3000, 6000, 9000]
    assert recorder.nacks == [] and assembler.late == 0


def test_duplicates_are_dropped_and_a_restarted_stream_waits_for_a_keyframe() -> None:
    recorder = Recorder()
    assembler = recorder.assembler()
    frames = stream([KEYFRAME, DELTA])
    feed(assembler, frames[0] + frames[0] + frames[1], 0.0)
    assert len(recorder.frames) == 2 and assembler.late == 2
    restarted = stream([DELTA, KEYFRAME, DELTA], sequence=30000, timestamp=123)
    for frame in restarted:
        feed(assembler, frame, 0.1)
    assert [f.data for f in recorder.frames] == [KEYFRAME, DELTA, KEYFRAME, DELTA]
    assert recorder.keyframe_requests == 1 and recorder.nacks == []
    assert recorder.frames[2].pts > recorder.frames[1].pts  # time keeps going forward


# --- audio ---------------------------------------------------------------------------------------------------


def test_audio_goes_out_packet_by_packet_with_its_gaps() -> None:
    frames: list[EncodedFrame] = []
    ingress = AudioIngress(frames.append)
    audio = [parse_rtp(bytes.fromhex(p)) for f in STREAMS["audio"]["frames"] for p in f["packets"]]
    first, second, third = audio
    ingress.add(first.sequence_number, first.timestamp, first.payload)
    assert len(frames) == 1  # at once: nothing is held back
    ingress.add(third.sequence_number, third.timestamp, third.payload)  # the second one was lost
    assert [f.data for f in frames] == [first.payload, third.payload]
    assert frames[1].pts == third.timestamp - first.timestamp == 2 * 960  # the gap stays a gap
    ingress.add(second.sequence_number, second.timestamp, second.payload)  # late: would go back in time
    ingress.add(third.sequence_number, third.timestamp, third.payload)  # duplicate
    ingress.add(third.sequence_number + 1, third.timestamp + 960, b"")  # empty: not an Opus frame
    assert len(frames) == 2 and ingress.dropped == 3 and ingress.forwarded == 2
    assert all(f.keyframe for f in frames)


def test_audio_wraps_and_survives_a_restarted_stream() -> None:
    frames: list[EncodedFrame] = []
    ingress = AudioIngress(frames.append)
    for i in range(4):
        ingress.add((65534 + i) & 0xFFFF, (0xFFFFFC00 + 960 * i) & 0xFFFFFFFF, b"x")
    ingress.add(20000, 77, b"y")  # new sequence and timestamp origins (the publisher restarted)
    assert [f.pts for f in frames] == [0, 960, 1920, 2880, 3840]


def test_while_waiting_for_a_keyframe_only_a_keyframe_is_worth_waiting_for() -> None:
    recorder = Recorder(rtt=RTT)
    assembler = recorder.assembler()
    frames = stream([KEYFRAME, BIG_DELTA, BIG_DELTA, BIG_DELTA, KEYFRAME, DELTA])
    feed(assembler, frames[0], 0.0)
    feed(assembler, [frames[1][0], frames[1][2]], 0.1)  # lost for good
    assembler.tick(0.1 + POLICY.wait(RTT))
    assert assembler.gave_up == 1 and recorder.keyframe_requests == 1
    feed(assembler, [frames[2][0], frames[2][2]], 0.45)  # a delta with a hole: not worth a wait
    feed(assembler, frames[3], 0.5)
    assert assembler.waiting is False and assembler.frames_dropped == 1  # frame 3 decodes nothing alone
    keyframe, rest = frames[4][0], frames[4][1:]
    feed(assembler, rest + frames[5], 0.55)  # the requested keyframe's first packet is lost: wait for it
    assert assembler.waiting and len(recorder.frames) == 1
    assembler.tick(0.55 + POLICY.wait(RTT) - 0.01)
    feed(assembler, [keyframe], 0.55 + POLICY.wait(RTT) - 0.005)  # its retransmission
    assert [f.data for f in recorder.frames] == [KEYFRAME, KEYFRAME, DELTA]
    assert assembler.gave_up == 1 and recorder.keyframe_requests == 1
