"""The private "I need to talk" signal (issue 15), on the in-memory twin and on the real Redis stores."""

from __future__ import annotations

import pytest

from tests.rooms.support import Backend, enter, knock, live_room
from vIOP.rooms.errors import InvalidRoomInput, NotAHost, RoomAlreadyEnded
from vIOP.rooms.events import TalkAcknowledged, TalkRequested
from vIOP.rooms.presence import room_presence
from vIOP.rooms.talk import NoTalkRequest
from vIOP.rooms.waiting_room import lobby


async def test_a_request_stays_until_a_host_acknowledges_it(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    group = await live_room(s)
    seated = await enter(backend, group.room_id, group.host, "cl_1")
    asked = await s.request_talk(group.room_id, seated)
    at = clock()
    assert asked.events == (TalkRequested(room_id=group.room_id, participant_id=seated, at=at),)
    clock.advance(30)
    again = await s.request_talk(group.room_id, seated)  # asking again changes nothing, keeps the first time
    assert not again.changed
    stored = await s.room(group.room_id)
    assert stored.participant(seated).talk_requested_at == at
    seat = next(v for v in room_presence(stored, clock()).seated if v.participant_id == seated)
    assert seat.talk_requested_at == at  # what the staff dashboard shows
    acked = await s.acknowledge_talk(group.room_id, by=group.host, participant_id=seated)
    assert acked.events == (
        TalkAcknowledged(room_id=group.room_id, participant_id=seated, at=clock(), by=group.host),
    )
    assert (await s.room(group.room_id)).participant(seated).talk_requested_at is None
    with pytest.raises(NoTalkRequest):
        await s.acknowledge_talk(group.room_id, by=group.host, participant_id=seated)


async def test_a_waiting_client_may_ask_and_only_hosts_acknowledge(backend: Backend) -> None:
    s = backend.service
    group = await live_room(s)
    waiting = await knock(s, group.room_id, 1)
    seated = await enter(backend, group.room_id, group.host, "cl_2")
    await s.request_talk(group.room_id, waiting)
    stored = await s.room(group.room_id)
    assert [e.talk_requested_at is not None for e in lobby(stored, backend.clock())] == [True]
    before = await backend.rooms.get(group.room_id)
    with pytest.raises(NotAHost):
        await s.acknowledge_talk(group.room_id, by=seated, participant_id=waiting)
    with pytest.raises(InvalidRoomInput):
        await s.request_talk(group.room_id, group.host)  # a host does not ask
    assert await backend.rooms.get(group.room_id) == before
    await s.end(group.room_id, by=group.host)
    with pytest.raises(RoomAlreadyEnded):
        await s.request_talk(group.room_id, seated)
