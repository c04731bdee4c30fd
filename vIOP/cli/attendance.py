"""``python -m vIOP attendance export``: the attendance ledger as JSON or CSV, audited.

Wiring for ``vIOP/cli/main.py``: ``(attendance, "add_parsers", "run")`` in ``_GROUPS`` (or
``add_attendance_parser`` / ``run_attendance``). Exit status: 0 written, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any, Final

import msgspec

from vIOP.compliance.consent import REDISCLOSURE_NOTICE, ConsentRequired, DataCategory, check_text
from vIOP.errors import ConfigError
from vIOP.rooms.attendance import Interval, WeekStart
from vIOP.rooms.attendance_report import ReportTable
from vIOP.rooms.participant import Role
from vIOP.session.attendance_export import (
    FIRST_DAY,
    LAST_DAY,
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
from vIOP.session.attendance_fhir import fhir_json
from vIOP.session.tracks import TrackOccurrences
from vIOP.settings import Settings, load_settings
from vIOP.storage.attendance_sql import SqlAttendanceStore
from vIOP.storage.audit import AuditEvent, Outcome
from vIOP.storage.audit_outbox import AuditOutbox
from vIOP.storage.bootstrap import Storage, open_storage
from vIOP.storage.consents_sql import SqlConsentStore, require_consent
from vIOP.storage.tracks_sql import SqlTrackStore

Subparsers = Any  # argparse's _SubParsersAction is private
# An operator's export of everything names no object in its audit row (HTTP's names ("room", "all")).
NO_OBJECT: Final = (None, None)


def day_argument(raw: str) -> date:
    """A day as YYYY-MM-DD, within the days every time zone can turn into timestamps (as over HTTP: a day
    past them overflowed into a traceback)."""
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a day as YYYY-MM-DD") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise argparse.ArgumentTypeError(
            f"must be a day from {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}"
        )
    return day


def add_attendance_parser(sub: Subparsers) -> str:
    attendance = sub.add_parser("attendance", help="the IOP attendance ledger")
    attendance_sub = attendance.add_subparsers(dest="attendance_command", required=True)
    export = attendance_sub.add_parser(
        "export", help="attended minutes per client per day and week, flags under 3 h/day and 9 h/week"
    )
    export.add_argument("--room-id", help="only this room")
    export.add_argument("--client", help="only this client id")
    export.add_argument("--from", dest="start", type=day_argument, help="first day, YYYY-MM-DD")
    export.add_argument("--to", dest="end", type=day_argument, help="last day (included), YYYY-MM-DD")
    export.add_argument(
        "--format",
        choices=[f.value for f in Format],
        default=Format.JSON.value,
        help="json, csv, or fhir (a FHIR R4 Bundle of Encounters, one per client per session; ids only)",
    )
    export.add_argument(
        "--table", choices=[t.value for t in ReportTable], default="days", help="which table a CSV holds"
    )
    export.add_argument("--tz", default="UTC", help="the program's time zone for days and weeks")
    export.add_argument(
        "--week-start",
        choices=[w.value for w in WeekStart],
        default=WeekStart.MONDAY.value,
        help="the first day of each billing week",
    )
    export.add_argument("--output", type=Path, help="write here (mode 0600) instead of standard output")
    export.add_argument(
        "--recipient",
        help="a disclosure to this outside recipient: every client in it needs a 42 CFR part 2 consent",
    )
    return "attendance"


def export_filters(args: argparse.Namespace) -> ExportFilters:
    try:
        tz = time_zone(args.tz)
    except ValueError:
        raise ConfigError("--tz", f"unknown time zone {args.tz!r}") from None
    filters = ExportFilters(args.room_id, args.client, args.start, args.end, tz, WeekStart(args.week_start))
    if filters.reversed:
        raise ConfigError("--to", "is before --from")
    return filters


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


async def disclose(storage: Storage, intervals: list[Interval], recipient: str | None) -> str | None:
    """For an export to an outside ``recipient``: every client's consent or ConsentRequired (nothing is
    written), each disclosure audited; returns the redisclosure notice the export must carry."""
    if recipient is None:
        return None
    clients = [i.subject for i in intervals if i.role is Role.CLIENT]
    store = SqlConsentStore(storage.db, storage.keys)
    try:
        await require_consent(
            store, clients, check_text(recipient, "--recipient"), DataCategory.ATTENDANCE, time.time()
        )
    except ConsentRequired:
        await AuditOutbox(storage.audit).record_operator("part2.disclosed", "client", None, Outcome.DENIED)
        raise
    outbox = AuditOutbox(storage.audit)
    for client in dict.fromkeys(clients):
        await outbox.record_operator("part2.disclosed", "client", client)
    return REDISCLOSURE_NOTICE


def run_attendance(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or load_settings()
    filters = export_filters(args)

    async def export() -> int:
        storage = await open_storage(settings)
        try:
            intervals = await read_intervals(SqlAttendanceStore(storage.db), filters)
            notice = await disclose(storage, intervals, args.recipient)  # 42 CFR part 2: consent or refusal
            # A room opened for a track's occurrence reports the track's id, title and scheduled start.
            lookup = TrackOccurrences(SqlTrackStore(storage.db, storage.keys))
            occurrences = await occurrences_of(lookup, intervals)
            report = report_for(intervals, filters, now=time.time(), occurrences=occurrences)
            if args.format == Format.FHIR:
                # The operator's export is ids only: the track appears by id, without its title.
                text = fhir_json(report, titles=False, disclosure=notice is not None)
            elif args.format == Format.JSON:
                # The operator's export carries no display names (ids only, as in the CSV).
                document = json_document(report, filters, {}, notice)
                text = msgspec.json.format(msgspec.json.encode(document), indent=2).decode()
                text = f"# {notice}\n{text}" if notice else text
            else:
                text = csv_text(report, ReportTable(args.table), notice)
            if args.output:
                _write_private(args.output, text)
            else:
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
            subject = audit_subject(filters, NO_OBJECT)
            await AuditOutbox(storage.audit).record_operator(AuditEvent.ATTENDANCE_EXPORTED, *subject)
            return 0
        finally:
            await storage.close()

    return asyncio.run(export())


def add_parsers(sub: Subparsers) -> list[str]:
    return [add_attendance_parser(sub)]


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    return run_attendance(args, settings)
