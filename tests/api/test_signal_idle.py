"""Issue 11: an open console socket defeated the idle timeout (every heartbeat renewed the sign-in).

Real uvicorn, Redis and socket. Heartbeats of an unattended page (``ping {active: false}``) keep the seat
(presence) but leave the sign-in's last-activity record alone; a ping from a page in use renews it. The
idle end itself (a sign-in lapses while inactive pings go on) is shown on the token service with an
injected clock (``tests/auth/test_access_tokens.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.client.signaling import SignalingClient
from vIOP.signaling import messages as m

POLL_SECONDS = 10.0


@pytest.fixture
async def live(live_server_factory: Any) -> AsyncIterator[LiveServer]:
    # One-second heartbeats: the server handles a ping's heartbeat at most every half interval.
    async with live_server_factory(heartbeat_seconds=1) as server:
        yield server


async def test_only_pings_of_a_page_in_use_renew_the_sign_in(
    live: LiveServer, redis_client: aioredis.Redis
) -> None:
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    url = await ss.ticket_source(live, host.principal, scope, host.session)()
    activity = f"viop:auth:active:{host.session}"
    async with await SignalingClient.connect(url, origin=live.base_url) as client:
        welcome = await client.request(m.Join())
        assert isinstance(welcome, m.Welcome)
        presence = ("viop:presence", f"{scope.room_id}/{welcome.participant_id}")
        signed_in_at = await redis_client.hget(activity, "t")  # the last activity, in whole seconds
        seen_at = await redis_client.zscore(*presence)
        beats, started = 0, time.monotonic()
        # Unattended: the seat is kept (presence renewed twice), the sign-in is not, though seconds pass.
        while beats < 2 or time.monotonic() - started < 2.1:
            assert time.monotonic() - started < POLL_SECONDS, "presence was never renewed"
            assert isinstance(await client.request(m.Ping(active=False)), m.Pong)
            now_seen = await redis_client.zscore(*presence)
            if now_seen != seen_at:
                beats, seen_at = beats + 1, now_seen
            await asyncio.sleep(0.2)  # a page pings on a timer; this is that timer, faster
        assert await redis_client.hget(activity, "t") == signed_in_at
        # In use: the next handled ping renews the sign-in.
        started = time.monotonic()
        while await redis_client.hget(activity, "t") == signed_in_at:
            assert time.monotonic() - started < POLL_SECONDS, "an active ping did not renew the sign-in"
            assert isinstance(await client.request(m.Ping(active=True)), m.Pong)
            await asyncio.sleep(0.2)
