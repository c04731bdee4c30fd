"""The SQL attendance ledger on a real (migrated) database, driven by the room service with a manual clock."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from tests.rooms.support import HOST, Backend, enter, memory_backend
from vIOP.ids import ParticipantId, RoomId, SessionId, new_room_id
from vIOP.rooms.attendance import CloseMark, CloseReason, OpenMark, SessionEndMark, session_roster
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.participant import Role
from vIOP.rooms.ports import AttendanceQuery
from vIOP.rooms.room import RoomKind
from vIOP.storage.attendance_sql import SqlAttendanceStore
from vIOP.storage.database import Database
from vIOP.storage.schema import room_sessions

from .attendance_seed import seed_people, seed_room


@pytest.fixture
async def ledger(db: Database) -> SqlAttendanceStore:
    await seed_people(db)
    return SqlAttendanceStore(db)


@pytest.fixture
def proc(ledger: SqlAttendanceStore) -> Backend:
    backend = memory_backend(ManualClock())
    backend.attendance = ledger
    backend.__post_init__()
    return backend


async def open_live_room(proc: Backend, db: Database) -> tuple[RoomId, ParticipantId]:
    room_id = new_room_id()
    await seed_room(db, room_id)
    s = proc.service
    await s.open_room(room_id, kind=RoomKind.GROUP, host_ids=frozenset({HOST}))
    t = await s.host_enter(room_id, user_id=HOST, display_name="Dr")
    assert t.participant is not None
    await s.join(room_id, t.participant.id)
    return room_id, t.participant.id


async def test_reconnect_merges_absence_splits_end_closes_the_session(
    proc: Backend, ledger: SqlAttendanceStore, db: Database
) -> None:
    s, clock = proc.service, proc.clock
    room_id, host = await open_live_room(proc, db)
    session_start = clock()
    pid = await enter(proc, room_id, host, "cl_1")
    other = await enter(proc, room_id, host, "cl_2")
    clock.advance(3600)
    await s.mark_reconnecting(room_id, pid)
    clock.advance(20)
    await s.resume(room_id, pid)  # 20 s: one interval
    clock.advance(600)
    await s.leave(room_id, pid)
    left_at = clock()
    clock.advance(300)  # a five-minute absence: a second interval
    back = clock()
    await enter(proc, room_id, host, "cl_1")
    clock.advance(1200)
    await s.remove(room_id, by=host, participant_id=other)
    clock.advance(60)
    room = await s.end(room_id, by=host)
    ended = clock()

    rows = await ledger.intervals(AttendanceQuery(room_id=room_id, subject="cl_1"))
    assert [(r.joined_at, r.left_at, r.close_reason) for r in rows] == [
        (session_start, left_at, CloseReason.LEFT),
        (back, ended, CloseReason.ENDED),
    ]
    assert all(r.role is Role.CLIENT and r.session_id == room.room.session_id for r in rows)
    everyone = await ledger.intervals(AttendanceQuery(session_id=room.room.session_id))
    roster = session_roster(everyone, room.room.session_id, now=ended)
    assert {line.subject: line.minutes for line in roster} == {
        HOST: round((ended - session_start) / 60, 2),
        "cl_1": round((left_at - session_start + ended - back) / 60, 2),
        "cl_2": round((3600 + 20 + 600 + 300 + 1200) / 60, 2),
    }
    async with db.read() as conn:
        (session,) = (await conn.execute(select(room_sessions))).mappings().all()
    assert session["id"] == room.room.session_id and session["room_id"] == room_id
    assert session["started_at"].timestamp() == session_start and session["ended_at"].timestamp() == ended


async def test_queries_filter_by_room_subject_and_time_window(
    proc: Backend, ledger: SqlAttendanceStore, db: Database
) -> None:
    clock = proc.clock
    first, host = await open_live_room(proc, db)
    t0 = clock()
    pid = await enter(proc, first, host, "cl_1")
    clock.advance(600)
    await proc.service.leave(first, pid)
    second, host2 = await open_live_room(proc, db)
    clock.advance(3600)
    await enter(proc, second, host2, "cl_1")
    assert len(await ledger.intervals(AttendanceQuery(subject="cl_1"))) == 2
    assert len(await ledger.intervals(AttendanceQuery(room_id=first))) == 2  # the client and the host
    window = await ledger.intervals(AttendanceQuery(subject="cl_1", start=t0 + 601, end=t0 + 5000))
    assert [r.room_id for r in window] == [second]
    assert await ledger.intervals(AttendanceQuery(subject="cl_2")) == []


async def test_racing_opens_and_repeated_marks_make_one_interval(
    ledger: SqlAttendanceStore, db: Database
) -> None:
    room_id, session = new_room_id(), SessionId("ss_race")
    await seed_room(db, room_id)
    mark = OpenMark(room_id, session, ParticipantId("pt_1"), "cl_1", Role.CLIENT, 1_767_225_600.0)
    await asyncio.gather(*(ledger.open(mark, 60) for _ in range(8)))
    close = CloseMark(room_id, session, ParticipantId("pt_1"), "cl_1", 1_767_225_700.0, CloseReason.LEFT)
    await ledger.close(close)
    await ledger.close(close)
    await ledger.end_session(SessionEndMark(room_id, session, 1_767_225_800.0))
    await ledger.end_session(SessionEndMark(room_id, session, 1_767_229_999.0))  # the first end wins
    rows = await ledger.intervals(AttendanceQuery(session_id=session))
    assert [(r.joined_at, r.left_at) for r in rows] == [(1_767_225_600.0, 1_767_225_700.0)]
    async with db.read() as conn:
        ended_at = (await conn.execute(select(room_sessions.c.ended_at))).scalar_one()
    assert ended_at.timestamp() == 1_767_225_800.0
