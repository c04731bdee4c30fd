"""Floods from one credential: knocks (signaling tickets) from one invite, joins from one identity, and
messages on one socket. Each is limited for the flooder only; everyone else carries on.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api import signal_support as ss
from tests.api.support import Api, bearer
from tests.hostile.seats import Bystanders
from tests.hostile.support import captured_server_logs
from tests.support import LiveServer
from vIOP.auth.permissions import Role
from vIOP.auth.ticket_rate import TICKETS_PER_WINDOW, WINDOW_SECONDS, TicketRateLimit, TicketRateLimited
from vIOP.auth.tickets import TicketPurpose
from vIOP.client.signaling import SignalingClient, SignalingClosed
from vIOP.signaling import messages as m
from vIOP.storage.redis_auth import RedisTicketRateCounter

KNOCKS = 300


async def test_a_flood_of_knocks_from_one_invite_is_rate_limited_and_others_are_unaffected(api: Api) -> None:
    clinician = await api.user(Role.CLINICIAN)
    room = await api.create_room(clinician)
    flooder = await api.create_invite(clinician, room["id"], display_name="Flood")
    neighbour = await api.create_invite(clinician, room["id"], display_name="Neighbour")
    bystanders = await Bystanders.start(api.live)
    url = "/api/v1/signal-tickets"

    async def knock(credential: str) -> httpx.Response:
        return await api.http.post(url, headers=bearer(credential))

    with captured_server_logs() as logs:
        started, wall_started = time.monotonic(), time.time()
        flood = await asyncio.gather(*(knock(flooder["invite_token"]) for _ in range(KNOCKS)))
        took, wall_ended = time.monotonic() - started, time.time()
        # Others are not limited by it: the neighbour with another invite, the clinician on their own.
        neighbour_reply = await knock(neighbour["invite_token"])
        host_reply = await api.http.post(url, json={"room_id": room["id"]}, headers=clinician.headers)
    statuses = Counter(r.status_code for r in flood)
    problems = await bystanders.finish()
    print(
        f"knock flood: {KNOCKS} ticket requests in {took:.2f} s -> {dict(statuses)}; {bystanders.summary()}"
    )
    # The limit is a fixed window on the server's clock: a flood that straddles a window boundary is
    # allowed up to the limit in each window it touches (CI once saw 38 = 20 + 18 across a minute).
    windows = int(wall_ended // WINDOW_SECONDS) - int(wall_started // WINDOW_SECONDS) + 1
    assert statuses[200] + statuses[429] == KNOCKS, statuses
    if windows == 1:
        assert statuses[200] == TICKETS_PER_WINDOW, statuses
    else:
        assert TICKETS_PER_WINDOW <= statuses[200] <= TICKETS_PER_WINDOW * windows, (statuses, windows)
    refused = next(r for r in flood if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= WINDOW_SECONDS
    assert neighbour_reply.status_code == 200, neighbour_reply.text
    assert host_reply.status_code == 200, host_reply.text
    assert problems == []
    assert logs.faults() == []
    # The limited requests spent nothing: the invite counted exactly the tickets it was given (in each
    # window the flood touched: a CI run straddling a minute counted 40 = 20 + 20, as the statuses did).
    invite = await api.services.invite_store.get(flooder["id"])
    assert invite.uses == statuses[200], (invite.uses, statuses)


@pytest.fixture
async def live(live_server_factory: Any) -> AsyncIterator[LiveServer]:
    async with live_server_factory() as server:
        yield server


async def test_a_flood_of_joins_from_one_identity_gets_one_seat(live: LiveServer) -> None:
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    principal = await ss.invite(live, host, scope, "Twin")
    tickets = ss.ticket_source(live, principal, scope, None)
    bystanders = await Bystanders.start(live)

    async def join() -> str:
        client = await SignalingClient.connect(await tickets(), origin=live.base_url)
        try:
            reply = await client.request(m.Join())
        except SignalingClosed:
            return "closed"
        if isinstance(reply, m.Welcome):
            return "welcome"
        assert isinstance(reply, m.ErrorMessage)
        try:
            await client.recv(within=10)
        except SignalingClosed as closed:
            return f"{reply.code} {closed.close_code}"
        return reply.code

    first = await SignalingClient.connect(await tickets(), origin=live.base_url)
    assert isinstance(await first.request(m.Join()), m.Welcome)
    with captured_server_logs() as logs:
        outcomes = Counter(await asyncio.gather(*(join() for _ in range(50))))
    await first.close()
    problems = await bystanders.finish()
    assert outcomes == {"already_connected 1008": 50}, outcomes
    assert problems == []
    assert logs.faults() == []
    room = await ss.services(live).rooms.room(scope.room_id)
    assert sum(1 for p in room.participants if p.subject == principal.subject) == 1


async def read_until_closed(client: SignalingClient, replies: Counter[str]) -> None:
    for _ in range(100_000):  # bounded; the server closes long before
        try:
            reply = await client.recv(within=10)
        except SignalingClosed:
            return
        replies[reply.code if isinstance(reply, m.ErrorMessage) else m.message_type(reply)] += 1
    raise AssertionError("the flooding socket was never closed")


async def test_a_message_flood_is_refused_then_closed_and_others_keep_going(live: LiveServer) -> None:
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    issued = await ss.services(live).tickets.issue(
        host.principal, TicketPurpose.SIGNAL, scope, session=host.session
    )
    bystanders = await Bystanders.start(live)
    flooder = await SignalingClient.connect(
        f"{live.ws_url}/ws/signal?ticket={issued.ticket}", origin=live.base_url
    )
    assert isinstance(await flooder.request(m.Join()), m.Welcome)
    replies: Counter[str] = Counter()
    with captured_server_logs() as logs:
        sent = 0
        try:
            for _ in range(2_000):
                await flooder.send(m.Ping())
                sent += 1
        except SignalingClosed:
            pass
        await read_until_closed(flooder, replies)
    problems = await bystanders.finish()
    print(f"message flood: {sent} pings sent, replies {dict(replies)}, closed {flooder.close_code}")
    assert flooder.close_code == 1008
    # The burst (60 messages, the join among them, plus what refills meanwhile at 20/s) is answered, then
    # refusals until the strikes run out.
    assert 55 <= replies["pong"] <= 80 and replies["rate_limited"] >= 20, replies
    assert problems == []
    assert logs.faults() == []


async def test_ticket_rate_window_with_a_hand_driven_clock(redis_client: Any) -> None:
    now = [1_000_000.0 * WINDOW_SECONDS + 15]
    limit = TicketRateLimit(RedisTicketRateCounter(redis_client), clock=lambda: now[0])
    for _ in range(TICKETS_PER_WINDOW):
        await limit.spend("cl_flood")
    with pytest.raises(TicketRateLimited) as refused:
        await limit.spend("cl_flood")
    assert refused.value.retry_after == WINDOW_SECONDS - 15
    await limit.spend("cl_other")  # per subject
    now[0] += WINDOW_SECONDS - 15  # the next window
    await limit.spend("cl_flood")
    keys = [k.decode() for k in await redis_client.keys("*")]
    assert all(k.startswith("viop:ticket-rate:cl_") for k in keys)  # opaque ids only
    for key in keys:
        assert 0 < await redis_client.ttl(key) <= 2 * WINDOW_SECONDS
