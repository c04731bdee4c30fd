"""What a process keeps to rebuild the room store, and how the store merges it back in."""

from __future__ import annotations

import dataclasses

from tests.rooms.support import knock, live_room, memory_backend
from vIOP.ids import SessionId
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.holdings import Holdings, merge_held
from vIOP.rooms.memory import MemoryRoomStore
from vIOP.rooms.participant import ParticipantState
from vIOP.rooms.ports import HeartbeatResult
from vIOP.rooms.waiting_room import positions


async def test_holdings_keep_the_newest_room_copy_and_plan_only_held_active_people() -> None:
    proc = memory_backend(ManualClock())
    s = proc.service
    g = await live_room(s)
    a, b, c = [await knock(s, g.room_id, n) for n in range(3)]
    held = Holdings()
    older = await s.room(g.room_id)
    held.hold(older, a)
    held.hold(older, c)
    await s.admit(g.room_id, by=g.host, participant_id=a)
    newer = await s.room(g.room_id)
    held.observe(older)  # an older copy arriving late does not win
    held.observe(newer)
    held.observe(older)
    await s.leave(g.room_id, c)
    held.observe(await s.room(g.room_id))
    ((room, mine),) = held.plan()
    assert room.version == newer.version + 1
    assert [(p.id, p.state) for p in mine] == [(a, ParticipantState.ADMITTED)]  # c left, b is not ours
    held.release(g.room_id, a)
    held.release(g.room_id, c)
    assert held.plan() == []
    assert not held.holds(g.room_id, b)


async def test_merge_held_into_nothing_keeps_lobby_order_and_the_knock_counter() -> None:
    proc = memory_backend(ManualClock())
    g = await live_room(proc.service)
    ids = [await knock(proc.service, g.room_id, n) for n in range(4)]
    remembered = await proc.service.room(g.room_id)
    mine = [remembered.participant(ids[3]), remembered.participant(ids[1])]
    merged, restored = merge_held(None, remembered, mine)
    assert restored == (ids[3], ids[1])
    assert positions(merged) == {ids[1]: 1, ids[3]: 2}
    assert merged.next_knock_seq == remembered.participant(ids[3]).knock_seq + 1


async def test_merge_held_never_overrides_what_the_store_has() -> None:
    proc = memory_backend(ManualClock())
    g = await live_room(proc.service)
    a = await knock(proc.service, g.room_id, 1)
    stale = await proc.service.room(g.room_id)
    await proc.service.admit(g.room_id, by=g.host, participant_id=a)
    current = await proc.service.room(g.room_id)
    merged, restored = merge_held(current, stale, [stale.participant(a)])
    assert restored == () and merged.participant(a).state is ParticipantState.ADMITTED
    ended = dataclasses.replace(current, state=current.state.ENDED)
    assert merge_held(ended, stale, [stale.participant(a)]) == (ended, ())
    other_session = dataclasses.replace(current, session_id=SessionId("ss_next"), participants=())
    assert merge_held(other_session, stale, [stale.participant(a)])[1] == ()


async def test_memory_twin_reasserts_after_losing_everything() -> None:
    proc = memory_backend(ManualClock())
    s = proc.service
    g = await live_room(s)
    s.holdings.hold(await s.room(g.room_id), g.host)
    first = await knock(s, g.room_id, 1)
    s.holdings.hold(await s.room(g.room_id), first)
    store = proc.rooms
    assert isinstance(store, MemoryRoomStore)
    store.lose_everything()
    (result,) = await s.reassert()
    assert result.room_recreated and set(result.participants_restored) == {g.host, first}
    assert await s.heartbeat(g.room_id, first) is HeartbeatResult.FRESH
    (again,) = await s.reassert()  # a second reassert finds everything in place
    assert not again.room_recreated and again.participants_restored == ()
