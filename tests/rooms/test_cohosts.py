"""Co-hosts and the last host's leaving (issue 15), on the in-memory twin and on the real Redis stores."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from tests.rooms.support import HOST, HOST2, Backend, enter, knock, live_room
from vIOP.errors import VIOPError
from vIOP.ids import ParticipantId, RoomId, UserId
from vIOP.rooms.errors import AlreadyAHost, NotACohost, NotAHost, RoomAlreadyEnded, TooManyHosts
from vIOP.rooms.events import HostAdded, HostRemoved, LeaveReason, Left, RoomEnded
from vIOP.rooms.participant import ParticipantState
from vIOP.rooms.room import MAX_HOSTS, RoomKind, RoomState

GRACE = 300.0


async def refused(
    backend: Backend, room_id: RoomId, action: Awaitable[object], error: type[VIOPError]
) -> None:
    before = await backend.rooms.get(room_id)
    with pytest.raises(error):
        await action
    assert await backend.rooms.get(room_id) == before


async def cohost_enters(backend: Backend, room_id: RoomId, user: UserId = HOST2) -> ParticipantId:
    t = await backend.service.host_enter(room_id, user_id=user, display_name="Dr. Two")
    assert t.participant is not None
    await backend.service.join(room_id, t.participant.id)
    return t.participant.id


async def test_a_cohost_added_to_a_live_room_enters_without_knocking_and_moderates(backend: Backend) -> None:
    s = backend.service
    group = await live_room(s)
    refused_entry = s.host_enter(group.room_id, user_id=HOST2, display_name="Dr. Two")
    await refused(backend, group.room_id, refused_entry, NotAHost)
    added = await s.add_host(group.room_id, user_id=HOST2, by=HOST)
    assert added.room.host_ids == {HOST, HOST2}
    assert added.events == (HostAdded(room_id=group.room_id, at=added.events[0].at, user_id=HOST2, by=HOST),)
    cohost = await cohost_enters(backend, group.room_id)
    waiting = await knock(s, group.room_id, 1)
    admitted = await s.admit(group.room_id, by=cohost, participant_id=waiting)
    assert admitted.room.participant(waiting).state is ParticipantState.ADMITTED
    await s.join(group.room_id, waiting)
    muted = await s.mute(group.room_id, by=cohost, participant_id=waiting)
    assert muted.room.participant(waiting).muted
    ended = await s.end(group.room_id, by=cohost)
    assert ended.room.state is RoomState.ENDED


async def test_adding_refuses_a_host_twice_too_many_hosts_and_an_ended_room(backend: Backend) -> None:
    s = backend.service
    group = await live_room(s)
    await refused(backend, group.room_id, s.add_host(group.room_id, user_id=HOST, by=HOST), AlreadyAHost)
    for n in range(MAX_HOSTS - 1):
        await s.add_host(group.room_id, user_id=UserId(f"us_extra_{n}"), by=HOST)
    await refused(backend, group.room_id, s.add_host(group.room_id, user_id=HOST2, by=HOST), TooManyHosts)
    await s.end(group.room_id, by=group.host)
    await refused(backend, group.room_id, s.add_host(group.room_id, user_id=HOST2, by=HOST), RoomAlreadyEnded)


async def test_removing_a_present_cohost_makes_them_leave_and_the_creator_stays(backend: Backend) -> None:
    s = backend.service
    group = await live_room(s)
    await s.add_host(group.room_id, user_id=HOST2, by=HOST)
    cohost = await cohost_enters(backend, group.room_id)
    owner_removal = s.remove_host(group.room_id, user_id=HOST, owner=HOST, by=HOST2)
    await refused(backend, group.room_id, owner_removal, NotACohost)
    stranger = s.remove_host(group.room_id, user_id=UserId("us_nobody"), owner=HOST, by=HOST)
    await refused(backend, group.room_id, stranger, NotACohost)
    removed = await s.remove_host(group.room_id, user_id=HOST2, owner=HOST, by=HOST)
    assert removed.room.host_ids == {HOST}
    assert removed.room.participant(cohost).state is ParticipantState.LEFT
    assert [type(e) for e in removed.events] == [Left, HostRemoved]
    # No way back in as a host, and their old seat acts no more.
    await refused(backend, group.room_id, s.admit(group.room_id, by=cohost, participant_id=cohost), NotAHost)
    refused_entry = s.host_enter(group.room_id, user_id=HOST2, display_name="Dr. Two")
    await refused(backend, group.room_id, refused_entry, NotAHost)


async def test_the_last_host_leaving_keeps_the_room_open_for_the_grace_then_it_ends(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    group = await live_room(s, hosts=(HOST, HOST2))
    cohost = await cohost_enters(backend, group.room_id)
    client = await enter(backend, group.room_id, group.host, "cl_1")
    await s.leave(group.room_id, group.host)
    assert (await s.room(group.room_id)).hostless_since is None  # the co-host is still there
    await s.leave(group.room_id, cohost)
    left_at = clock()
    assert (await s.room(group.room_id)).hostless_since == left_at
    clock.advance(GRACE - 1)
    assert await s.hostless_due(GRACE) == []
    not_yet = await s.end_if_hostless(group.room_id, grace=GRACE)
    assert not not_yet.changed and not_yet.room.participant(client).state is ParticipantState.IN_ROOM
    clock.advance(1)
    assert await s.hostless_due(GRACE) == [group.room_id]
    ended = await s.end_if_hostless(group.room_id, grace=GRACE)
    assert ended.room.state is RoomState.ENDED
    assert isinstance(ended.events[-1], RoomEnded) and ended.events[-1].by is None
    assert any(isinstance(e, Left) and e.reason is LeaveReason.ENDED for e in ended.events)


async def test_a_host_back_within_the_grace_keeps_the_room(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    group = await live_room(s)
    await enter(backend, group.room_id, group.host, "cl_1")
    await s.leave(group.room_id, group.host)
    clock.advance(GRACE / 2)
    back = await s.host_enter(group.room_id, user_id=HOST, display_name="Dr. Host")
    assert back.room.hostless_since is None
    clock.advance(GRACE)
    assert await s.hostless_due(GRACE) == []
    kept = await s.end_if_hostless(group.room_id, grace=GRACE)
    assert not kept.changed and kept.room.state is RoomState.LIVE


async def test_a_room_no_host_has_started_waits_for_its_host(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    group = await live_room(s)
    assert (await s.room(group.room_id)).state is RoomState.LIVE
    room_id = (
        await s.open_room(RoomId("rm_not_started"), kind=RoomKind.GROUP, host_ids=frozenset({HOST}))
    ).id
    await knock(s, room_id, 1)
    clock.advance(GRACE * 10)
    assert room_id not in await s.hostless_due(GRACE)
    assert not (await s.end_if_hostless(room_id, grace=GRACE)).changed
