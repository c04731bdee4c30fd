"""Attendance that bills: hours per program day and week, the 3 h / 9 h flags with the hours missing, the
program's week start, program-time columns, and track titles through the occurrence port."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from vIOP.ids import ParticipantId, RoomId, SessionId
from vIOP.rooms.attendance import (
    BreakoutSpan,
    CloseReason,
    Interval,
    IntervalKind,
    WeekStart,
    daily_totals,
    weekly_totals,
)
from vIOP.rooms.attendance_report import ReportTable, build_report, rows, to_csv
from vIOP.rooms.occurrences import OccurrenceRef
from vIOP.rooms.participant import Role
from vIOP.session.attendance_export import ExportFilters, json_document, occurrences_of

NEW_YORK = ZoneInfo("America/New_York")
EVENING = RoomId("rm_evening")
BY_HAND = RoomId("rm_by_hand")


def local(text: str) -> float:
    """A wall-clock time in New York as a timestamp."""
    return datetime.fromisoformat(text).replace(tzinfo=NEW_YORK).timestamp()


def stay(
    start: float, stop: float | None, *, subject: str = "cl_1", room: RoomId = EVENING, n: int = 0
) -> Interval:
    return Interval(
        id=f"at_{subject}_{n}",
        room_id=room,
        session_id=SessionId(f"ss_{room}_{n}"),
        participant_id=ParticipantId(f"pt_{subject}_{n}"),
        subject=subject,
        role=Role.CLIENT,
        joined_at=start,
        left_at=stop,
        close_reason=None if stop is None else CloseReason.LEFT,
    )


def evening(day: str, n: int, subject: str = "cl_1", until: str = "21:00") -> Interval:
    """The Evening IOP track's 18:00 session on ``day``, attended to ``until`` (New York time)."""
    return stay(local(f"{day}T18:00:00"), local(f"{day}T{until}:00"), subject=subject, n=n)


def report_weeks(stays: list[Interval], week_start: WeekStart = WeekStart.MONDAY) -> dict[str, object]:
    days = daily_totals(stays, now=local("2026-03-31T00:00:00"), tz=NEW_YORK)
    (week,) = weekly_totals(days, week_start)
    return {
        "week": (week.week_start, week.week_end),
        "minutes": week.minutes,
        "flagged": week.below_nine_hours,
        "missing": week.minutes_missing,
        "short_days": [(d.day, d.minutes_missing) for d in days if d.below_three_hours],
    }


def test_three_sessions_of_three_hours_in_a_week_are_not_flagged() -> None:
    # Mon, Wed, Thu 18:00-21:00 in New York (2026-01-05 is a Monday).
    week = report_weeks([evening("2026-01-05", 0), evening("2026-01-07", 1), evening("2026-01-08", 2)])
    assert week == {
        "week": (date(2026, 1, 5), date(2026, 1, 11)),
        "minutes": 540.0,
        "flagged": False,
        "missing": 0.0,
        "short_days": [],
    }


def test_two_sessions_of_three_hours_are_flagged_with_three_hours_missing_by_sunday() -> None:
    week = report_weeks([evening("2026-01-05", 0), evening("2026-01-07", 1)])
    assert week["flagged"] is True and week["minutes"] == 360.0
    assert week["missing"] == 180.0  # "needs 3 h more"
    assert week["week"] == (date(2026, 1, 5), date(2026, 1, 11))  # "... by Sunday"
    assert date(2026, 1, 11).strftime("%A") == "Sunday"
    assert week["short_days"] == []


def test_a_day_under_three_hours_is_flagged_with_the_minutes_it_missed() -> None:
    week = report_weeks(
        [evening("2026-01-05", 0), evening("2026-01-07", 1, until="20:30"), evening("2026-01-08", 2)]
    )
    assert week["short_days"] == [(date(2026, 1, 7), 30.0)]
    assert (week["minutes"], week["missing"], week["flagged"]) == (510.0, 30.0, True)


def test_a_week_spanning_the_spring_dst_change_counts_real_hours_on_local_days() -> None:
    """2026-03-08 (a Sunday) skips 02:00-03:00 in New York: a stay from 00:30 to 04:30 on the clock lasts 3
    real hours; one from Saturday 22:00 to Sunday 00:30 splits at local midnight."""
    stays = [
        evening("2026-03-02", 0),  # Monday, EST: 3 h
        evening("2026-03-04", 1),  # Wednesday, EST: 3 h
        stay(local("2026-03-07T22:00:00"), local("2026-03-08T00:30:00"), n=2),  # 2 h Sat + 0.5 h Sun
        stay(local("2026-03-08T00:30:00"), local("2026-03-08T04:30:00"), n=3),  # 3 real hours, EST to EDT
    ]
    days = daily_totals(stays, now=local("2026-03-31T00:00:00"), tz=NEW_YORK)
    assert [(d.day, d.minutes, d.below_three_hours) for d in days] == [
        (date(2026, 3, 2), 180.0, False),
        (date(2026, 3, 4), 180.0, False),
        (date(2026, 3, 7), 120.0, True),
        (date(2026, 3, 8), 210.0, False),  # 0.5 + 3 real hours (4.5 on the clock)
    ]
    (monday_week,) = weekly_totals(days)
    assert (monday_week.week_start, monday_week.week_end, monday_week.minutes) == (
        date(2026, 3, 2),
        date(2026, 3, 8),
        690.0,
    )
    assert not monday_week.below_nine_hours and monday_week.qualifying_days == 3
    # A program whose weeks run Sunday to Saturday: the DST Sunday opens the next week.
    sunday_weeks = weekly_totals(days, WeekStart.SUNDAY)
    assert [(w.week_start, w.week_end, w.minutes, w.minutes_missing) for w in sunday_weeks] == [
        (date(2026, 3, 1), date(2026, 3, 7), 480.0, 60.0),
        (date(2026, 3, 8), date(2026, 3, 14), 210.0, 330.0),
    ]


def test_a_day_of_the_autumn_change_has_twenty_five_hours() -> None:
    """2026-11-01 repeats 01:00-02:00: a stay from 00:00 to 03:00 on the clock is 4 real hours."""
    days = daily_totals(
        [stay(local("2026-11-01T00:00:00"), local("2026-11-01T03:00:00"))],
        now=local("2026-12-01T00:00:00"),
        tz=NEW_YORK,
    )
    assert [(d.day, d.minutes) for d in days] == [(date(2026, 11, 1), 240.0)]


@pytest.mark.parametrize(
    ("start", "first_day"),
    [
        (WeekStart.MONDAY, date(2026, 1, 5)),
        (WeekStart.WEDNESDAY, date(2026, 1, 7)),
        (WeekStart.SATURDAY, date(2026, 1, 3)),
        (WeekStart.SUNDAY, date(2026, 1, 4)),
    ],
)
def test_week_start_puts_a_wednesday_in_the_right_week(start: WeekStart, first_day: date) -> None:
    assert start.week_of(date(2026, 1, 7)) == first_day
    assert first_day.strftime("%A").lower() == start.value


def test_rows_carry_program_time_kind_track_and_missing_hours() -> None:
    stays = [
        evening("2026-03-09", 0),
        stay(local("2026-03-05T10:00:00"), local("2026-03-05T11:00:00"), room=BY_HAND, n=1),
    ]
    occurrence = OccurrenceRef("tr_evening", "Evening IOP", local("2026-03-09T18:00:00"))
    report = build_report(
        stays, now=local("2026-03-31T00:00:00"), tz="America/New_York", occurrences={EVENING: occurrence}
    )
    by_room = {r["room_id"]: r for r in rows(report, ReportTable.INTERVALS)}
    evening_row, by_hand_row = by_room[EVENING], by_room[BY_HAND]
    assert (evening_row["kind"], evening_row["joined_local"], evening_row["left_local"]) == (
        IntervalKind.ROOM.value,
        "2026-03-09T18:00:00-04:00",  # after the change: EDT
        "2026-03-09T21:00:00-04:00",
    )
    assert (evening_row["track_id"], evening_row["track_title"], evening_row["occurrence_start"]) == (
        "tr_evening",
        "Evening IOP",
        "2026-03-09T18:00:00-04:00",
    )
    assert by_hand_row["joined_local"] == "2026-03-05T10:00:00-05:00"  # before it: EST
    assert (by_hand_row["track_id"], by_hand_row["track_title"], by_hand_row["occurrence_start"]) == (
        None,
    ) * 3
    weeks = {w["week_start"]: w for w in rows(report, ReportTable.WEEKS)}
    assert (weeks["2026-03-09"]["week_end"], weeks["2026-03-09"]["minutes_missing"]) == ("2026-03-15", 360.0)
    days = {d["day"]: d["minutes_missing"] for d in rows(report, ReportTable.DAYS)}
    assert days == {"2026-03-05": 120.0, "2026-03-09": 0.0}
    header = to_csv(report, ReportTable.INTERVALS).splitlines()[0].split(",")
    assert {"kind", "joined_local", "track_id", "track_title", "occurrence_start"} <= set(header)
    filters = ExportFilters(None, None, None, None, NEW_YORK)
    document = json_document(report, filters, {})
    sessions = {s.room_id: s for s in document.sessions}
    assert (sessions[EVENING].track_id, sessions[EVENING].track_title) == ("tr_evening", "Evening IOP")
    assert sessions[EVENING].occurrence_start == "2026-03-09T22:00:00Z"
    assert sessions[BY_HAND].track_title is None
    assert document.week_start is WeekStart.MONDAY


class TrackTable:
    """An occurrence lookup as tracks will provide it (the port, implemented over a dict)."""

    def __init__(self, known: dict[RoomId, OccurrenceRef]) -> None:
        self.known = known
        self.asked: list[RoomId] = []

    async def occurrence_of(self, room_id: RoomId) -> OccurrenceRef | None:
        self.asked.append(room_id)
        return self.known.get(room_id)


async def test_occurrences_are_looked_up_once_per_room() -> None:
    occurrence = OccurrenceRef("tr_evening", "Evening IOP", local("2026-03-09T18:00:00"))
    table = TrackTable({EVENING: occurrence})
    stays = [
        evening("2026-03-09", 0),
        evening("2026-03-09", 1, subject="cl_2"),
        stay(0, 60, room=BY_HAND, n=2),
    ]
    assert await occurrences_of(table, stays) == {EVENING: occurrence}
    assert table.asked == [EVENING, BY_HAND]
    assert await occurrences_of(None, stays) == {}


def test_a_private_breakout_is_shown_as_program_time_inside_the_stay() -> None:
    """Issue 16: breakout intervals appear in the report in the program's time zone, and the stay's minutes
    include them (the client never left the program session)."""
    breakout = BreakoutSpan(local("2026-03-09T18:40"), local("2026-03-09T19:05"), "us_cohost")
    evening = replace(stay(local("2026-03-09T18:00"), local("2026-03-09T21:00")), breakouts=(breakout,))
    report = build_report([evening], now=local("2026-03-10T00:00"), tz="America/New_York")
    (row,) = rows(report, ReportTable.INTERVALS)
    assert row["minutes"] == 180.0
    assert row["breakout_minutes"] == 25.0
    assert row["breakouts_local"] == "2026-03-09T18:40:00-04:00/2026-03-09T19:05:00-04:00"
    assert to_csv(report, ReportTable.INTERVALS).splitlines()[0].endswith(",breakout_minutes,breakouts_local")
    # one still going ends, for the report, where the stay ends (or now)
    open_breakout = replace(evening, breakouts=(BreakoutSpan(local("2026-03-09T20:30"), None, "us_cohost"),))
    (row,) = rows(build_report([open_breakout], now=local("2026-03-10T00:00")), ReportTable.INTERVALS)
    assert row["breakout_minutes"] == 30.0
