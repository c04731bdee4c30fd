"""The per-process connection registry: ordering, fan-out isolation, closes, rate limit, heartbeats."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.signaling.sinks import RecordingSink, eventually
from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.clock import ManualClock
from vIOP.signaling import messages as m
from vIOP.signaling.codec import decode_client, encode_text
from vIOP.signaling.connections import (
    ConnectionLimits,
    ConnectionRegistry,
    ConnectionState,
)
from vIOP.signaling.ratelimit import InboundVerdict, MessageRateLimit, TokenBucket

ROOM = RoomId("rm_room1")
OTHER_ROOM = RoomId("rm_room2")


def pid(n: int) -> ParticipantId:
    return ParticipantId(f"pt_p{n}")


def types(sink: RecordingSink) -> list[str]:
    return [json.loads(frame)["type"] for frame in sink.frames]


async def test_frames_go_out_in_order_and_broadcast_respects_room_exclude_and_filter() -> None:
    registry = ConnectionRegistry()
    sinks = [RecordingSink() for _ in range(4)]
    connections = [registry.open(sink, ROOM if i < 3 else OTHER_ROOM) for i, sink in enumerate(sinks)]
    for i, connection in enumerate(connections):
        registry.attach(connection, pid(i))

    assert registry.send_to(pid(0), m.Pong(id=1))
    assert registry.send_to(pid(0), m.Pong(id=2))
    assert not registry.send_to(pid(99), m.Pong())
    delivered = registry.broadcast(ROOM, m.RoomLocked(), exclude=pid(1))
    assert delivered == 2
    hosts_only = registry.broadcast(ROOM, m.RoomUnlocked(), where=lambda c: c.participant_id == pid(2))
    assert hosts_only == 1

    await eventually(lambda: len(sinks[0].frames) == 3 and len(sinks[2].frames) == 2)
    assert [json.loads(f).get("id") for f in sinks[0].frames] == [1, 2, None]
    assert types(sinks[0]) == ["pong", "pong", "room_locked"]
    assert sinks[1].frames == []
    assert types(sinks[2]) == ["room_locked", "room_unlocked"]
    assert sinks[3].frames == []  # another room
    assert {c.participant_id for c in registry.in_room(ROOM)} == {pid(0), pid(1), pid(2)}
    await registry.close_all()


async def test_a_client_that_stops_reading_does_not_hold_up_the_room() -> None:
    limits = ConnectionLimits(send_queue_frames=50)
    registry = ConnectionRegistry(limits)
    stalled, healthy = RecordingSink(reading=False), RecordingSink()
    registry.attach(registry.open(stalled, ROOM), pid(1))
    registry.attach(registry.open(healthy, ROOM), pid(2))
    slow = registry.get(pid(1))
    assert slow is not None

    started = time.perf_counter()
    for n in range(1_000):
        registry.broadcast(ROOM, m.Pong(id=n))
        await asyncio.sleep(0)  # as in the server: each fan-out runs from its own inbound event
    fan_out_seconds = time.perf_counter() - started

    await eventually(lambda: len(healthy.frames) == 1_000)
    assert [json.loads(f)["id"] for f in healthy.frames] == list(range(1_000))
    assert fan_out_seconds < 2.0  # only appends to queues; never waits on the stalled socket
    # The stalled client overflowed its queue: closed 1013 so it can resume, and dropped from the room.
    assert slow.state is not ConnectionState.OPEN
    stalled.reading.set()
    info = await asyncio.wait_for(slow.wait_closed(), 3)
    assert info.code == m.CloseCode.TRY_AGAIN_LATER
    assert stalled.closed_with == (1013, "client too slow to read")
    assert registry.get(pid(1)) is None
    assert [c.participant_id for c in registry.in_room(ROOM)] == [pid(2)]
    await registry.close_all()


async def test_a_send_stuck_past_the_timeout_closes_the_connection() -> None:
    registry = ConnectionRegistry(ConnectionLimits(send_timeout_seconds=0.05, close_timeout_seconds=0.05))
    sink = RecordingSink(reading=False)
    connection = registry.open(sink, ROOM)
    assert connection.send(m.Pong())
    info = await asyncio.wait_for(connection.wait_closed(), 3)
    assert info.code == 1013
    assert info.reason == "send timed out"
    assert sink.close_calls == 1  # it tried to send the close frame, bounded by the close timeout
    assert len(registry) == 0


async def test_close_after_error_sends_the_error_first_then_the_close_code() -> None:
    registry = ConnectionRegistry()
    sink = RecordingSink()
    connection = registry.open(sink, ROOM)
    result = decode_client("{not json")
    assert not isinstance(result, m.Ping)
    connection.send(result.reply())  # type: ignore[union-attr]
    connection.close(result.close_code)  # type: ignore[union-attr, arg-type]
    assert not connection.send(m.Pong())  # nothing is accepted once closing
    info = await asyncio.wait_for(connection.wait_closed(), 3)
    assert types(sink) == ["error"]
    assert json.loads(sink.frames[0])["code"] == "malformed_frame"
    assert sink.closed_with == (1003, "")
    assert info.by_server and info.code == 1003
    assert connection.state is ConnectionState.CLOSED


async def test_a_socket_that_drops_is_forgotten_without_a_close_frame() -> None:
    registry = ConnectionRegistry()
    sink = RecordingSink()
    connection = registry.open(sink, ROOM)
    registry.attach(connection, pid(1))
    connection.lost(1006)
    info = await asyncio.wait_for(connection.wait_closed(), 3)
    assert info == type(info)(code=1006, reason="", by_server=False)
    assert sink.close_calls == 0
    assert registry.get(pid(1)) is None and len(registry) == 0


async def test_a_send_that_fails_marks_the_socket_lost() -> None:
    registry = ConnectionRegistry()
    sink = RecordingSink()
    sink.broken = True
    connection = registry.open(sink, ROOM)
    connection.send(m.Pong())
    info = await asyncio.wait_for(connection.wait_closed(), 3)
    assert info.code == 1006 and not info.by_server
    assert sink.close_calls == 0


async def test_a_resumed_connection_replaces_the_old_one_which_closes_1000() -> None:
    registry = ConnectionRegistry()
    old_sink, new_sink = RecordingSink(), RecordingSink()
    old = registry.open(old_sink, ROOM)
    registry.attach(old, pid(1))
    new = registry.open(new_sink, ROOM)
    assert registry.attach(new, pid(1)) is old
    assert registry.get(pid(1)) is new
    await asyncio.wait_for(old.wait_closed(), 3)
    assert old_sink.closed_with == (1000, "replaced")
    # The old socket closing must not unregister the new one.
    assert registry.get(pid(1)) is new
    assert registry.in_room(ROOM) == (new,)
    with pytest.raises(RuntimeError):
        registry.attach(new, pid(2))
    await registry.close_all()


async def test_close_all_closes_every_socket_even_a_stuck_one() -> None:
    registry = ConnectionRegistry(ConnectionLimits(send_timeout_seconds=0.1, close_timeout_seconds=0.05))
    sinks = [RecordingSink(), RecordingSink(), RecordingSink(reading=False)]
    connections = [registry.open(sink, ROOM) for sink in sinks]
    connections[2].send(m.Pong())
    await asyncio.wait_for(registry.close_all(), 3)
    assert all(c.state is ConnectionState.CLOSED for c in connections)
    assert sinks[0].closed_with == sinks[1].closed_with == (1001, "server shutting down")
    assert len(registry) == 0


async def test_heartbeats_keep_a_connection_fresh_and_silence_closes_it_1001() -> None:
    clock = ManualClock()
    registry = ConnectionRegistry(ConnectionLimits(heartbeat_timeout_seconds=30), clock=clock)
    talkative, silent = RecordingSink(), RecordingSink()
    a = registry.open(talkative, ROOM)
    b = registry.open(silent, ROOM)
    for _ in range(5):
        clock.advance(20)
        assert a.accept_inbound() is InboundVerdict.ACCEPT
    assert registry.stale() == [b]
    assert registry.close_stale() == 1
    await asyncio.wait_for(b.wait_closed(), 3)
    assert silent.closed_with == (1001, "heartbeat timeout")
    assert a.state is ConnectionState.OPEN
    await registry.close_all()


async def test_inbound_rate_limit_accepts_a_burst_rejects_a_flood_then_closes() -> None:
    clock = ManualClock()
    limit = MessageRateLimit(per_second=20, burst=60, strikes=20, strike_refill_seconds=5)
    registry = ConnectionRegistry(ConnectionLimits(inbound=limit), clock=clock)
    connection = registry.open(RecordingSink(), ROOM)

    verdicts = [connection.accept_inbound() for _ in range(60)]
    assert set(verdicts) == {InboundVerdict.ACCEPT}  # a browser's ICE burst passes
    assert connection.accept_inbound() is InboundVerdict.REJECT  # strike 1 of 20
    clock.advance(1.0)  # refills 20 messages (and a fifth of a strike)
    assert [connection.accept_inbound() for _ in range(20)] == [InboundVerdict.ACCEPT] * 20
    flood = [connection.accept_inbound() for _ in range(30)]
    assert flood[:19] == [InboundVerdict.REJECT] * 19
    assert flood[19:] == [InboundVerdict.CLOSE] * 11
    await registry.close_all()


def test_token_bucket_refills_at_its_rate_up_to_capacity_and_ignores_a_clock_stepping_back() -> None:
    clock = ManualClock()
    bucket = TokenBucket(rate=2, capacity=4, clock=clock)
    assert [bucket.try_take() for _ in range(5)] == [True] * 4 + [False]
    clock.advance(1.0)
    assert [bucket.try_take() for _ in range(3)] == [True, True, False]
    clock.advance(100)
    assert bucket.tokens <= 4 and [bucket.try_take() for _ in range(5)] == [True] * 4 + [False]
    clock.now -= 50  # a clock that steps back must not mint or drain tokens
    assert not bucket.try_take()
    with pytest.raises(ValueError):
        TokenBucket(rate=0, capacity=1)


async def test_fan_out_encodes_once_per_message() -> None:
    registry = ConnectionRegistry()
    sinks = [RecordingSink() for _ in range(10)]
    for i, sink in enumerate(sinks):
        registry.attach(registry.open(sink, ROOM), pid(i))
    registry.broadcast(ROOM, m.HandRaised(participant_id="pt_p3", up=True))
    await eventually(lambda: all(sink.frames for sink in sinks))
    frames = [sink.frames[0] for sink in sinks]
    assert all(frame is frames[0] for frame in frames)  # the very same str object, encoded once
    assert frames[0] == encode_text(m.HandRaised(participant_id="pt_p3", up=True))
    await registry.close_all()
