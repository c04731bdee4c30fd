"""The forwarding unit without a network: keyframe rate limiting, fan-out, keyframe gating, re-timing."""

from __future__ import annotations

import asyncio
import fractions

import pytest

from vIOP.ids import ParticipantId
from vIOP.media.fanout import MAX_QUEUED, Leg, Source
from vIOP.media.frames import EncodedFrame
from vIOP.media.keyframes import KeyframeGate

VIDEO_TB = fractions.Fraction(1, 90_000)
AUDIO_TB = fractions.Fraction(1, 48_000)
PUB = ParticipantId("pt_publisher")


def video(pts: int, key: bool = False) -> EncodedFrame:
    return EncodedFrame(b"\x00key" if key else b"\x01delta", pts, VIDEO_TB, key)


def audio(pts: int) -> EncodedFrame:
    return EncodedFrame(b"opus", pts, AUDIO_TB, True)


class ManualTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- KeyframeGate ------------------------------------------------------------------------------------------


def test_gate_sends_first_request_at_once_and_coalesces_the_rest_into_one_trailing_request() -> None:
    gate = KeyframeGate(0.5)
    assert gate.request(10.0).send_now
    second = gate.request(10.1)
    assert not second.send_now and second.send_at == pytest.approx(10.5)
    third = gate.request(10.2)
    assert not third.send_now and third.send_at is None  # already scheduled
    assert gate.fire_trailing(10.5)
    assert not gate.fire_trailing(10.6)  # nothing pending any more
    assert gate.request(10.7).send_at == pytest.approx(11.0)  # window restarts at the trailing send
    assert gate.request(11.0).send_now  # due anyway: sent now, and it replaces the pending one
    assert not gate.fire_trailing(11.0)


def test_gate_allows_one_request_per_interval() -> None:
    gate = KeyframeGate(0.5)
    sent = [t / 100 for t in range(0, 300, 5) if gate.request(t / 100).send_now]
    assert sent == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def test_gate_rejects_non_positive_interval() -> None:
    with pytest.raises(ValueError):
        KeyframeGate(0)


# --- Leg ---------------------------------------------------------------------------------------------------


async def drain(leg: Leg) -> list[EncodedFrame]:
    out = []
    while True:
        try:
            out.append(await asyncio.wait_for(leg.recv(), 0.01))
        except TimeoutError:
            return out


async def test_video_leg_starts_at_a_keyframe_and_keeps_every_frame_after_it() -> None:
    leg = Leg("video")
    for pts, key in [(0, False), (3000, False), (6000, True), (9000, False), (12000, False)]:
        leg.push(video(pts, key))
    frames = await drain(leg)
    assert [f.keyframe for f in frames] == [True, False, False]
    assert [f.pts for f in frames] == [0, 3000, 6000]  # re-timed to start at 0, spacing kept


async def test_leg_timeline_never_goes_back_when_it_moves_to_another_source() -> None:
    clock = ManualTime()
    leg = Leg("video", clock=clock)
    first, second = Source(PUB, "video"), Source(ParticipantId("pt_other"), "video")
    first.attach(leg)
    first.deliver(video(900_000, key=True))
    first.deliver(video(903_000))
    before = await drain(leg)
    clock.now += 2.0
    second.attach(leg)  # moves: detached from the first source
    assert leg.source is second and first.legs == ()
    second.deliver(video(5, key=True))
    after = await drain(leg)
    assert [f.pts for f in before + after] == [0, 3000, 3000 + 180_000]  # +2 s of wall time at 90 kHz
    first.close()
    second.close()


async def test_audio_overflow_drops_oldest_and_video_overflow_waits_for_a_keyframe() -> None:
    leg = Leg("audio")
    for n in range(MAX_QUEUED["audio"] + 5):
        leg.push(audio(n * 960))
    frames = await drain(leg)
    assert len(frames) == MAX_QUEUED["audio"] and leg.overflows == 5
    assert frames[0].pts == 5 * 960  # the oldest five went

    vleg = Leg("video")
    vleg.push(video(0, key=True))
    for n in range(1, MAX_QUEUED["video"] + 3):
        vleg.push(video(n * 3000))
    vleg.push(video(999_000, key=True))
    frames = await drain(vleg)
    assert frames and frames[0].keyframe  # never a delta without its keyframe
    assert vleg.overflows >= 1


async def test_stopped_leg_ends_its_sender() -> None:
    from aiortc import MediaStreamError

    leg = Leg("audio")
    waiting = asyncio.ensure_future(leg.recv())
    await asyncio.sleep(0)
    leg.stop()
    with pytest.raises(MediaStreamError):
        await waiting


# --- Source ------------------------------------------------------------------------------------------------


async def test_source_fans_out_until_forwarding_is_switched_off() -> None:
    source = Source(PUB, "audio")
    legs = [Leg("audio") for _ in range(3)]
    for leg in legs:
        source.attach(leg)
    source.deliver(audio(0))
    source.set_forwarding(False)
    source.deliver(audio(960))
    source.set_forwarding(True)
    source.deliver(audio(1920))
    for leg in legs:
        assert [f.data for f in await drain(leg)] == [b"opus", b"opus"]
    assert source.frames_in == 3


async def test_attaching_video_asks_the_publisher_for_a_keyframe_rate_limited() -> None:
    asked: list[float] = []
    loop = asyncio.get_running_loop()
    source = Source(PUB, "video", keyframe_interval=0.2)
    source.bind_upstream(lambda: asked.append(loop.time()))
    source.attach(Leg("video"))
    for _ in range(5):
        source.attach(Leg("video"))  # a burst of joins: one now, one trailing
    assert len(asked) == 1
    deadline = loop.time() + 2
    while len(asked) < 2 and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert len(asked) == 2 and asked[1] - asked[0] >= 0.19
    source.close()


async def test_closed_source_detaches_every_leg() -> None:
    source = Source(PUB, "video")
    legs = [Leg("video") for _ in range(2)]
    for leg in legs:
        source.attach(leg)
    source.close()
    source.deliver(video(0, key=True))
    assert all(leg.source is None for leg in legs)
    assert [await drain(leg) for leg in legs] == [[], []]
