"""``GET /api/v1/attendance``: the IOP attendance ledger as JSON or CSV, every export audited.

Admins read every room without client names; clinicians the rooms they host, with names (a filter naming
another room is 403; without one, the report holds their rooms only); staff and clients nothing. The role is
authorized before the query string is even read, so a caller without the permission learns nothing from how
filters are judged. Beyond that: a break-glass grant (``X-Break-Glass``), and disclosures to an outside
``recipient``, which need every client's 42 CFR part 2 consent and carry the redisclosure notice
(``vIOP/api/http_compliance.py``). The report itself is the one the CLI writes
(:mod:`vIOP.rooms.attendance_report`): intervals, minutes per client per day and per week with the
under-3-hours-day and under-9-hours-week flags. JSON adds per-session rosters and, for the reader who may
see them, client display names; CSV stays ids only, exactly as the CLI exports it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import BEARER_SECURITY, Caller, authenticate, iso, refusals, require_account
from vIOP.api.http_compliance import BREAK_GLASS_HEADER, AttendanceAccess, attendance_access
from vIOP.api.openapi import IsoTime, Operation, Param, Reply, documented_route, struct_response
from vIOP.auth.permissions import Action, Grant, authorize
from vIOP.errors import BadRequest, NotFound, Unavailable
from vIOP.ids import ClientId, RoomId, UserId
from vIOP.rooms.attendance import DAY_MINUTES_REQUIRED, WEEK_MINUTES_REQUIRED, Interval, session_roster
from vIOP.rooms.attendance_report import AttendanceReport, ReportTable, build_report, rows, to_csv
from vIOP.rooms.participant import Role as ParticipantRole
from vIOP.rooms.ports import AttendanceQuery
from vIOP.storage.audit import AuditEvent
from vIOP.storage.sealing import DecryptionError

_DAY: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CLIENT: Final = re.compile(r"^cl_[A-Za-z0-9_-]{1,64}$")
MAX_TZ_CHARS: Final = 64
# Days whose local midnights (and the midnight after) exist as timestamps in every time zone.
FIRST_DAY: Final = date(1970, 1, 2)
LAST_DAY: Final = date(9998, 12, 30)

E = TypeVar("E", bound=StrEnum)


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"


class Filters:
    """The query string, validated (400 for anything malformed, naming the parameter, never its value)."""

    __slots__ = ("client", "end", "first_day", "format", "last_day", "room_id", "start", "table", "tz")

    def __init__(self, params: QueryParams) -> None:
        self.room_id = params.get("room_id") or None
        self.client = params.get("client") or None
        if self.client is not None and not _CLIENT.match(self.client):
            raise BadRequest("client must be a client id (cl_...)")
        self.format = _choice(params.get("format", Format.JSON.value), Format, "format")
        self.table = _choice(params.get("table", ReportTable.DAYS.value), ReportTable, "table")
        tz_name = params.get("tz", "UTC")
        self.tz = _zone(tz_name)
        self.first_day = _day(params.get("from"), "from")
        self.last_day = _day(params.get("to"), "to")
        if self.first_day and self.last_day and self.last_day < self.first_day:
            raise BadRequest("to is before from")
        self.start = _midnight(self.first_day, self.tz) if self.first_day else None
        self.end = _midnight(self.last_day + timedelta(days=1), self.tz) if self.last_day else None


def _choice(raw: str, enum: type[E], name: str) -> E:
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise BadRequest(f"{name} must be one of: {allowed}") from None


def _zone(name: str) -> ZoneInfo:
    try:
        if len(name) > MAX_TZ_CHARS:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest("tz must be an IANA time zone such as America/Chicago") from None


def _day(raw: str | None, name: str) -> date | None:
    if raw is None or raw == "":
        return None
    try:
        if not _DAY.match(raw):
            raise ValueError(raw)
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a day as YYYY-MM-DD") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BadRequest(f"{name} must be a day from {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}")
    return day


def _midnight(day: date, zone: ZoneInfo) -> float:
    return datetime.combine(day, datetime.min.time(), zone).timestamp()


async def _allowed_rooms(caller: Caller, filters: Filters, access: AttendanceAccess) -> set[str] | None:
    """The rooms the report may cover: None for every room (admins), else the caller's own (or the room of
    a break-glass grant the caller presented)."""
    directory = caller.services.room_directory
    if filters.room_id is not None:
        record = await directory.get(filters.room_id)  # 404 before 403
        access.authorize_room(record.scope)
        return {record.id}
    if authorize(caller.principal, Action.VIEW_ATTENDANCE) is Grant.ALL:
        return None
    hosted = await directory.hosted_by(UserId(caller.principal.subject), include_ended=True)
    return {record.id for record in hosted}


async def _display_names(caller: Caller, intervals: list[Interval]) -> dict[str, str | None]:
    """Client display names for the JSON report; a crypto-shredded client has none any more."""
    names: dict[str, str | None] = {}
    for subject in dict.fromkeys(i.subject for i in intervals if i.role is ParticipantRole.CLIENT):
        try:
            names[subject] = await caller.services.invites.client_display_name(ClientId(subject))
        except (NotFound, DecryptionError):
            names[subject] = None
    return names


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
    stays: list[StayView]


class SessionView(msgspec.Struct):
    room_id: str
    session_id: str
    started_at: IsoTime
    roster: list[RosterLineView]


class Thresholds(msgspec.Struct):
    day_minutes: float
    week_minutes: float


class AppliedFilters(msgspec.Struct):
    room_id: str | None
    client: str | None
    first_day: str | None = msgspec.field(name="from")
    last_day: str | None = msgspec.field(name="to")


class AttendanceDocument(msgspec.Struct, kw_only=True):
    """The JSON report; the tables' rows are the CLI's (``rows``), plus the reader's display names."""

    generated_at: IsoTime
    time_zone: str
    thresholds: Thresholds
    filters: AppliedFilters
    sessions: list[SessionView]
    intervals: list[dict[str, Any]]
    days: list[dict[str, Any]]
    weeks: list[dict[str, Any]]
    redisclosure_notice: str | msgspec.UnsetType = msgspec.UNSET  # only on a disclosure


def _sessions(intervals: list[Interval], names: dict[str, str | None], now: float) -> list[SessionView]:
    by_session: dict[str, list[Interval]] = defaultdict(list)
    for interval in intervals:
        by_session[interval.session_id].append(interval)
    sessions = []
    for session_id, stays in by_session.items():
        roster = session_roster(stays, stays[0].session_id, now=now)
        sessions.append(
            SessionView(
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
                        stays=[StayView(joined_at=iso(a), left_at=iso(b)) for a, b in line.stays],
                    )
                    for line in roster
                ],
            )
        )
    sessions.sort(key=lambda s: (s.started_at, s.session_id))
    return sessions


def json_document(
    report: AttendanceReport, filters: Filters, names: dict[str, str | None]
) -> AttendanceDocument:
    def named(table: ReportTable) -> list[dict[str, Any]]:
        return [{**row, "display_name": names.get(row["subject"])} for row in rows(report, table)]

    return AttendanceDocument(
        generated_at=iso(report.generated_at),
        time_zone=report.time_zone,
        thresholds=Thresholds(day_minutes=DAY_MINUTES_REQUIRED, week_minutes=WEEK_MINUTES_REQUIRED),
        filters=AppliedFilters(
            room_id=filters.room_id,
            client=filters.client,
            first_day=filters.first_day.isoformat() if filters.first_day else None,
            last_day=filters.last_day.isoformat() if filters.last_day else None,
        ),
        sessions=_sessions(list(report.intervals), names, report.generated_at),
        intervals=named(ReportTable.INTERVALS),
        days=named(ReportTable.DAYS),
        weeks=named(ReportTable.WEEKS),
    )


async def attendance(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    authorize(caller.principal, Action.VIEW_ATTENDANCE)  # the role first; the room scope once it is named
    filters = Filters(request.query_params)
    access = await attendance_access(caller, request, filters.room_id)  # break-glass, disclosure recipient
    allowed = await _allowed_rooms(caller, filters, access)
    services = caller.services
    ledger = services.rooms.attendance
    if ledger is None:
        raise Unavailable("the attendance ledger is not configured on this server")
    query = AttendanceQuery(
        room_id=RoomId(filters.room_id) if filters.room_id else None,
        subject=filters.client,
        start=filters.start,
        end=filters.end,
    )
    intervals = [i for i in await ledger.intervals(query) if allowed is None or i.room_id in allowed]
    await access.check_disclosure(intervals)  # 42 CFR part 2: refused without every client's consent
    report = build_report(intervals, now=services.rooms.clock(), tz=filters.tz.key)
    if filters.room_id is not None:
        audited = ("room", filters.room_id)
    elif filters.client is not None:
        audited = ("client", filters.client)
    else:
        audited = ("room", "all")
    await caller.audit(AuditEvent.ATTENDANCE_EXPORTED, *audited)
    notice = access.notice
    if filters.format is Format.CSV:
        return Response(
            (f"# {notice}\n" if notice else "") + to_csv(report, filters.table),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="attendance-{filters.table.value}.csv"'},
        )
    names = await _display_names(caller, intervals) if access.identified else {}
    document = json_document(report, filters, names)
    if notice:
        document.redisclosure_notice = notice
    return struct_response(document)


# --- OpenAPI ----------------------------------------------------------------------------------------------


def _query(name: str, schema: dict[str, Any], description: str) -> Param:
    # The query string is parsed by ``Filters``, not decoded into a Struct: its schemas are written out.
    return Param(name, "query", schema, description)


def _or_empty(schema: dict[str, Any]) -> dict[str, Any]:
    """An empty value means "no filter" (``?to=`` is what a cleared form field sends)."""
    return {"anyOf": [schema, {"type": "string", "maxLength": 0}]}


_PARAMETERS: Final = [
    _query("room_id", {"type": "string"}, "only this room"),
    _query("client", _or_empty({"type": "string", "pattern": _CLIENT.pattern}), "only this client id"),
    _query("from", _or_empty({"type": "string", "format": "date"}), "first day (YYYY-MM-DD, in tz)"),
    _query("to", _or_empty({"type": "string", "format": "date"}), "last day, included"),
    _query("format", {"type": "string", "enum": [f.value for f in Format], "default": "json"}, "json or csv"),
    _query(
        "table",
        {"type": "string", "enum": [t.value for t in ReportTable], "default": "days"},
        "which table a CSV holds",
    ),
    _query("tz", {"type": "string", "default": "UTC"}, "the program's IANA time zone for days and weeks"),
    _query(
        "recipient",
        {"type": "string", "minLength": 1, "maxLength": 200},
        "a disclosure: the outside recipient; every client in the report must have consented (42 CFR part 2)",
    ),
    BREAK_GLASS_HEADER,
]


def routes() -> list[BaseRoute]:
    return [
        documented_route(
            "/api/v1/attendance",
            attendance,
            ["GET"],
            Operation(
                summary="Attendance: per-session rosters, minutes per client per day and week, flags",
                operation_id="attendance",
                security=BEARER_SECURITY,
                parameters=_PARAMETERS,
                responses={
                    200: Reply(
                        "The report (JSON), or one of its tables (CSV)",
                        AttendanceDocument,
                        alternatives={"text/csv": str},
                    ),
                    **refusals(400, 401, 403, 404),
                },
            ),
        ),
    ]
