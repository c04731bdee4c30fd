"""``GET /api/v1/attendance``: the IOP attendance ledger as JSON or CSV, every export audited.

Admins read every room without client names; clinicians the rooms they host, with names (a filter naming
another room is 403; without one, the report holds their rooms only); staff and clients nothing. The role is
authorized before the query string is even read, so a caller without the permission learns nothing from how
filters are judged. Beyond that: a break-glass grant (``X-Break-Glass``), and disclosures to an outside
``recipient``, which need every client's 42 CFR part 2 consent and carry the redisclosure notice
(``vIOP/api/http_compliance.py``). The export itself (filters, report, JSON document,
CSV) is the use case the CLI calls too (:mod:`vIOP.session.attendance_export`): intervals, minutes per
client per day and per week with the under-3-hours-day and under-9-hours-week flags, per-session rosters
and, for the reader who may see them, client display names; CSV stays ids only, exactly as the CLI exports
it.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Any, Final, TypeVar

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import BEARER_SECURITY, Caller, authenticate, refusals, require_account
from vIOP.api.http_compliance import BREAK_GLASS_HEADER, AttendanceAccess, attendance_access
from vIOP.api.openapi import Operation, Param, Reply, documented_route, struct_response
from vIOP.auth.permissions import Action, Grant, authorize
from vIOP.errors import BadRequest, NotFound, Unavailable
from vIOP.ids import ClientId, UserId
from vIOP.rooms.attendance import Interval, WeekStart
from vIOP.rooms.attendance_report import ReportTable
from vIOP.rooms.participant import Role as ParticipantRole
from vIOP.session.attendance_export import (
    FIRST_DAY,
    LAST_DAY,
    AttendanceDocument,
    ExportFilters,
    Format,
    audit_subject,
    csv_text,
    json_document,
    occurrences_of,
    read_intervals,
    report_for,
    time_zone,
)
from vIOP.session.attendance_fhir import MEDIA_TYPE as FHIR_MEDIA_TYPE
from vIOP.session.attendance_fhir import fhir_json
from vIOP.storage.audit import AuditEvent
from vIOP.storage.sealing import DecryptionError

_DAY: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CLIENT: Final = re.compile(r"^cl_[A-Za-z0-9_-]{1,64}$")
E = TypeVar("E", bound=StrEnum)
# An export of everything is audited against this object (the CLI's names none).
ALL_ROOMS: Final = ("room", "all")


class Filters:
    """The query string, validated (400 for anything malformed, naming the parameter, never its value)."""

    __slots__ = ("export", "format", "table")

    def __init__(self, params: QueryParams) -> None:
        room_id = params.get("room_id") or None
        client = params.get("client") or None
        if client is not None and not _CLIENT.match(client):
            raise BadRequest("client must be a client id (cl_...)")
        self.format = _choice(params.get("format", Format.JSON.value), Format, "format")
        self.table = _choice(params.get("table", ReportTable.DAYS.value), ReportTable, "table")
        try:
            tz = time_zone(params.get("tz", "UTC"))
        except ValueError:
            raise BadRequest("tz must be an IANA time zone such as America/Chicago") from None
        week_start = _choice(params.get("week_start", WeekStart.MONDAY.value), WeekStart, "week_start")
        first_day = _day(params.get("from"), "from")
        last_day = _day(params.get("to"), "to")
        self.export = ExportFilters(room_id, client, first_day, last_day, tz, week_start)
        if self.export.reversed:
            raise BadRequest("to is before from")

    @property
    def room_id(self) -> str | None:
        return self.export.room_id


def _choice(raw: str, enum: type[E], name: str) -> E:
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise BadRequest(f"{name} must be one of: {allowed}") from None


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
    intervals = await read_intervals(ledger, filters.export, allowed)
    await access.check_disclosure(intervals)  # 42 CFR part 2: refused without every client's consent
    occurrences = await occurrences_of(services.occurrences, intervals)
    report = report_for(intervals, filters.export, services.rooms.clock(), occurrences)
    await caller.audit(AuditEvent.ATTENDANCE_EXPORTED, *audit_subject(filters.export, ALL_ROOMS))
    notice = access.notice
    if filters.format is Format.FHIR:
        # Ids only; a track's title rides along where the reader may see names (the JSON's rule). A
        # disclosure is labelled in the Bundle (meta.security) and its notice sent as a header too.
        body = fhir_json(report, titles=access.identified, disclosure=notice is not None)
        headers = {"X-Redisclosure-Notice": notice} if notice else None
        return Response(body, media_type=FHIR_MEDIA_TYPE, headers=headers)
    if filters.format is Format.CSV:
        return Response(
            csv_text(report, filters.table, notice),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="attendance-{filters.table.value}.csv"'},
        )
    names = await _display_names(caller, intervals) if access.identified else {}
    return struct_response(json_document(report, filters.export, names, notice))


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
    _query(
        "format",
        {"type": "string", "enum": [f.value for f in Format], "default": "json"},
        "json, csv, or fhir (a FHIR R4 Bundle of Encounter resources, one per client per session)",
    ),
    _query(
        "table",
        {"type": "string", "enum": [t.value for t in ReportTable], "default": "days"},
        "which table a CSV holds",
    ),
    _query("tz", {"type": "string", "default": "UTC"}, "the program's IANA time zone for days and weeks"),
    _query(
        "week_start",
        {"type": "string", "enum": [w.value for w in WeekStart], "default": WeekStart.MONDAY.value},
        "the first day of each billing week",
    ),
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
                        "The report (JSON), one of its tables (CSV), or FHIR R4 Encounters (a Bundle)",
                        AttendanceDocument,
                        alternatives={"text/csv": str, FHIR_MEDIA_TYPE: dict[str, Any]},
                    ),
                    **refusals(400, 401, 403, 404),
                },
            ),
        ),
    ]
