"""The attendance ledger: pure interval rules, reports, and the service writing it with an injected clock."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from tests.rooms.support import Backend, enter, live_room
from vIOP.ids import ParticipantId, RoomId, SessionId
from vIOP.rooms.attendance import (
    CloseMark,
    CloseReason,
    Interval,
    OpenAction,
    OpenMark,
    daily_totals,
    decide_open,
    merged,
    session_roster,
    weekly_totals,
)
from vIOP.rooms.memory import MemoryAttendanceStore
from vIOP.rooms.participant import Role
from vIOP.rooms.ports import AttendanceQuery

ROOM, SESSION = RoomId("rm_a"), SessionId("ss_a")


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def stay(
    start: float, stop: float | None, subject: str = "cl_1", session: str = "ss_a", n: int = 0
) -> Interval:
    return Interval(
        id=f"at_{n}_{start}",
        room_id=ROOM,
        session_id=SessionId(session),
        participant_id=ParticipantId(f"pt_{n}"),
        subject=subject,
        role=Role.CLIENT,
        joined_at=start,
        left_at=stop,
        close_reason=None if stop is None else CloseReason.LEFT,
    )


def test_decide_open() -> None:
    assert decide_open(None, 100, 60) is OpenAction.NEW
    assert decide_open(stay(0, None), 100, 60) is OpenAction.NOTHING
    assert decide_open(stay(0, 80), 100, 60) is OpenAction.REOPEN  # 20 s away
    assert decide_open(stay(0, 40), 100, 60) is OpenAction.REOPEN  # exactly the grace
    assert decide_open(stay(0, 39), 100, 60) is OpenAction.NEW


def test_merged_joins_a_short_gap_and_keeps_a_long_absence_apart() -> None:
    t = ts("2026-01-05T15:00:00")
    short = merged([stay(t, t + 3600), stay(t + 3620, t + 7200, n=1)])
    assert [(i.joined_at, i.left_at) for i in short] == [(t, t + 7200)]
    long = merged([stay(t, t + 3600), stay(t + 3900, t + 7200, n=1)])
    assert len(long) == 2
    still_open = merged([stay(t, t + 10), stay(t + 20, None, n=1)])
    assert [(i.joined_at, i.left_at) for i in still_open] == [(t, None)]
    other_session = merged([stay(t, t + 10), stay(t + 20, t + 30, session="ss_b", n=1)])
    assert len(other_session) == 2


def test_daily_and_weekly_totals_with_flags_in_the_program_time_zone() -> None:
    ny = ZoneInfo("America/New_York")
    stays = [
        # Monday 18:00-21:10 New York = 23:00-02:10 UTC: one local day, two UTC days
        stay(ts("2026-01-05T23:00:00"), ts("2026-01-06T02:10:00")),
        # Wednesday: 2 h 30 only
        stay(ts("2026-01-07T23:00:00"), ts("2026-01-08T01:30:00"), n=1),
        # Thursday 3 h, in two stays, one overlapping a stay in another room (counted once)
        stay(ts("2026-01-08T23:00:00"), ts("2026-01-09T01:00:00"), n=2),
        stay(ts("2026-01-09T00:30:00"), ts("2026-01-09T02:00:00"), session="ss_b", n=3),
        stay(ts("2026-01-05T23:00:00"), ts("2026-01-06T00:00:00"), subject="cl_2", n=4),
    ]
    days = daily_totals(stays, now=ts("2026-01-12T00:00:00"), tz=ny)
    table = {(d.subject, d.day): (d.minutes, d.below_three_hours) for d in days}
    assert table == {
        ("cl_1", date(2026, 1, 5)): (190.0, False),
        ("cl_1", date(2026, 1, 7)): (150.0, True),
        ("cl_1", date(2026, 1, 8)): (180.0, False),
        ("cl_2", date(2026, 1, 5)): (60.0, True),
    }
    utc_days = {(d.subject, d.day) for d in daily_totals(stays, now=ts("2026-01-12T00:00:00"))}
    assert ("cl_1", date(2026, 1, 6)) in utc_days  # the same stay split at UTC midnight
    weeks = weekly_totals(days)
    (cl1,) = [w for w in weeks if w.subject == "cl_1"]
    assert (cl1.week_start, cl1.minutes, cl1.days_attended, cl1.qualifying_days) == (
        date(2026, 1, 5),
        520.0,
        3,
        2,
    )
    assert cl1.below_nine_hours and cl1.below_three_qualifying_days


def test_open_interval_counts_until_now_and_hosts_are_left_out_of_totals() -> None:
    t = ts("2026-01-05T15:00:00")
    host = Interval("at_h", ROOM, SESSION, ParticipantId("pt_h"), "us_1", Role.HOST, t)
    days = daily_totals([stay(t, None), host], now=t + 600)
    assert [(d.subject, d.minutes) for d in days] == [("cl_1", 10.0)]


def test_session_roster_lists_everyone_with_join_and_leave_times() -> None:
    t = ts("2026-01-05T15:00:00")
    stays = [stay(t + 60, t + 600), stay(t + 900, None, n=1), stay(t, t + 100, subject="cl_2", n=2)]
    stays.append(stay(t, t + 10, session="ss_other", subject="cl_3", n=3))
    roster = session_roster(stays, SESSION, now=t + 1200)
    assert [line.subject for line in roster] == ["cl_2", "cl_1"]
    cl1 = roster[1]
    assert cl1.first_joined == t + 60 and cl1.last_left is None and cl1.minutes == 14.0
    assert cl1.participant_ids == (ParticipantId("pt_0"), ParticipantId("pt_1"))


# --- the service writes the ledger (memory twin and Redis stores alike) -----------------------------


async def client_stays(backend: Backend, room_id: RoomId) -> list[tuple[float, float | None, str | None]]:
    rows = await backend.attendance.intervals(AttendanceQuery(room_id=room_id, subject="cl_1"))
    return [(r.joined_at, r.left_at, r.close_reason) for r in rows]


async def test_a_20_second_reconnect_is_one_interval(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    g = await live_room(s)
    start = clock()
    pid = await enter(backend, g.room_id, g.host, "cl_1")
    clock.advance(3600)
    await s.mark_reconnecting(g.room_id, pid)  # the socket dropped
    clock.advance(20)
    await s.resume(g.room_id, pid)
    clock.advance(3600)
    # a second drop, this time the client's app restarted: a new knock 20 s later
    await s.leave(g.room_id, pid)
    clock.advance(20)
    await enter(backend, g.room_id, g.host, "cl_1")
    clock.advance(600)
    await s.end(g.room_id, by=g.host)
    assert await client_stays(backend, g.room_id) == [(start, clock(), CloseReason.ENDED)]


async def test_a_five_minute_absence_splits_the_interval(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    g = await live_room(s)
    first_start = clock()
    pid = await enter(backend, g.room_id, g.host, "cl_1")
    clock.advance(3600)
    await s.heartbeat(g.room_id, pid)
    last_heard = clock()
    clock.advance(31)
    await s.heartbeat(g.room_id, g.host)
    await s.sweep()  # silent: reconnecting since the last heartbeat
    clock.advance(60)
    await s.heartbeat(g.room_id, g.host)
    await s.sweep()  # grace over: gone, attendance ends at the last sign of life
    clock.advance(300 - 91)
    second_start = clock()
    await enter(backend, g.room_id, g.host, "cl_1")
    clock.advance(1800)
    again = (await s.room(g.room_id)).active_of("cl_1")
    assert again is not None
    await s.remove(g.room_id, by=g.host, participant_id=again.id)
    assert await client_stays(backend, g.room_id) == [
        (first_start, last_heard, CloseReason.TIMEOUT),
        (second_start, clock(), CloseReason.REMOVED),
    ]
    assert second_start - last_heard == 300


async def test_return_to_lobby_closes_and_a_quick_readmission_continues(backend: Backend) -> None:
    s, clock = backend.service, backend.clock
    g = await live_room(s)
    start = clock()
    pid = await enter(backend, g.room_id, g.host, "cl_1")
    clock.advance(100)
    await s.return_to_lobby(g.room_id, by=g.host, participant_id=pid)
    assert await client_stays(backend, g.room_id) == [(start, clock(), CloseReason.RETURNED)]
    clock.advance(30)
    await s.admit(g.room_id, by=g.host, participant_id=pid)
    await s.join(g.room_id, pid)
    assert await client_stays(backend, g.room_id) == [(start, None, None)]


def test_an_empty_csv_export_still_names_its_columns() -> None:
    from vIOP.rooms.attendance_report import COLUMNS, ReportTable, build_report, to_csv

    for table in ReportTable:
        assert to_csv(build_report([], now=0.0), table) == ",".join(COLUMNS[table]) + "\n"


class FlakyLedger(MemoryAttendanceStore):
    """The ledger port with a database that can be unplugged."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def open(self, mark: OpenMark, grace: float) -> None:
        if self.down:
            raise ConnectionError("database unreachable")
        await super().open(mark, grace)

    async def close(self, mark: CloseMark) -> None:
        if self.down:
            raise ConnectionError("database unreachable")
        await super().close(mark)


async def test_room_changes_survive_a_ledger_outage_and_the_entries_follow_in_order(backend: Backend) -> None:
    ledger = FlakyLedger()
    backend.attendance = ledger
    backend.__post_init__()
    s, clock = backend.service, backend.clock
    g = await live_room(s)
    ledger.down = True
    start = clock()
    pid = await enter(backend, g.room_id, g.host, "cl_1")  # the join itself succeeds
    clock.advance(600)
    await s.leave(g.room_id, pid)
    assert s.pending_attendance == 2 and await client_stays(backend, g.room_id) == []
    ledger.down = False
    await s.flush_attendance()
    assert s.pending_attendance == 0
    assert await client_stays(backend, g.room_id) == [(start, start + 600, CloseReason.LEFT)]
