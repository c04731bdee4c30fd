"""Audio-only minutes in the attendance ledger (issue 13): real redis-server rooms, the SQL ledger on SQLite
(and PostgreSQL when VIOP_TEST_POSTGRES_URL is set), a manual clock; a database outage in the middle."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from tests.api.backend_support import database_down
from tests.rooms.support import HOST, Backend, enter, new_sealer, redis_backend
from vIOP.ids import ParticipantId, RoomId, new_room_id
from vIOP.rooms.attendance import session_roster
from vIOP.rooms.attendance_report import ReportTable, build_report, rows, to_csv
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.ports import AttendanceQuery
from vIOP.rooms.room import RoomKind
from vIOP.storage.attendance_sql import SqlAttendanceStore
from vIOP.storage.database import Database

from .attendance_seed import seed_people, seed_room


async def _proc(db: Database, redis_client: aioredis.Redis) -> tuple[Backend, SqlAttendanceStore]:
    await seed_people(db)
    ledger = SqlAttendanceStore(db)
    return redis_backend(redis_client, new_sealer(), ManualClock(), ledger), ledger


async def _live_room(proc: Backend, db: Database) -> tuple[RoomId, ParticipantId]:
    room_id = new_room_id()
    await seed_room(db, room_id)
    s = proc.service
    await s.open_room(room_id, kind=RoomKind.GROUP, host_ids=frozenset({HOST}))
    t = await s.host_enter(room_id, user_id=HOST, display_name="Dr")
    assert t.participant is not None
    await s.join(room_id, t.participant.id)
    return room_id, t.participant.id


async def test_save_data_for_five_minutes_is_five_audio_only_minutes_and_leaving_ends_a_span(
    db: Database, redis_client: aioredis.Redis
) -> None:
    proc, ledger = await _proc(db, redis_client)
    s, clock = proc.service, proc.clock
    room_id, host = await _live_room(proc, db)
    pid = await enter(proc, room_id, host, "cl_1")
    clock.advance(600)
    await s.record_audio_only(await s.room(room_id), pid, AudioOnlyReason.SAVE_DATA, clock())
    await s.record_audio_only(await s.room(room_id), pid, AudioOnlyReason.SAVE_DATA, clock() + 1)  # repeated
    clock.advance(300)
    await s.record_audio_only(await s.room(room_id), pid, None, clock())
    clock.advance(120)
    await s.record_audio_only(await s.room(room_id), pid, AudioOnlyReason.BANDWIDTH, clock())
    clock.advance(60)
    await s.leave(room_id, pid)  # leaving ends the bandwidth span: one more minute
    clock.advance(600)
    await s.record_audio_only(await s.room(room_id), pid, None, clock())  # after leaving: nothing to add

    [stay] = await ledger.intervals(AttendanceQuery(room_id=room_id, subject="cl_1"))
    assert [(sp.reason, sp.ended_at - sp.started_at) for sp in stay.audio_only if sp.ended_at] == [
        (AudioOnlyReason.SAVE_DATA, 300.0),
        (AudioOnlyReason.BANDWIDTH, 60.0),
    ]
    report = build_report([stay], now=clock())
    [interval_row] = rows(report, ReportTable.INTERVALS)
    assert interval_row["minutes"] == 18.0 and interval_row["audio_only_minutes"] == 6.0
    [day] = rows(report, ReportTable.DAYS)
    assert day["audio_only_minutes"] == 6.0
    [week] = rows(report, ReportTable.WEEKS)
    assert week["audio_only_minutes"] == 6.0
    assert "audio_only_minutes" in to_csv(report).splitlines()[0].split(",")
    [line] = session_roster([stay], stay.session_id, now=clock())
    assert line.audio_only_minutes == 6.0


async def test_the_end_of_the_room_ends_every_open_span(db: Database, redis_client: aioredis.Redis) -> None:
    proc, ledger = await _proc(db, redis_client)
    s, clock = proc.service, proc.clock
    room_id, host = await _live_room(proc, db)
    pid = await enter(proc, room_id, host, "cl_1")
    await s.record_audio_only(await s.room(room_id), pid, AudioOnlyReason.BANDWIDTH, clock())
    clock.advance(240)
    await s.end(room_id, by=host)
    [stay] = await ledger.intervals(AttendanceQuery(room_id=room_id, subject="cl_1"))
    assert [(sp.started_at, sp.ended_at) for sp in stay.audio_only] == [(clock() - 240, clock())]
    assert stay.audio_only_seconds(clock() + 9999) == 240.0


async def test_a_database_outage_during_the_change_still_ends_with_the_right_minutes(
    db: Database, redis_client: aioredis.Redis, data_dir: Path
) -> None:
    proc, ledger = await _proc(db, redis_client)
    s, clock = proc.service, proc.clock
    room_id, host = await _live_room(proc, db)
    pid = await enter(proc, room_id, host, "cl_1")
    clock.advance(60)
    on_at = clock()
    backend = "postgres" if db.dialect == "postgresql" else "sqlite"
    async with database_down(backend, data_dir):
        await s.record_audio_only(await s.room(room_id), pid, AudioOnlyReason.SAVE_DATA, on_at)
        assert s.pending_attendance == 1  # held back, in order
    clock.advance(420)
    await s.record_audio_only(await s.room(room_id), pid, None, clock())  # the database is back: both written
    assert s.pending_attendance == 0
    clock.advance(30)
    await s.leave(room_id, pid)
    [stay] = await ledger.intervals(AttendanceQuery(room_id=room_id, subject="cl_1"))
    assert [(sp.started_at, sp.ended_at) for sp in stay.audio_only] == [(on_at, on_at + 420)]
    assert rows(build_report([stay], now=clock()), ReportTable.DAYS)[0]["audio_only_minutes"] == 7.0


async def test_a_breakout_is_a_span_in_one_sql_interval(db: Database, redis_client: aioredis.Redis) -> None:
    """Issue 15: a private breakout leaves the client's stay whole; the SQL ledger keeps its span."""
    proc, ledger = await _proc(db, redis_client)
    s, clock = proc.service, proc.clock
    room_id, host = await _live_room(proc, db)
    pid = await enter(proc, room_id, host, "cl_1")
    joined = clock()
    clock.advance(600)
    await s.start_breakout(room_id, by=host, participant_id=pid)
    clock.advance(900)
    await s.end_breakout(room_id, by=host, participant_id=pid)
    clock.advance(300)
    await s.start_breakout(room_id, by=host, participant_id=pid)
    clock.advance(60)
    await s.end(room_id, by=host)  # the end of the session ends the open span
    [stay] = await ledger.intervals(AttendanceQuery(subject="cl_1"))
    assert (stay.joined_at, stay.left_at) == (joined, joined + 1860)
    assert [(b.started_at, b.ended_at, b.clinician) for b in stay.breakouts] == [
        (joined + 600, joined + 1500, HOST),
        (joined + 1800, joined + 1860, HOST),
    ]
