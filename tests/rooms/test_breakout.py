"""Private breakout (issue 15), on the in-memory twin and on the real Redis stores: the domain rules, the
refusals (nothing changed), the end of a breakout when either side leaves, and the ledger's one interval."""

from __future__ import annotations

import pytest

from tests.rooms.support import HOST, HOST2, Backend, enter, knock, live_room
from vIOP.ids import UserId
from vIOP.rooms.breakout import AlreadyInBreakout, NotAClinician, NotInBreakout, NotSeatedInRoom, group_of
from vIOP.rooms.errors import NotAHost, ParticipantNotFound
from vIOP.rooms.events import BreakoutEnded, BreakoutStarted, Left
from vIOP.rooms.ports import AttendanceQuery


async def _cohost(backend: Backend, room_id, user_id: UserId = HOST2):  # type: ignore[no-untyped-def]
    s = backend.service
    await s.add_host(room_id, user_id=user_id, by=HOST)
    t = await s.host_enter(room_id, user_id=user_id, display_name="Dr. Two")
    assert t.participant is not None
    await s.join(room_id, t.participant.id)
    return t.participant.id


async def test_a_host_moves_a_client_into_a_breakout_with_a_cohost_and_back(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    group = await live_room(s)
    cohost = await _cohost(backend, group.room_id)
    client = await enter(backend, group.room_id, group.host, "cl_1")
    other = await enter(backend, group.room_id, group.host, "cl_2")
    clock.advance(60)
    started = await s.start_breakout(group.room_id, by=group.host, participant_id=client, clinician_id=cohost)
    assert started.events == (
        BreakoutStarted(
            room_id=group.room_id, participant_id=client, at=clock(), clinician=cohost, by=group.host
        ),
    )
    room = await s.room(group.room_id)
    assert room.participant(client).breakout_with == cohost
    assert room.participant(cohost).breakout_with == client
    assert group_of(room.participant(client)) == group_of(room.participant(cohost)) == client
    assert group_of(room.participant(other)) is None and group_of(room.participant(group.host)) is None
    clock.advance(600)
    ended = await s.end_breakout(group.room_id, by=cohost, participant_id=cohost)  # either side names it
    assert ended.events == (
        BreakoutEnded(room_id=group.room_id, participant_id=client, at=clock(), clinician=cohost, by=cohost),
    )
    room = await s.room(group.room_id)
    assert room.participant(client).breakout_with is None and room.participant(cohost).breakout_with is None
    assert room.participant(client).state.value == "in_room"  # back without a knock


async def test_the_clinician_defaults_to_the_host_who_starts_it(backend: Backend) -> None:
    s = backend.service
    group = await live_room(s)
    client = await enter(backend, group.room_id, group.host, "cl_1")
    t = await s.start_breakout(group.room_id, by=group.host, participant_id=client)
    assert t.events[0].clinician == group.host  # type: ignore[union-attr]


async def test_bad_breakouts_are_refused_and_change_nothing(backend: Backend) -> None:
    s = backend.service
    group = await live_room(s)
    client = await enter(backend, group.room_id, group.host, "cl_1")
    other = await enter(backend, group.room_id, group.host, "cl_2")
    waiting = await knock(s, group.room_id, 3)
    await s.start_breakout(group.room_id, by=group.host, participant_id=client)
    before = await backend.rooms.get(group.room_id)
    refusals = [
        (NotSeatedInRoom, {"by": group.host, "participant_id": waiting}),  # not seated
        (AlreadyInBreakout, {"by": group.host, "participant_id": client}),  # already in one
        (AlreadyInBreakout, {"by": group.host, "participant_id": other}),  # the clinician is busy
        (NotAClinician, {"by": group.host, "participant_id": other, "clinician_id": client}),  # not a host
        (NotAClinician, {"by": group.host, "participant_id": group.host}),  # a host is no breakout's client
        (NotAHost, {"by": other, "participant_id": other}),  # a client sends it
        (ParticipantNotFound, {"by": group.host, "participant_id": "pt_nobody"}),
    ]
    for error, kwargs in refusals:
        with pytest.raises(error):
            await s.start_breakout(group.room_id, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(NotInBreakout):
        await s.end_breakout(group.room_id, by=group.host, participant_id=other)
    with pytest.raises(NotAHost):
        await s.end_breakout(group.room_id, by=client, participant_id=client)
    assert await backend.rooms.get(group.room_id) == before


async def test_a_breakout_client_who_drops_keeps_it_through_the_grace_then_leaves_it(
    backend: Backend,
) -> None:
    s, clock = backend.service, backend.clock
    group = await live_room(s)
    cohost = await _cohost(backend, group.room_id)
    client = await enter(backend, group.room_id, group.host, "cl_1")
    await s.start_breakout(group.room_id, by=group.host, participant_id=client, clinician_id=cohost)
    await s.mark_reconnecting(group.room_id, client)
    clock.advance(10)
    room = await s.room(group.room_id)
    assert room.participant(cohost).breakout_with == client  # within the grace: still theirs
    t = await s.sweep()  # the host's and co-host's own silence is not what this test is about
    assert all(not isinstance(e, BreakoutEnded) for x in t for e in x.events)
    clock.advance(s.policy.reconnect_grace + 1)
    for p in (group.host, cohost):
        await s.heartbeat(group.room_id, p)
    swept = [e for x in await s.sweep() for e in x.events]
    assert [type(e) for e in swept if e.participant_id == client] == [Left, BreakoutEnded]  # type: ignore[union-attr]
    room = await s.room(group.room_id)
    assert room.participant(cohost).breakout_with is None  # the clinician is back with the group


async def test_the_ledger_keeps_one_interval_with_the_breakout_span(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    group = await live_room(s)
    client = await enter(backend, group.room_id, group.host, "cl_1")
    joined = clock()
    clock.advance(600)
    await s.start_breakout(group.room_id, by=group.host, participant_id=client)
    clock.advance(900)
    await s.end_breakout(group.room_id, by=group.host, participant_id=client)
    clock.advance(300)
    await s.start_breakout(group.room_id, by=group.host, participant_id=client)
    clock.advance(60)
    await s.leave(group.room_id, client)  # leaving ends the open span too
    [stay] = await backend.attendance.intervals(AttendanceQuery(subject="cl_1"))
    assert (stay.joined_at, stay.left_at) == (joined, joined + 1860)
    assert [(b.started_at, b.ended_at, b.clinician) for b in stay.breakouts] == [
        (joined + 600, joined + 1500, HOST),
        (joined + 1800, joined + 1860, HOST),
    ]
