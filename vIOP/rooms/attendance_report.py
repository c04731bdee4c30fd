"""Attendance exports as JSON or CSV, shared by the HTTP API and ``python -m vIOP attendance export``.

Ids only: client and clinician ids, room and session ids; no names (the caller may add them from the
encrypted records if the reader is allowed to see them). Times are ISO 8601 UTC; days and weeks are
calendar days in the program's time zone.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from vIOP.rooms.attendance import (
    DayTotal,
    Interval,
    WeekTotal,
    daily_totals,
    weekly_totals,
)


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
    ),
    ReportTable.DAYS: ("subject", "day", "minutes", "under_3_hours", "audio_only_minutes"),
    ReportTable.WEEKS: (
        "subject",
        "week_start",
        "minutes",
        "days_attended",
        "days_with_3_hours",
        "under_9_hours",
        "under_3_qualifying_days",
        "audio_only_minutes",
    ),
}


@dataclass(frozen=True, slots=True)
class AttendanceReport:
    intervals: tuple[Interval, ...]
    days: tuple[DayTotal, ...]
    weeks: tuple[WeekTotal, ...]
    time_zone: str
    generated_at: float


def build_report(intervals: Sequence[Interval], *, now: float, tz: str = "UTC") -> AttendanceReport:
    days = daily_totals(intervals, now=now, tz=ZoneInfo(tz))
    return AttendanceReport(tuple(intervals), tuple(days), tuple(weekly_totals(days)), tz, now)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def rows(report: AttendanceReport, table: ReportTable) -> list[dict[str, Any]]:
    if table is ReportTable.INTERVALS:
        return [
            {
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
            }
            for i in report.intervals
        ]
    if table is ReportTable.DAYS:
        return [
            {
                "subject": d.subject,
                "day": d.day.isoformat(),
                "minutes": d.minutes,
                "under_3_hours": d.below_three_hours,
                "audio_only_minutes": d.audio_only_minutes,
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
