"""The client's media helpers: clips encoded once, replayed with keyframes on request, frame counting."""

from __future__ import annotations

from vIOP.client.media import FrameCounter, PreEncodedTrack, encode_opus_clip, encode_video_clip
from vIOP.media.frames import is_vp8_keyframe


def test_video_clip_has_one_keyframe_first_and_deltas_after() -> None:
    clip = encode_video_clip(160, 120, fps=25, seconds=0.4)
    assert len(clip.frames) == 10 and clip.pts_step == 90_000 // 25
    assert [is_vp8_keyframe(f) for f in clip.frames] == [True] + [False] * 9


def test_opus_clip_is_twenty_millisecond_frames() -> None:
    clip = encode_opus_clip(0.2)
    assert len(clip.frames) >= 9 and clip.pts_step == 960 and clip.interval == 0.02
    assert all(0 < len(f) < 400 for f in clip.frames)


def test_opus_clip_averages_the_bitrate_asked() -> None:
    # Issue 13's capped receiver: the clip is every person's voice, and at 1.5x its bitrate (as libopus's
    # unconstrained VBR codes this tone) four voices filled a 250 kbit/s link before any video.
    for bitrate in (16_000, 32_000):
        clip = encode_opus_clip(2.0, bitrate=bitrate)
        average = 8 * sum(len(f) for f in clip.frames) / (len(clip.frames) * clip.interval)
        assert 0.8 * bitrate <= average <= 1.1 * bitrate, (bitrate, average)


async def test_replay_paces_frames_and_restarts_at_the_keyframe_when_asked() -> None:
    track = PreEncodedTrack(encode_video_clip(160, 120, fps=50, seconds=0.2))
    frames = [await track.recv() for _ in range(4)]
    assert [f.keyframe for f in frames] == [True, False, False, False]
    assert [f.pts for f in frames] == [0, 1800, 3600, 5400]  # a steady timeline at 50 fps
    track.request_keyframe()
    after = await track.recv()
    assert after.keyframe and after.pts == 7200  # the clip restarts; time does not


def test_frame_counter_keeps_first_and_last_arrival() -> None:
    now = [10.0]
    counter = FrameCounter(clock=lambda: now[0])
    counter.add("pt_a", "video")
    now[0] = 11.5
    counter.add("pt_a", "video", 2)
    stream = counter.streams[("pt_a", "video")]
    assert (stream.frames, stream.first_at, stream.last_at) == (3, 10.0, 11.5)
    assert counter.frames("pt_b", "audio") == 0 and counter.publishers("video") == {"pt_a"}
