"""The attendance export, one use case for both edges: ``GET /api/v1/attendance`` and ``python -m vIOP
attendance export``.

Here: the filters (days in the program's time zone turned into the ledger's query), the report
(:mod:`vIOP.rooms.attendance_report`: intervals, minutes per client per day and week, the flags), the one
JSON document (per-session rosters, the tables, display names where the reader may see them), the CSV text,
and the audit subject of an export. The edges keep what is theirs: HTTP authorizes the caller and the
room, checks break-glass and disclosure consent and writes the response; the CLI parses its arguments,
checks a disclosure's consent and records the operator's audit row.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from vIOP.ids import RoomId
from vIOP.rooms.attendance import (
    DAY_MINUTES_REQUIRED,
    WEEK_MINUTES_REQUIRED,
    Interval,
    WeekStart,
    session_roster,
)
from vIOP.rooms.attendance_report import AttendanceReport, ReportTable, build_report, rows, to_csv
from vIOP.rooms.occurrences import OccurrenceLookup, OccurrenceRef
from vIOP.rooms.participant import Role as ParticipantRole
from vIOP.rooms.ports import AttendanceQuery, AttendanceStore
from vIOP.session.wire_time import IsoTime, iso

MAX_TZ_CHARS: Final = 64
# Days whose local midnights (and the midnight after) exist as timestamps in every time zone.
FIRST_DAY: Final = date(1970, 1, 2)
LAST_DAY: Final = date(9998, 12, 30)


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"
    FHIR = "fhir"  # a FHIR R4 Bundle of Encounters (vIOP.session.attendance_fhir)


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError for an unknown (or absurdly long) name. Each edge words the
    refusal its own way (a 400, a ``--tz`` usage error)."""
    try:
        if len(name) > MAX_TZ_CHARS:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def midnight(day: date, zone: ZoneInfo) -> float:
    """The timestamp of ``day``'s local midnight in ``zone``."""
    return datetime.combine(day, datetime.min.time(), zone).timestamp()


@dataclass(frozen=True, slots=True)
class ExportFilters:
    """What an export covers: one room or client (or all), and days from ``first_day`` to ``last_day``
    (both included) in ``tz``. Each edge validates its own input into this."""

    room_id: str | None
    client: str | None
    first_day: date | None
    last_day: date | None
    tz: ZoneInfo
    week_start: WeekStart = WeekStart.MONDAY

    @property
    def reversed(self) -> bool:
        return self.first_day is not None and self.last_day is not None and self.last_day < self.first_day

    def query(self) -> AttendanceQuery:
        return AttendanceQuery(
            room_id=RoomId(self.room_id) if self.room_id else None,
            subject=self.client,
            start=midnight(self.first_day, self.tz) if self.first_day else None,
            end=midnight(self.last_day + timedelta(days=1), self.tz) if self.last_day else None,
        )


AuditSubject = tuple[str | None, str | None]


def audit_subject(filters: ExportFilters, unfiltered: AuditSubject) -> AuditSubject:
    """The audit row's (object type, object id) for an export: the room it named, else the client, else
    ``unfiltered`` (the edges record an export of everything differently: HTTP ``("room", "all")``, the
    CLI no object; both are pinned by their tests)."""
    if filters.room_id:
        return ("room", filters.room_id)
    if filters.client:
        return ("client", filters.client)
    return unfiltered


async def read_intervals(
    ledger: AttendanceStore, filters: ExportFilters, allowed_rooms: set[str] | None = None
) -> list[Interval]:
    """The ledger's intervals for ``filters``, only in ``allowed_rooms`` unless that is None (every room)."""
    intervals = await ledger.intervals(filters.query())
    return [i for i in intervals if allowed_rooms is None or i.room_id in allowed_rooms]


async def occurrences_of(
    lookup: OccurrenceLookup | None, intervals: list[Interval]
) -> dict[RoomId, OccurrenceRef]:
    """The track occurrence behind each room in ``intervals`` that has one: one lookup per room."""
    if lookup is None:
        return {}
    found: dict[RoomId, OccurrenceRef] = {}
    for room_id in dict.fromkeys(i.room_id for i in intervals):
        occurrence = await lookup.occurrence_of(room_id)
        if occurrence is not None:
            found[room_id] = occurrence
    return found


def report_for(
    intervals: list[Interval],
    filters: ExportFilters,
    now: float,
    occurrences: dict[RoomId, OccurrenceRef] | None = None,
) -> AttendanceReport:
    return build_report(
        intervals, now=now, tz=filters.tz.key, week_start=filters.week_start, occurrences=occurrences
    )


# --- The JSON document -------------------------------------------------------------------------------------


class StayView(msgspec.Struct):
    joined_at: IsoTime
    left_at: IsoTime | None


class RosterLineView(msgspec.Struct):
    subject: str
    role: ParticipantRole
    display_name: str | None
    joined_at: IsoTime
    left_at: IsoTime | None
    minutes: float
    audio_only_minutes: float  # of ``minutes``, those the person received no video (reported separately)
    stays: list[StayView]


class SessionView(msgspec.Struct, kw_only=True):
    room_id: str
    session_id: str
    started_at: IsoTime
    roster: list[RosterLineView]
    # The track occurrence the room was opened for; None for a room made by hand.
    track_id: str | None = None
    track_title: str | None = None
    occurrence_start: IsoTime | None = None


class Thresholds(msgspec.Struct):
    day_minutes: float
    week_minutes: float


class AppliedFilters(msgspec.Struct):
    room_id: str | None
    client: str | None
    first_day: str | None = msgspec.field(name="from")
    last_day: str | None = msgspec.field(name="to")


class AttendanceDocument(msgspec.Struct, kw_only=True):
    """The JSON report; the tables' rows are the CSV's (``rows``), plus the reader's display names."""

    generated_at: IsoTime
    time_zone: str
    week_start: WeekStart  # the first day of each billing week in ``weeks``
    thresholds: Thresholds
    filters: AppliedFilters
    sessions: list[SessionView]
    intervals: list[dict[str, Any]]
    days: list[dict[str, Any]]
    weeks: list[dict[str, Any]]
    redisclosure_notice: str | msgspec.UnsetType = msgspec.UNSET  # only on a disclosure


def _sessions(report: AttendanceReport, names: dict[str, str | None]) -> list[SessionView]:
    by_session: dict[str, list[Interval]] = defaultdict(list)
    for interval in report.intervals:
        by_session[interval.session_id].append(interval)
    sessions = []
    for session_id, stays in by_session.items():
        roster = session_roster(stays, stays[0].session_id, now=report.generated_at)
        occurrence = report.occurrences.get(stays[0].room_id)
        sessions.append(
            SessionView(
                track_id=occurrence.track_id if occurrence else None,
                track_title=occurrence.title if occurrence else None,
                occurrence_start=iso(occurrence.starts_at) if occurrence else None,
                room_id=stays[0].room_id,
                session_id=session_id,
                started_at=iso(min(i.joined_at for i in stays)),
                roster=[
                    RosterLineView(
                        subject=line.subject,
                        role=line.role,
                        display_name=names.get(line.subject),
                        joined_at=iso(line.first_joined),
                        left_at=iso(line.last_left),
                        minutes=line.minutes,
                        audio_only_minutes=line.audio_only_minutes,
                        stays=[StayView(joined_at=iso(a), left_at=iso(b)) for a, b in line.stays],
                    )
                    for line in roster
                ],
            )
        )
    sessions.sort(key=lambda s: (s.started_at, s.session_id))
    return sessions


def json_document(
    report: AttendanceReport,
    filters: ExportFilters,
    names: dict[str, str | None],
    notice: str | None = None,
) -> AttendanceDocument:
    """The one JSON shape of an export; ``names`` are the client display names the reader may see (none for
    an operator's export), ``notice`` the redisclosure notice of a disclosure."""

    def named(table: ReportTable) -> list[dict[str, Any]]:
        return [{**row, "display_name": names.get(row["subject"])} for row in rows(report, table)]

    document = AttendanceDocument(
        generated_at=iso(report.generated_at),
        time_zone=report.time_zone,
        thresholds=Thresholds(day_minutes=DAY_MINUTES_REQUIRED, week_minutes=WEEK_MINUTES_REQUIRED),
        week_start=report.week_start,
        filters=AppliedFilters(
            room_id=filters.room_id,
            client=filters.client,
            first_day=filters.first_day.isoformat() if filters.first_day else None,
            last_day=filters.last_day.isoformat() if filters.last_day else None,
        ),
        sessions=_sessions(report, names),
        intervals=named(ReportTable.INTERVALS),
        days=named(ReportTable.DAYS),
        weeks=named(ReportTable.WEEKS),
    )
    if notice:
        document.redisclosure_notice = notice
    return document


def csv_text(report: AttendanceReport, table: ReportTable, notice: str | None = None) -> str:
    """One table as CSV (ids only, no names); a disclosure's notice goes first as a ``#`` line."""
    return (f"# {notice}\n" if notice else "") + to_csv(report, table)
