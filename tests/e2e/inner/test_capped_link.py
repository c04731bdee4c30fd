"""A real Chromium in its own network namespace, joined to the server's by a veth link with a tbf cap
(``bench/scenarios/netns_link.py``): the harness ``bench/browser_capped.py`` measures issue 13 with.

What this checks, in a few seconds: the browser's media path is the link (its nominated ICE pair is
10.200.0.2 <-> 10.200.0.1); the server, configured as a deployment whose clients sit on a private
network (``VIOP_ICE_HOST_ADDRESSES`` with the link address, ``VIOP_ICE_REMOTE_ALLOW`` naming the client
network), gets media to it through the reference web client; a ``tbf`` cap set while the page runs
limits what reaches it, and lifting it restores the full rate.

The 4-person capped session and issue 13's guarantees (low layer under the cap, audio kept, high layer back
within 10 s of lifting it) are ``test_capped_session.py`` and ``bench/browser_capped.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from bench.scenarios.capped_browser import (
    ChromiumSubscriber,
    admitted_publishers,
    chromium_in,
    server_overrides,
)
from bench.scenarios.netns_link import PEER_ADDRESS, SERVER_ADDRESS, VethLink
from tests.support import LiveServer, free_port
from vIOP.signaling import messages as m

CAP_BPS = 1_000_000
ASSET = "/static/js/room-session.js"  # ~16 kB; fetched with distinct queries so nothing is cached
FETCHES = 12

# In the page: fetch the asset FETCHES times in a row; the seconds it took and the bytes that arrived.
_DOWNLOAD = f"""
(async () => {{
  const started = performance.now();
  let bytes = 0;
  for (let n = 0; n < {FETCHES}; n++) {{
    const body = await (await fetch("{ASSET}?n=" + n + "-" + Math.random(), {{cache: "no-store"}})).arrayBuffer();
    bytes += body.byteLength;
  }}
  return [(performance.now() - started) / 1000, bytes];
}})()
"""


@pytest.fixture
def link() -> Iterator[VethLink]:
    with VethLink.open() as opened:
        yield opened


@pytest.fixture
async def server(live_server_factory: Callable[..., Any], link: VethLink) -> AsyncIterator[LiveServer]:
    async with live_server_factory(**server_overrides(free_port())) as live:
        yield live


@pytest.fixture
async def browser(server: LiveServer, link: VethLink) -> AsyncIterator[ChromiumSubscriber]:
    async with chromium_in(link, f"http://{SERVER_ADDRESS}:{server.settings.port}") as launched:
        yield launched


async def _download(browser: ChromiumSubscriber) -> tuple[float, int]:
    seconds, size = await browser.page.evaluate(_DOWNLOAD)
    return float(seconds), int(size)


async def test_chromium_behind_the_capped_link_gets_media_and_the_cap_limits_it(
    server: LiveServer, link: VethLink, browser: ChromiumSubscriber
) -> None:
    host, _, invite_path = await admitted_publishers(server, client_names=())
    try:
        await browser.join(invite_path)
        await host.send(m.AdmitAll())
        await browser.until("window.viop && window.viop.phase() === 'in_room'")

        # Media over the link: ICE between 10.200.0.1 and the browser's private address, which the
        # server's egress policy admits only because VIOP_ICE_REMOTE_ALLOW names the link's network.
        started = time.monotonic()
        while True:
            counters, heights = await browser.inbound()
            frames = counters.get((host.participant_id, "video"), {}).get("framesDecoded", 0)
            if frames >= 10:
                break
            assert time.monotonic() - started < 20, f"no video over the link in 20 s: {counters}"
            await asyncio.sleep(0.2)
        assert heights[(host.participant_id, "video")] == 360
        pair = await browser.page.evaluate(
            "(async () => { const pc = window.__viopPeerConnections.at(-1); let found = null;"
            " (await pc.getStats()).forEach((s) => { if (s.type === 'candidate-pair' && s.nominated"
            " && s.state === 'succeeded') found = s; });"
            " if (!found) return null; const stats = await pc.getStats();"
            " return [stats.get(found.localCandidateId).address, stats.get(found.remoteCandidateId).address]; })()"
        )
        assert pair == [PEER_ADDRESS, SERVER_ADDRESS], pair

        # The cap, set while media flows, limits what reaches the page; lifting it restores the rate.
        link.cap(CAP_BPS)
        before = link.counters()
        seconds, size = await _download(browser)
        capped_bps = 8 * size / seconds
        # The asset plus the room's own media (~0.5 Mbit/s) share the cap: the download gets less than it.
        assert size > 150_000 and capped_bps < CAP_BPS, (seconds, size)
        assert link.counters().sent_bytes - before.sent_bytes >= size
        link.lift()
        seconds, size = await _download(browser)
        assert 8 * size / seconds > 2 * CAP_BPS, (seconds, size)
    finally:
        await host.close()
