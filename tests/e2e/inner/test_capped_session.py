"""Issue 13 with a real Chromium behind a 300 kbit/s tbf-capped veth link in a 4-person session
(``bench/scenarios/capped_browser.py``, the scenario ``bench/browser_capped.py`` measures). The three other
people publish simulcast (640x360 and 320x180) as the web client does.

Under the cap the relay moves Chromium to the low layer (its getStats ``frameHeight`` 180) instead of
stopping video, and Chromium keeps every publisher's audio (most of its packets: the share is a benchmark
figure); after the cap is lifted every publisher's video is back on the high layer (360). The issue's 10 s for that is a benchmark
target (``bench/browser_capped.py``, docs/BENCHMARKS.md: 10 of 10 runs within it); this test asserts that the
high layer comes back at all, within a bound that a loaded CI machine cannot miss by timing alone.
About 35 s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from bench.scenarios.capped_browser import run_capped_session, server_overrides
from bench.scenarios.netns_link import VethLink
from tests.support import LiveServer, free_port

AUDIO_KEPT_PER_S = 40.0  # of the 50 Opus packets a second each publisher sends: audio was not given up
HIGH_BACK_WITHIN_S = 30.0  # behaviour, not the 10 s target (a benchmark figure)


@pytest.fixture
def link() -> Iterator[VethLink]:
    with VethLink.open() as opened:
        yield opened


@pytest.fixture
async def server(live_server_factory: Callable[..., Any], link: VethLink) -> AsyncIterator[LiveServer]:
    async with live_server_factory(**server_overrides(free_port())) as live:
        yield live


async def test_a_capped_chromium_gets_the_low_layer_keeps_audio_and_the_high_layer_back_after_the_lift(
    server: LiveServer, link: VethLink
) -> None:
    report = await run_capped_session(server, link, recover_within_s=HIGH_BACK_WITHIN_S)
    clean, capped, lifted = (report.windows[w] for w in ("clean", "capped", "lifted"))
    print(  # the figures docs/BENCHMARKS.md quotes (visible with -s)
        f"capped session: low after {report.low_after_s} s ({report.low_publishers} publishers), "
        f"high after {report.high_after_s} s of the lift; under the cap audio "
        f"{sorted(capped.audio_packets_per_s.values())} packets/s, "
        f"{sorted(capped.audio_concealed_percent.values())} % concealed, video {capped.video_fps} fps; "
        f"relay's changes (lifted at {report.lifted_at}):\n  " + "\n  ".join(report.layer_changes)
    )
    assert all(clean.video_frame_height[p] == 360 for p in report.publishers), clean.video_frame_height
    # Under the cap: video goes on at the low layer (at least one person, decoding), not "audio only".
    assert report.low_after_s is not None, capped.video_frame_height
    # (How many frames a second the cap leaves is a quality figure for bench/browser_capped.py: 3-14 fps seen.)
    assert report.low_publishers >= 1 and max(capped.video_fps.values()) > 0, capped.video_fps
    # Audio kept under the cap: every publisher's audio goes on (at least 80 % of its 50 packets a second).
    # How much of it arrives is a benchmark figure: 48.4-55 packets/s on a quiet machine (docs/BENCHMARKS.md);
    # on a machine at load 13 the same run measured 42.6-44 (the aiortc publishers share the test's process).
    assert all(capped.audio_packets_per_s[p] >= AUDIO_KEPT_PER_S for p in report.publishers), (
        capped.audio_packets_per_s
    )
    # Every publisher's high layer back after the lift (how fast is the benchmark's figure).
    assert report.high_after_s is not None, report.high_after_s
    assert all(lifted.video_frame_height[p] == 360 for p in report.publishers), lifted.video_frame_height
    assert all(lifted.video_fps[p] >= 10 for p in report.publishers), lifted.video_fps
