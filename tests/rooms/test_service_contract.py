"""RoomService use cases, run on the in-memory twin and on the real Redis stores (the same contract)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import msgspec
import pytest

from tests.rooms.support import HOST, HOST2, Backend, enter, knock, live_room
from vIOP.errors import VIOPError
from vIOP.ids import ClientId, ParticipantId, RoomId, UserId, new_room_id
from vIOP.rooms.errors import (
    AlreadyPresent,
    IllegalTransition,
    InvalidRoomInput,
    NotActive,
    NotAHost,
    ParticipantNotFound,
    RoomAlreadyEnded,
    RoomAlreadyOpen,
    RoomFull,
    RoomLocked,
    RoomNotFound,
)
from vIOP.rooms.events import (
    Admitted,
    Denied,
    Event,
    Joined,
    Knocked,
    LeaveReason,
    Left,
    LobbyMessage,
    Muted,
    MuteKind,
    PositionChanged,
    Reconnecting,
    Resumed,
    ReturnedToLobby,
    RoomEnded,
    RoomStarted,
)
from vIOP.rooms.events import (
    RoomLocked as RoomLockedEvent,
)
from vIOP.rooms.participant import ParticipantState, Role
from vIOP.rooms.ports import AttendanceQuery, HeartbeatResult
from vIOP.rooms.presence import Viewer
from vIOP.rooms.room import MAX_DEPARTED_KEPT, RoomKind, RoomState
from vIOP.session.loops import sweep_rooms
from vIOP.storage.redis_rooms import RedisRoomStore


async def refused(
    backend: Backend, room_id: RoomId, action: Awaitable[object], error: type[VIOPError]
) -> None:
    """``action`` fails with ``error`` and the stored room is exactly as before (version included)."""
    before = await backend.rooms.get(room_id)
    with pytest.raises(error):
        await action
    assert await backend.rooms.get(room_id) == before


async def test_first_host_entering_starts_the_room(backend: Backend) -> None:
    s = backend.service
    room_id = new_room_id()
    opened = await s.open_room(room_id, kind=RoomKind.GROUP, host_ids=frozenset({HOST}))
    assert opened.state is RoomState.OPEN and opened.capacity == 15
    host = await s.host_enter(room_id, user_id=HOST, display_name="Dr. A")
    assert host.participant is not None and host.participant.state is ParticipantState.ADMITTED
    joined = await s.join(room_id, host.participant.id)
    assert joined.room.state is RoomState.LIVE
    assert [type(e) for e in joined.events] == [RoomStarted, Joined]
    with pytest.raises(RoomAlreadyOpen):
        await s.open_room(room_id, kind=RoomKind.GROUP, host_ids=frozenset({HOST}))


async def test_lobby_is_fifo_with_positions_and_wait_times(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    g = await live_room(s)
    ids = []
    for n in range(4):
        t = await s.knock(g.room_id, subject=ClientId(f"cl_{n}"), display_name=f"Client {n}")
        assert isinstance(t.events[0], Knocked) and t.events[0].position == n + 1
        assert t.participant is not None
        ids.append(t.participant.id)
        clock.advance(10)
    snap = await s.snapshot(Viewer(HOST))
    lobby = snap.rooms[0].waiting
    assert [e.participant_id for e in lobby] == ids
    assert [e.waited_seconds for e in lobby] == [40, 30, 20, 10]
    assert [e.display_name for e in lobby] == [f"Client {n}" for n in range(4)]

    admitted = await s.admit(g.room_id, by=g.host, participant_id=ids[1])
    assert admitted.events[0] == Admitted(room_id=g.room_id, participant_id=ids[1], at=clock(), by=g.host)
    moved = {e.participant_id: e.position for e in admitted.events if isinstance(e, PositionChanged)}
    assert moved == {ids[2]: 2, ids[3]: 3}  # the first one did not move


async def test_admit_join_and_the_bad_inputs_that_change_nothing(backend: Backend) -> None:
    s = backend.service
    g = await live_room(s)
    other = await live_room(s, hosts=(HOST2,))
    a = await knock(s, g.room_id, 1)
    await s.admit(g.room_id, by=g.host, participant_id=a)
    joined = await s.join(g.room_id, a)
    assert joined.events == (
        Joined(
            room_id=g.room_id, participant_id=a, at=backend.clock(), role=Role.CLIENT, display_name="Client 1"
        ),
    )
    await refused(backend, g.room_id, s.admit(g.room_id, by=g.host, participant_id=a), IllegalTransition)
    unknown = ParticipantId("pt_nobody")
    await refused(
        backend, g.room_id, s.admit(g.room_id, by=g.host, participant_id=unknown), ParticipantNotFound
    )
    b = await knock(s, g.room_id, 2)
    await refused(backend, g.room_id, s.admit(g.room_id, by=a, participant_id=b), NotAHost)
    await refused(backend, g.room_id, s.admit(g.room_id, by=other.host, participant_id=b), NotAHost)
    # a message to a participant in another room
    stranger = await knock(s, other.room_id, 9)
    action = s.lobby_message(g.room_id, by=g.host, participant_id=stranger, message="hi")
    await refused(backend, g.room_id, action, ParticipantNotFound)
    await refused(
        backend, g.room_id, s.knock(g.room_id, subject=ClientId("cl_2"), display_name="x"), AlreadyPresent
    )
    await refused(
        backend,
        g.room_id,
        s.knock(g.room_id, subject=ClientId("cl_7"), display_name="\x00 "),
        InvalidRoomInput,
    )
    await refused(
        backend, g.room_id, s.knock(g.room_id, subject=ClientId("cl_8"), display_name=" "), InvalidRoomInput
    )
    long_message = s.lobby_message(g.room_id, by=g.host, participant_id=b, message="x" * 1001)
    await refused(backend, g.room_id, long_message, InvalidRoomInput)
    with pytest.raises(RoomNotFound):
        await s.knock(RoomId("rm_missing"), subject=ClientId("cl_1"), display_name="x")


async def test_capacity_admit_all_and_room_full(backend: Backend) -> None:
    s = backend.service
    g = await live_room(s, capacity=3)
    ids = [await knock(s, g.room_id, n) for n in range(5)]
    t = await s.admit_all(g.room_id, by=g.host)
    assert [e.participant_id for e in t.events if isinstance(e, Admitted)] == ids[:3]
    assert {e.participant_id: e.position for e in t.events if isinstance(e, PositionChanged)} == {
        ids[3]: 1,
        ids[4]: 2,
    }
    await refused(backend, g.room_id, s.admit(g.room_id, by=g.host, participant_id=ids[3]), RoomFull)
    await refused(backend, g.room_id, s.admit_all(g.room_id, by=g.host), RoomFull)
    await s.leave(g.room_id, ids[0])
    assert (await s.admit(g.room_id, by=g.host, participant_id=ids[3])).room.seats_taken == 3


async def test_individual_room_admit_all_lets_in_one_at_a_time(backend: Backend) -> None:
    s = backend.service
    g = await live_room(s, kind=RoomKind.INDIVIDUAL)
    ids = [await knock(s, g.room_id, n) for n in range(3)]
    t = await s.admit_all(g.room_id, by=g.host)
    assert [e.participant_id for e in t.events if isinstance(e, Admitted)] == [ids[0]]
    t = await s.admit(g.room_id, by=g.host, participant_id=ids[2])  # the clinician admits another
    assert t.room.seats_taken == 2


async def test_deny_message_and_return_to_lobby_keeps_knock_order(backend: Backend) -> None:
    s = backend.service
    g = await live_room(s)
    a, b, c = [await knock(s, g.room_id, n) for n in range(3)]
    t = await s.lobby_message(g.room_id, by=g.host, participant_id=b, message="Five more minutes")
    assert t.events == (
        LobbyMessage(
            room_id=g.room_id, participant_id=b, at=backend.clock(), by=g.host, message="Five more minutes"
        ),
    )
    t = await s.deny(g.room_id, by=g.host, participant_id=c, message="Please call the front desk")
    assert isinstance(t.events[0], Denied) and t.events[0].message == "Please call the front desk"
    assert t.room.participant(c).state is ParticipantState.DENIED
    await refused(backend, g.room_id, s.admit(g.room_id, by=g.host, participant_id=c), IllegalTransition)
    await s.admit(g.room_id, by=g.host, participant_id=a)
    await s.join(g.room_id, a)
    t = await s.return_to_lobby(g.room_id, by=g.host, participant_id=a)
    assert t.events[0] == ReturnedToLobby(
        room_id=g.room_id, participant_id=a, at=backend.clock(), by=g.host, position=1
    )
    assert {e.participant_id: e.position for e in t.events if isinstance(e, PositionChanged)} == {b: 2}
    await refused(
        backend, g.room_id, s.return_to_lobby(g.room_id, by=g.host, participant_id=g.host), InvalidRoomInput
    )


async def test_lock_refuses_knocks_and_admits_end_refuses_everything(backend: Backend) -> None:
    s = backend.service
    g = await live_room(s)
    waiting = await knock(s, g.room_id, 1)
    inside = await knock(s, g.room_id, 2)
    await s.admit(g.room_id, by=g.host, participant_id=inside)
    await s.join(g.room_id, inside)
    t = await s.lock(g.room_id, by=g.host)
    assert isinstance(t.events[0], RoomLockedEvent) and t.room.state is RoomState.LOCKED
    await refused(
        backend, g.room_id, s.knock(g.room_id, subject=ClientId("cl_3"), display_name="C"), RoomLocked
    )
    await refused(backend, g.room_id, s.admit(g.room_id, by=g.host, participant_id=waiting), RoomLocked)
    await refused(backend, g.room_id, s.lock(g.room_id, by=g.host), IllegalTransition)
    await s.unlock(g.room_id, by=g.host)
    ended = await s.end(g.room_id, by=g.host)
    lefts = {e.participant_id: e.reason for e in ended.events if isinstance(e, Left)}
    assert lefts == {g.host: LeaveReason.ENDED, waiting: LeaveReason.ENDED, inside: LeaveReason.ENDED}
    assert isinstance(ended.events[-1], RoomEnded)
    assert all(not p.is_active for p in ended.room.participants)
    await refused(
        backend, g.room_id, s.knock(g.room_id, subject=ClientId("cl_4"), display_name="D"), RoomAlreadyEnded
    )
    await refused(backend, g.room_id, s.end(g.room_id, by=None), RoomAlreadyEnded)
    with pytest.raises(NotActive):
        await s.heartbeat(g.room_id, inside)
    assert await backend.rooms.open_rooms() == []
    # a new session of the same room can open once the last one ended
    reopened = await s.open_room(g.room_id, kind=RoomKind.GROUP, host_ids=frozenset({HOST}))
    assert reopened.session_id != ended.room.session_id


async def test_remove_and_mute_are_host_actions_with_records(backend: Backend) -> None:
    s = backend.service
    g = await live_room(s)
    a = await knock(s, g.room_id, 1)
    await s.admit(g.room_id, by=g.host, participant_id=a)
    await s.join(g.room_id, a)
    await refused(backend, g.room_id, s.mute(g.room_id, by=a, participant_id=g.host), NotAHost)
    t = await s.mute(g.room_id, by=g.host, participant_id=a)
    assert t.events == (
        Muted(room_id=g.room_id, participant_id=a, at=backend.clock(), by=g.host, muted=True),
    )
    assert (await s.mute(g.room_id, by=g.host, participant_id=a)).events == ()  # already muted: no event
    await refused(backend, g.room_id, s.remove(g.room_id, by=g.host, participant_id=g.host), InvalidRoomInput)
    t = await s.remove(g.room_id, by=g.host, participant_id=a)
    assert t.room.participant(a).state is ParticipantState.REMOVED
    await refused(backend, g.room_id, s.remove(g.room_id, by=g.host, participant_id=a), IllegalTransition)
    await refused(backend, g.room_id, s.heartbeat(g.room_id, a), NotActive)
    await refused(backend, g.room_id, s.mark_reconnecting(g.room_id, a), IllegalTransition)


async def test_silence_marks_reconnecting_heartbeat_revives_grace_expiry_lets_go(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    g = await live_room(s)
    a = await knock(s, g.room_id, 1)
    await s.admit(g.room_id, by=g.host, participant_id=a)
    await s.join(g.room_id, a)
    assert await s.heartbeat(g.room_id, a) is HeartbeatResult.FRESH
    last_seen = clock()
    clock.advance(20)
    await s.heartbeat(g.room_id, g.host)
    clock.advance(15)  # a: 35 s silent; host: 15 s
    swept = await s.sweep()
    assert [e for t in swept for e in t.events] == [
        Reconnecting(room_id=g.room_id, participant_id=a, at=clock())
    ]
    assert (await s.room(g.room_id)).participant(a).reconnecting_since == last_seen
    assert await s.sweep() == []  # nothing new: idempotent

    assert await s.heartbeat(g.room_id, a) is HeartbeatResult.REVIVED  # it was only a hiccup
    assert (await s.room(g.room_id)).participant(a).reconnecting_since is None

    socket_closed = clock.advance(5)
    await s.mark_reconnecting(g.room_id, a)
    clock.advance(59)
    await s.heartbeat(g.room_id, g.host)
    assert await s.sweep() == []  # 59 s: still within the grace
    clock.advance(2)
    await s.heartbeat(g.room_id, g.host)
    swept = await s.sweep()
    (left,) = [e for t in swept for e in t.events]
    assert left == Left(
        room_id=g.room_id,
        participant_id=a,
        at=clock(),
        reason=LeaveReason.TIMEOUT,
        present_until=socket_closed,
    )
    with pytest.raises(NotActive):
        await s.heartbeat(g.room_id, a)


async def test_resume_within_grace(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    g = await live_room(s)
    a = await knock(s, g.room_id, 1)
    await s.mark_reconnecting(g.room_id, a)
    clock.advance(30)
    t = await s.resume(g.room_id, a)
    assert t.events == (Resumed(room_id=g.room_id, participant_id=a, at=clock()),)
    assert (await s.resume(g.room_id, a)).events == ()
    assert t.room.participant(a).state is ParticipantState.WAITING


async def test_snapshot_staff_sees_all_rooms_clinician_sees_own(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    mine = await live_room(s)
    theirs = await live_room(s, hosts=(HOST2,))
    a = await knock(s, mine.room_id, 1)
    await s.admit(mine.room_id, by=mine.host, participant_id=a)
    joined_at = clock()
    await s.join(mine.room_id, a)
    clock.advance(60)
    await knock(s, mine.room_id, 2)
    await s.mark_reconnecting(mine.room_id, a)
    clock.advance(30)

    staff = await s.snapshot(Viewer(UserId("us_staff"), sees_all_rooms=True))
    assert {r.room_id for r in staff.rooms} == {mine.room_id, theirs.room_id}
    clinician = await s.snapshot(Viewer(HOST))
    (room,) = clinician.rooms
    assert room.room_id == mine.room_id and room.kind is RoomKind.GROUP and room.host_ids == (HOST,)
    assert (room.waiting_count, room.in_room_count, room.reconnecting_count) == (1, 2, 1)
    assert room.waiting[0].waited_seconds == 30
    seat = next(x for x in room.seated if x.participant_id == a)
    assert seat.since == joined_at and seat.reconnecting_since == joined_at + 60
    assert (await s.snapshot(Viewer(UserId("us_other")))).rooms == ()


async def test_events_reach_a_subscriber_in_order(backend: Backend) -> None:
    s = backend.service
    sub = await backend.bus.subscribe()
    try:
        g = await live_room(s)
        a = await knock(s, g.room_id, 1)
        await s.admit(g.room_id, by=g.host, participant_id=a)
        expected = ["admitted", "room_started", "joined", "knocked", "admitted"]
        got: list[Event] = []
        for _ in expected:
            item = await asyncio.wait_for(anext(sub), 5)
            assert not isinstance(item, type(None))
            got.append(item)  # type: ignore[arg-type]
        assert [e.kind for e in got] == expected
        assert isinstance(got[3], Knocked) and got[3].display_name == "Client 1"
    finally:
        await sub.close()


async def test_the_background_sweeper_notices_silence(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    g = await live_room(s)
    a = await knock(s, g.room_id, 1)
    sub = await backend.bus.subscribe()
    stop = asyncio.Event()
    sweeper = asyncio.create_task(sweep_rooms(s, interval=0.01, stop=stop))  # the sweeper production runs
    try:
        clock.advance(31)
        seen = set()
        while len(seen) < 2:  # both went quiet: the host and the waiting client
            item = await asyncio.wait_for(anext(sub), 5)
            assert isinstance(item, Reconnecting)
            seen.add(item.participant_id)
        assert seen == {g.host, a}
    finally:
        stop.set()
        await asyncio.wait_for(sweeper, 5)
        await sub.close()


async def test_a_room_needs_sane_capacity_and_hosts(backend: Backend) -> None:
    s = backend.service
    for capacity, hosts in ((0, {HOST}), (51, {HOST}), (5, set())):
        with pytest.raises(InvalidRoomInput):
            await s.open_room(
                new_room_id(), kind=RoomKind.GROUP, host_ids=frozenset(hosts), capacity=capacity
            )
    assert await backend.rooms.open_rooms() == []
    g = await live_room(s)
    stranger = s.host_enter(g.room_id, user_id=UserId("us_not_a_host"), display_name="X")
    await refused(backend, g.room_id, stranger, NotAHost)
    await refused(
        backend, g.room_id, s.host_enter(g.room_id, user_id=HOST, display_name="Again"), AlreadyPresent
    )


async def test_knock_and_leave_cycles_keep_the_stored_room_bounded(backend: Backend) -> None:
    """Issue 11: departed participants were never pruned, so every knock/leave cycle grew the room's record
    (one Redis value, read and rewritten by every change) for the rest of the session."""
    s = backend.service
    g = await live_room(s)
    removed = await enter(backend, g.room_id, g.host, "cl_removed")
    await s.remove(g.room_id, by=g.host, participant_id=removed)

    async def stored_size() -> int:
        if isinstance(backend.rooms, RedisRoomStore):
            return int(await backend.rooms.client.strlen(backend.rooms.keys.room(g.room_id)))
        return len(msgspec.json.encode(await backend.rooms.get(g.room_id)))

    sizes = []
    for cycle in range(200):
        backend.clock.advance(1)
        pid = await knock(s, g.room_id, cycle)
        if cycle % 3 == 0:  # some are seen to, some just give up waiting
            await s.admit(g.room_id, by=g.host, participant_id=pid)
            await s.join(g.room_id, pid)
        backend.clock.advance(1)
        t = await s.leave(g.room_id, pid)
        assert t.room.participant(pid).state is ParticipantState.LEFT  # still there for this step's records
        if cycle in (49, 199):
            sizes.append(await stored_size())
    room = await backend.rooms.get(g.room_id)
    departed = [p for p in room.participants if p.state is ParticipantState.LEFT]
    assert len(departed) == MAX_DEPARTED_KEPT + 1  # pruned before each step: the last leaver comes on top
    assert max(p.ended_at or 0 for p in departed) == backend.clock()  # the newest are the ones kept
    assert room.participant(removed).state is ParticipantState.REMOVED  # removed people are remembered
    assert room.participant(g.host).state is ParticipantState.IN_ROOM
    assert sizes[1] <= sizes[0] * 1.05, sizes  # 150 more cycles, (about) the same size
    await s.flush_attendance()
    intervals = await backend.attendance.intervals(AttendanceQuery(room_id=g.room_id))
    client_stays = [i for i in intervals if i.role is Role.CLIENT]
    assert len(client_stays) == 1 + 67 and all(i.left_at is not None for i in client_stays)  # ledger complete


async def test_a_knock_without_the_seat_lets_a_reconnecting_seat_go_and_waits(backend: Backend) -> None:
    """Issue 11, finding 4: the same client knocking again (no resume token) does not get the seat back."""
    s, clock = backend.service, backend.clock
    g = await live_room(s)
    a = await knock(s, g.room_id, 1)
    await s.admit(g.room_id, by=g.host, participant_id=a)
    await s.join(g.room_id, a)
    subject = ClientId("cl_1")
    # While the seat's socket is live, a second knock is refused and nothing changes.
    await refused(
        backend,
        g.room_id,
        s.knock(g.room_id, subject=subject, display_name="Client 1", replace_reconnecting=True),
        AlreadyPresent,
    )
    await s.mark_reconnecting(g.room_id, a)
    dropped_at = clock()
    clock.advance(5)
    # Without replace_reconnecting the rule of one active participant per client holds as before.
    await refused(
        backend, g.room_id, s.knock(g.room_id, subject=subject, display_name="Client 1"), AlreadyPresent
    )
    t = await s.knock(g.room_id, subject=subject, display_name="Client 1", replace_reconnecting=True)
    assert t.participant is not None and t.participant.id != a
    assert t.participant.state is ParticipantState.WAITING
    left, knocked = t.events
    assert left == Left(
        room_id=g.room_id, participant_id=a, at=clock(), reason=LeaveReason.TIMEOUT, present_until=dropped_at
    )
    assert isinstance(knocked, Knocked) and knocked.participant_id == t.participant.id
    stored = await s.room(g.room_id)
    assert stored.participant(a).state is ParticipantState.LEFT
    assert [e.participant_id for e in (await s.room_view(g.room_id)).waiting] == [t.participant.id]


async def test_a_removed_client_knocking_again_is_flagged_to_the_host(backend: Backend) -> None:
    """Issue 11: removal is not a ban, but the host sees that the person knocking was removed earlier."""
    s = backend.service
    g = await live_room(s)
    a = await knock(s, g.room_id, 1)
    b = await knock(s, g.room_id, 2)
    await s.admit(g.room_id, by=g.host, participant_id=a)
    await s.join(g.room_id, a)
    await s.remove(g.room_id, by=g.host, participant_id=a)
    t = await s.knock(g.room_id, subject=ClientId("cl_1"), display_name="Client 1")
    assert t.participant is not None and t.participant.returning_after_removal
    assert isinstance(t.events[0], Knocked) and t.events[0].returning_after_removal
    view = await s.room_view(g.room_id)
    flags = {e.participant_id: e.returning_after_removal for e in view.waiting}
    assert flags == {b: False, t.participant.id: True}


async def test_a_video_mute_is_kept_with_the_participant_through_the_lobby(backend: Backend) -> None:
    """Issue 11: the host's video mute lives with the participant, like the audio mute."""
    s = backend.service
    g = await live_room(s)
    a = await knock(s, g.room_id, 1)
    await s.admit(g.room_id, by=g.host, participant_id=a)
    await s.join(g.room_id, a)
    t = await s.mute(g.room_id, by=g.host, participant_id=a, media=MuteKind.VIDEO)
    assert t.events == (
        Muted(room_id=g.room_id, participant_id=a, at=backend.clock(), by=g.host, muted=True,
              media=MuteKind.VIDEO),
    )  # fmt: skip
    assert (await s.mute(g.room_id, by=g.host, participant_id=a, media=MuteKind.VIDEO)).events == ()
    await s.mute(g.room_id, by=g.host, participant_id=a)
    await s.return_to_lobby(g.room_id, by=g.host, participant_id=a)
    await s.admit(g.room_id, by=g.host, participant_id=a)
    back = (await s.room(g.room_id)).participant(a)
    assert back.muted and back.video_muted
