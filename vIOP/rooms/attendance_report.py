"""Attendance exports as JSON or CSV, shared by the HTTP API and ``python -m vIOP attendance export``.

Ids only: client and clinician ids, room and session ids; no names (the caller may add them from the
encrypted records if the reader is allowed to see them). The one text beyond ids is a track's title, for a
room opened as a track occurrence. Times are ISO 8601 UTC, and again as program time (``*_local``: the
program's time zone, with its offset); days and weeks are calendar days in the program's time zone, weeks
starting on the program's week start (Monday by default). Each flagged day and week says how many minutes
it is short of 3 h (a day) or 9 h (a week, due by ``week_end``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from vIOP.ids import RoomId
from vIOP.rooms.attendance import (
    DayTotal,
    Interval,
    WeekStart,
    WeekTotal,
    daily_totals,
    weekly_totals,
)
from vIOP.rooms.occurrences import OccurrenceRef


class ReportTable(StrEnum):
    INTERVALS = "intervals"
    DAYS = "days"
    WEEKS = "weeks"


COLUMNS: dict[ReportTable, tuple[str, ...]] = {
    ReportTable.INTERVALS: (
        "room_id",
        "session_id",
        "subject",
        "role",
        "participant_id",
        "joined_at",
        "left_at",
        "minutes",
        "close_reason",
        "audio_only_minutes",
        "kind",
        "joined_local",
        "left_local",
        "track_id",
        "track_title",
        "occurrence_start",
        "breakout_minutes",
        "breakouts_local",
    ),
    ReportTable.DAYS: ("subject", "day", "minutes", "under_3_hours", "audio_only_minutes", "minutes_missing"),
    ReportTable.WEEKS: (
        "subject",
        "week_start",
        "minutes",
        "days_attended",
        "days_with_3_hours",
        "under_9_hours",
        "under_3_qualifying_days",
        "audio_only_minutes",
        "week_end",
        "minutes_missing",
    ),
}


@dataclass(frozen=True, slots=True)
class AttendanceReport:
    intervals: tuple[Interval, ...]
    days: tuple[DayTotal, ...]
    weeks: tuple[WeekTotal, ...]
    time_zone: str
    generated_at: float
    week_start: WeekStart = WeekStart.MONDAY
    # The track occurrence behind each room that has one (rooms made by hand have none).
    occurrences: Mapping[RoomId, OccurrenceRef] = field(default_factory=dict)

    def local(self, ts: float | None) -> str | None:
        """``ts`` as program time: ISO 8601 in the program's time zone, with its offset."""
        return None if ts is None else datetime.fromtimestamp(ts, ZoneInfo(self.time_zone)).isoformat()


def build_report(
    intervals: Sequence[Interval],
    *,
    now: float,
    tz: str = "UTC",
    week_start: WeekStart = WeekStart.MONDAY,
    occurrences: Mapping[RoomId, OccurrenceRef] | None = None,
) -> AttendanceReport:
    days = daily_totals(intervals, now=now, tz=ZoneInfo(tz))
    weeks = weekly_totals(days, week_start)
    return AttendanceReport(
        tuple(intervals), tuple(days), tuple(weeks), tz, now, week_start, dict(occurrences or {})
    )


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _interval_row(report: AttendanceReport, i: Interval) -> dict[str, Any]:
    occurrence = report.occurrences.get(i.room_id)
    return {
        "room_id": i.room_id,
        "session_id": i.session_id,
        "subject": i.subject,
        "role": i.role.value,
        "participant_id": i.participant_id,
        "joined_at": _iso(i.joined_at),
        "left_at": _iso(i.left_at),
        "minutes": round((i.end(report.generated_at) - i.joined_at) / 60.0, 2),
        "close_reason": None if i.close_reason is None else i.close_reason.value,
        "audio_only_minutes": round(i.audio_only_seconds(report.generated_at) / 60.0, 2),
        "kind": i.kind.value,
        "joined_local": report.local(i.joined_at),
        "left_local": report.local(i.left_at),
        "track_id": occurrence.track_id if occurrence else None,
        "track_title": occurrence.title if occurrence else None,
        "occurrence_start": report.local(occurrence.starts_at) if occurrence else None,
        # Private breakouts (issue 15) are program time inside the stay: shown, and counted in its minutes.
        "breakout_minutes": round(i.breakout_seconds(report.generated_at) / 60.0, 2),
        "breakouts_local": " ".join(
            f"{report.local(start)}/{report.local(stop)}"
            for start, stop in i.breakout_spans(report.generated_at)
        ),
    }


def rows(report: AttendanceReport, table: ReportTable) -> list[dict[str, Any]]:
    if table is ReportTable.INTERVALS:
        return [_interval_row(report, i) for i in report.intervals]
    if table is ReportTable.DAYS:
        return [
            {
                "subject": d.subject,
                "day": d.day.isoformat(),
                "minutes": d.minutes,
                "under_3_hours": d.below_three_hours,
                "audio_only_minutes": d.audio_only_minutes,
                "minutes_missing": d.minutes_missing,
            }
            for d in report.days
        ]
    return [
        {
            "subject": w.subject,
            "week_start": w.week_start.isoformat(),
            "minutes": w.minutes,
            "days_attended": w.days_attended,
            "days_with_3_hours": w.qualifying_days,
            "under_9_hours": w.below_nine_hours,
            "under_3_qualifying_days": w.below_three_qualifying_days,
            "audio_only_minutes": w.audio_only_minutes,
            "week_end": w.week_end.isoformat(),
            "minutes_missing": w.minutes_missing,
        }
        for w in report.weeks
    ]


def to_csv(report: AttendanceReport, table: ReportTable = ReportTable.DAYS) -> str:
    out = io.StringIO()
    lines = rows(report, table)
    writer = csv.DictWriter(out, fieldnames=COLUMNS[table], lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    return out.getvalue()
