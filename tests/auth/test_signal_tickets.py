"""Signaling tickets against the real Redis: single use, <= 30 s, bound to identity, purpose and room."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.auth.support import ManualClock
from vIOP.auth.permissions import Principal, Role, RoomScope
from vIOP.auth.tickets import ISSUE_ACTION, SignalTickets, TicketFailure, TicketPurpose, TicketRejected
from vIOP.errors import Forbidden
from vIOP.ids import RoomId
from vIOP.storage.redis_auth import RedisTicketStore

ROOM = RoomScope(RoomId("rm_x"), frozenset({"us_host"}))
OTHER = RoomScope(RoomId("rm_y"), frozenset({"us_other"}))
HOST = Principal(Role.CLINICIAN, "us_host")
CLIENT = Principal(Role.CLIENT, "cl_1", RoomId("rm_x"))
SIGNAL, PRESENCE = TicketPurpose.SIGNAL, TicketPurpose.PRESENCE
MAC_KEY = bytes(range(32))


@pytest.fixture
def tickets(redis_client: aioredis.Redis, clock: ManualClock) -> SignalTickets:
    return SignalTickets(RedisTicketStore(redis_client), MAC_KEY, clock=clock)


async def refused(tickets: SignalTickets, ticket: str, purpose: TicketPurpose = SIGNAL) -> TicketFailure:
    with pytest.raises(TicketRejected) as caught:
        await tickets.redeem(ticket, purpose)
    assert caught.value.ws_close_code == 1008 and caught.value.http_status == 401
    assert not ticket or ticket not in caught.value.message
    return caught.value.reason


async def test_issue_and_redeem_once(tickets: SignalTickets, clock: ManualClock) -> None:
    issued = await tickets.issue(CLIENT, SIGNAL, ROOM, session="iv_1")
    assert issued.expires_in == 30
    assert issued.ticket.startswith("vtk_") and len(issued.ticket) >= 4 + 43  # 256 random bits
    grant = await tickets.redeem(issued.ticket, SIGNAL)
    assert grant.principal == CLIENT
    assert grant.room_id == ROOM.room_id and grant.purpose is SIGNAL and grant.session == "iv_1"
    assert grant.expires_at == clock() + 30
    assert await refused(tickets, issued.ticket) is TicketFailure.UNKNOWN  # replay


async def test_concurrent_redemption_has_one_winner(
    tickets: SignalTickets, redis_url: str, clock: ManualClock
) -> None:
    issued = await tickets.issue(HOST, SIGNAL, ROOM, session="jti")
    clients = [aioredis.from_url(redis_url) for _ in range(8)]
    try:
        racers = [SignalTickets(RedisTicketStore(c), MAC_KEY, clock=clock) for c in clients for _ in range(4)]
        results = await asyncio.gather(
            *(r.redeem(issued.ticket, SIGNAL) for r in racers), return_exceptions=True
        )
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(losers) == 31
    assert all(isinstance(r, TicketRejected) and r.reason is TicketFailure.UNKNOWN for r in losers)


async def test_expired_by_clock(tickets: SignalTickets, clock: ManualClock) -> None:
    issued = await tickets.issue(HOST, SIGNAL, ROOM)
    clock.advance(30)
    assert await refused(tickets, issued.ticket) is TicketFailure.EXPIRED
    assert await refused(tickets, issued.ticket) is TicketFailure.UNKNOWN  # consumed even when refused


async def test_just_before_expiry(tickets: SignalTickets, clock: ManualClock) -> None:
    issued = await tickets.issue(HOST, SIGNAL, ROOM)
    clock.advance(29.9)
    assert (await tickets.redeem(issued.ticket, SIGNAL)).principal == HOST


async def test_redis_drops_tickets_within_30_seconds(
    tickets: SignalTickets, redis_client: aioredis.Redis
) -> None:
    issued = await tickets.issue(HOST, SIGNAL, ROOM)
    (key,) = await redis_client.keys("viop:ticket:*")
    assert 0 < await redis_client.pttl(key) <= 30_000
    value = await redis_client.get(key)
    assert issued.ticket.encode() not in key and issued.ticket.encode() not in value
    await redis_client.delete(key)  # what Redis does when the TTL runs out
    assert await refused(tickets, issued.ticket) is TicketFailure.UNKNOWN


async def test_wrong_purpose(tickets: SignalTickets) -> None:
    issued = await tickets.issue(HOST, PRESENCE, None, session="jti")
    assert await refused(tickets, issued.ticket, SIGNAL) is TicketFailure.WRONG_PURPOSE
    assert await refused(tickets, issued.ticket, PRESENCE) is TicketFailure.UNKNOWN


@pytest.mark.parametrize(
    "ticket", ["", "vtk_", "vtk_short", "x" * 47, "vtk_" + "é" * 43, "vtk_" + "a" * 44, "vtk_" + "a" * 43]
)
async def test_malformed_or_unknown(tickets: SignalTickets, ticket: str) -> None:
    expected = TicketFailure.UNKNOWN if ticket == "vtk_" + "a" * 43 else TicketFailure.MALFORMED
    assert await refused(tickets, ticket) is expected


@pytest.mark.parametrize(
    ("who", "purpose", "room"),
    [
        (Principal(Role.STAFF, "us_s"), SIGNAL, ROOM),  # staff never join
        (Principal(Role.ADMIN, "us_a"), SIGNAL, ROOM),
        (HOST, SIGNAL, OTHER),  # another clinician's room
        (CLIENT, SIGNAL, OTHER),  # invite for room X used on room Y
        (CLIENT, PRESENCE, ROOM),  # clients never see presence
        (CLIENT, PRESENCE, None),
        (HOST, PRESENCE, OTHER),
        (HOST, SIGNAL, None),  # a signaling ticket always names its room
    ],
)
async def test_forbidden_issuance_stores_nothing(
    tickets: SignalTickets,
    redis_client: aioredis.Redis,
    who: Principal,
    purpose: TicketPurpose,
    room: RoomScope | None,
) -> None:
    with pytest.raises(Forbidden):
        await tickets.issue(who, purpose, room)
    assert await redis_client.keys("*") == []


@pytest.mark.parametrize(
    ("who", "room"),
    [
        (Principal(Role.STAFF, "us_s"), None),
        (Principal(Role.ADMIN, "us_a"), OTHER),
        (HOST, None),
        (HOST, ROOM),
    ],
)
async def test_allowed_presence_tickets(
    tickets: SignalTickets, who: Principal, room: RoomScope | None
) -> None:
    issued = await tickets.issue(who, PRESENCE, room, session="jti")
    grant = await tickets.redeem(issued.ticket, PRESENCE)
    assert grant.principal == who
    assert grant.room_id == (room.room_id if room else None)


def test_lifetime_is_capped(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError):
        SignalTickets(RedisTicketStore(redis_client), MAC_KEY, ttl_seconds=31)
    with pytest.raises(ValueError):
        SignalTickets(RedisTicketStore(redis_client), MAC_KEY, ttl_seconds=0)


def test_the_permission_to_issue_each_purpose_is_defined_once() -> None:
    """The policy and the HTTP route ask for the same permission: one purpose -> action table in the code
    (the route used to keep its own copy)."""
    assert set(ISSUE_ACTION) == set(TicketPurpose)
    root = Path(__file__).resolve().parents[2] / "vIOP"
    tables = [
        str(path.relative_to(root))
        for path in sorted(root.rglob("*.py"))
        if re.search(r"TicketPurpose\.\w+\s*:\s*Action\.", path.read_text(encoding="utf-8"))
    ]
    assert tables == ["auth/tickets.py"]
