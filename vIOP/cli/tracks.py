"""``python -m vIOP tracks create|list|show|end|enroll|unenroll`` (issue 16; docs/PROGRAM.md).

Operators' side of the tracks API, on the configured store, each change audited (actor: the operator,
``role="cli"``). Schedules are checked exactly as over HTTP (``vIOP.program.schedule.validate``): a bad one
is one clear line and exit status 1, nothing stored. A running server's scheduler finds a new track within
30 seconds. ``enroll`` prints the enrollment link once; it is stored nowhere in plaintext.
Exit status: 0 done, 1 refused (bad input, unknown id), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from vIOP.api.http_rooms import check_title
from vIOP.auth.accounts import AccountAdmin
from vIOP.auth.invites import check_display_name
from vIOP.auth.passwords import PasswordHasher
from vIOP.auth.permissions import Role
from vIOP.errors import BadRequest, NotFound, VIOPError
from vIOP.ids import EnrollmentId, TrackId, UserId, new_client_id, new_enrollment_id, new_track_id
from vIOP.program.ports import Enrollment, Track, TrackKind
from vIOP.program.schedule import DEFAULT_LOBBY_MINUTES, Schedule, program_zone, validate
from vIOP.rooms.room import DEFAULT_CAPACITY, RoomKind
from vIOP.session.tracks import ENROLLMENT_PREFIX, new_secret, secret_hash
from vIOP.settings import Settings, load_settings
from vIOP.storage.accounts_sql import SqlAccountStore
from vIOP.storage.audit_outbox import AuditOutbox
from vIOP.storage.bootstrap import Storage, open_storage
from vIOP.storage.invites_sql import SqlInviteStore
from vIOP.storage.tracks_sql import SqlTrackStore

_LOCAL = "%Y-%m-%dT%H:%M"


def add_parsers(sub: Any) -> str:
    tracks = sub.add_parser("tracks", help="recurring tracks and their enrollments (docs/PROGRAM.md)")
    commands = tracks.add_subparsers(dest="tracks_command", required=True)
    create = commands.add_parser("create", help="create a track (its schedule is checked first)")
    create.add_argument("--title", required=True)
    create.add_argument("--time-zone", required=True, help="IANA zone, e.g. America/New_York")
    create.add_argument(
        "--first-start", required=True, help="first session, local wall time YYYY-MM-DDTHH:MM"
    )
    create.add_argument("--rrule", required=True, help="RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=MO,WE,TH")
    create.add_argument("--duration", type=int, required=True, help="minutes")
    create.add_argument("--lobby", type=int, default=DEFAULT_LOBBY_MINUTES, help="minutes before the start")
    create.add_argument("--host", required=True, help="the hosting clinician's username")
    create.add_argument("--cohost", action="append", default=[], help="a co-host's username (repeatable)")
    create.add_argument("--kind", choices=[k.value for k in TrackKind], default=TrackKind.GROUP.value)
    create.add_argument("--skip", action="append", default=[], help="skip this session (local start)")
    commands.add_parser("list", help="every track not ended: id, schedule, next session")
    show = commands.add_parser("show", help="a track's sessions")
    show.add_argument("track_id")
    show.add_argument("--days", type=int, default=14, help="how far ahead (at most 366)")
    end = commands.add_parser("end", help="end a track: no further rooms are made")
    end.add_argument("track_id")
    enroll = commands.add_parser("enroll", help="enroll a new client; prints their one link once")
    enroll.add_argument("track_id")
    enroll.add_argument("--display-name", required=True)
    enroll.add_argument("--days", type=int, default=84, help="how long the enrollment lasts (1-366)")
    unenroll = commands.add_parser("unenroll", help="end an enrollment now")
    unenroll.add_argument("enrollment_id")
    return "tracks"


@asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[tuple[Storage, SqlTrackStore, AccountAdmin]]:
    storage = await open_storage(settings)
    try:
        ring = storage.keys
        admin = AccountAdmin(
            SqlAccountStore(storage.db, ring),
            lambda username: ring.blind_index("username", username),
            PasswordHasher(),
            require_totp=False,
        )
        yield storage, SqlTrackStore(storage.db, ring), admin
    finally:
        await storage.close()


async def _clinician(admin: AccountAdmin, username: str) -> UserId:
    try:
        account = await admin.find(username)
    except (NotFound, BadRequest):
        account = None
    if account is None or account.disabled or account.role is not Role.CLINICIAN:
        raise BadRequest(f"{username!r} is not an active clinician account")
    return UserId(account.id)


def _local(text: str) -> datetime:
    try:
        return datetime.strptime(text, _LOCAL)
    except ValueError:
        raise BadRequest(f"{text!r}: times are local wall times YYYY-MM-DDTHH:MM") from None


async def _audit(storage: Storage, action: str, object_type: str, object_id: str) -> None:
    await AuditOutbox(storage.audit).record_operator(action, object_type, object_id, role="cli")


def _describe(track: Track, now: float) -> str:
    upcoming = track.next_occurrence(now)
    zone = program_zone(track.schedule.time_zone)
    when = upcoming.starts_at.astimezone(zone).strftime(_LOCAL) if upcoming else "-"
    return f"{track.id}  {track.schedule.rrule}  {track.schedule.time_zone}  next {when}  {track.title}"


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    now = time.time()
    async with _opened(settings) as (storage, store, admin):
        command = args.tracks_command
        if command == "create":
            host = await _clinician(admin, args.host)
            cohosts = frozenset([await _clinician(admin, name) for name in args.cohost]) - {host}
            kind = TrackKind(args.kind)
            schedule = Schedule(
                args.time_zone, _local(args.first_start), args.rrule, args.duration, args.lobby,
                skipped=frozenset(_local(t) for t in args.skip),
            )  # fmt: skip
            validate(schedule)
            track = Track(
                id=new_track_id(), title=check_title(args.title), schedule=schedule, kind=kind,
                capacity=DEFAULT_CAPACITY[RoomKind(kind.value)], host_id=host, cohost_ids=cohosts,
                created_by=host, created_at=now,
            )  # fmt: skip
            await store.add_track(track)
            await _audit(storage, "track.created", "track", track.id)
            print(_describe(track, now))
        elif command == "list":
            for track in await store.all_tracks():
                print(_describe(track, now))
        elif command == "show":
            track = await store.get_track(args.track_id)
            if not 1 <= args.days <= 366:
                raise BadRequest("--days must be 1 to 366")
            start = datetime.fromtimestamp(now, UTC)
            found = track.occurrences(start, start + timedelta(days=args.days))
            rooms = await store.rooms_of(track.id, [o.key for o in found])
            zone = program_zone(track.schedule.time_zone)
            print(_describe(track, now))
            for o in found:
                print(f"  {o.starts_at.astimezone(zone).strftime(_LOCAL)}  {o.starts_at.isoformat()}  "
                      f"room {rooms.get(o.key, '-')}")  # fmt: skip
        elif command == "end":
            track = await store.get_track(args.track_id)
            await store.end_track(TrackId(track.id), now)
            await _audit(storage, "track.ended", "track", track.id)
        elif command == "enroll":
            track = await store.get_track(args.track_id)
            if not 1 <= args.days <= 366:
                raise BadRequest("--days must be 1 to 366")
            token = new_secret(ENROLLMENT_PREFIX)
            enrollment = Enrollment(
                id=new_enrollment_id(), track_id=track.id, client_id=new_client_id(), created_by=track.host_id,
                created_at=now, expires_at=now + args.days * 86400,
            )  # fmt: skip
            await store.add_enrollment(enrollment, secret_hash(token), check_display_name(args.display_name))
            await _audit(storage, "enrollment.created", "enrollment", enrollment.id)
            print(f"{enrollment.id}  client {enrollment.client_id}")
            print(f"{settings.origin}/join#enroll={token}")
        elif command == "unenroll":
            ended = await store.get_enrollment(args.enrollment_id)
            if ended is None:
                raise NotFound("no such enrollment")
            await store.revoke_enrollment(EnrollmentId(ended.id), now)
            # its sessions' device credentials go too (a live socket closes at its next ticket or resume)
            await SqlInviteStore(storage.db, storage.keys).revoke_for_client(ended.client_id, now)
            await _audit(storage, "enrollment.revoked", "enrollment", ended.id)
    return 0


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    try:
        return asyncio.run(_run(args, settings or load_settings()))
    except VIOPError as error:
        print(f"vIOP: {error.message}", file=sys.stderr)
        return 1
