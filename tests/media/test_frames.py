"""Encoded frames: the VP8 keyframe flag."""

from __future__ import annotations

from vIOP.client.media import encode_video_clip
from vIOP.media.frames import is_vp8_keyframe


def test_vp8_keyframe_flag_matches_the_encoder() -> None:
    clip = encode_video_clip(160, 120, 15, seconds=0.4)
    flags = [is_vp8_keyframe(f) for f in clip.frames]
    assert flags[0] and not any(flags[1:])
    assert not is_vp8_keyframe(b"")
