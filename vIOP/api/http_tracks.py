"""Tracks, enrollments and calendar feeds over HTTP (issue 16; docs/PROGRAM.md, docs/API.md "Tracks").

Clinicians (and admins, naming the host) create tracks; a track's clinicians manage it and enroll clients;
staff read schedules. An enrollment link (``venr_...``, in the join URL's fragment) is the client's one
credential for every occurrence: ``/enrollments/next`` tells when the next session is, ``/enrollments/knock``
trades it, while a lobby is open, for that occurrence's device credential (the invite flow from there on).
Calendar feeds are secret ``.ics`` URLs (``/calendar/vcal_....ics``), revocable.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

import icalendar
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from vIOP.api.auth_context import (
    BEARER_SECURITY,
    Caller,
    authenticate,
    client_address,
    iso,
    read_json,
    refusals,
    require_account,
    require_role,
)
from vIOP.api.context import services_of
from vIOP.api.http_rooms import check_title, public_origin
from vIOP.api.openapi import IsoTime, Operation, Param, Reply, documented_route, path_param, struct_response
from vIOP.auth.invites import check_display_name
from vIOP.auth.permissions import Action, Grant, Role, RoomScope, authorize, grant_for
from vIOP.errors import BadRequest, Forbidden, NotFound
from vIOP.ids import (
    CalendarFeedId,
    RoomId,
    UserId,
    new_calendar_feed_id,
    new_client_id,
    new_enrollment_id,
    new_track_id,
)
from vIOP.program.ports import CalendarFeed, Enrollment, FeedOwner, Track, TrackKind
from vIOP.program.schedule import (
    DEFAULT_LOBBY_MINUTES,
    MAX_WINDOW,
    Occurrence,
    Schedule,
    TooManyOccurrences,
    program_zone,
)
from vIOP.rooms.limits import MAX_DISPLAY_NAME_CHARS, MAX_ROOM_CAPACITY, MAX_ROOM_TITLE_CHARS
from vIOP.rooms.room import DEFAULT_CAPACITY, RoomKind
from vIOP.session.revocation import revoke_invite_sessions
from vIOP.session.services import Services
from vIOP.session.tracks import (
    ENROLLMENT_PREFIX,
    FEED_PREFIX,
    LinkPhase,
    change_exceptions,
    create_track,
    knock_with_enrollment,
    link_state,
    looks_like,
    new_secret,
    secret_hash,
    track_scope,
)
from vIOP.storage.audit import AuditEvent, Outcome

# Audit actions (ids only).
TRACK_CREATED: Final = AuditEvent.TRACK_CREATED
TRACK_CHANGED: Final = AuditEvent.TRACK_CHANGED
TRACK_ENDED: Final = AuditEvent.TRACK_ENDED
TRACK_VIEWED: Final = AuditEvent.TRACK_VIEWED
ENROLLMENT_CREATED: Final = AuditEvent.ENROLLMENT_CREATED
ENROLLMENT_REVOKED: Final = AuditEvent.ENROLLMENT_REVOKED
ENROLLMENT_KNOCKED: Final = AuditEvent.ENROLLMENT_KNOCKED
FEED_CREATED: Final = AuditEvent.CALENDAR_FEED_CREATED
FEED_REVOKED: Final = AuditEvent.CALENDAR_FEED_REVOKED

MAX_COHOSTS: Final = 7  # a room has at most 8 hosts
DEFAULT_ENROLLMENT_DAYS: Final = 12 * 7  # the long end of an IOP
MAX_ENROLLMENT_DAYS: Final = 366
UPCOMING_DAYS: Final = 7
UPCOMING_MAX: Final = 20
FEED_PAST: Final = timedelta(days=14)
FEED_AHEAD: Final = timedelta(days=120)
_LOCAL: Final = "%Y-%m-%dT%H:%M"

LocalTime = Annotated[
    str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$", description="wall time, program zone")
]


class Move(msgspec.Struct, forbid_unknown_fields=True):
    occurrence: LocalTime  # the occurrence's original start
    to: LocalTime


class CreateTrackBody(msgspec.Struct, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(extra_json_schema={"minLength": 1, "maxLength": MAX_ROOM_TITLE_CHARS})]
    time_zone: Annotated[str, msgspec.Meta(max_length=64)]
    first_start: LocalTime
    rrule: Annotated[str, msgspec.Meta(max_length=500)]
    duration_minutes: int
    lobby_minutes: int = DEFAULT_LOBBY_MINUTES
    kind: TrackKind = TrackKind.GROUP
    capacity: Annotated[int, msgspec.Meta(ge=1, le=MAX_ROOM_CAPACITY)] | None = None
    host_username: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    cohost_usernames: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=256)]], msgspec.Meta(max_length=MAX_COHOSTS)
    ] = []
    skip: Annotated[list[LocalTime], msgspec.Meta(max_length=200)] = []
    move: Annotated[list[Move], msgspec.Meta(max_length=200)] = []


class ExceptionsBody(msgspec.Struct, forbid_unknown_fields=True):
    skip: Annotated[list[LocalTime], msgspec.Meta(max_length=200)] = []
    move: Annotated[list[Move], msgspec.Meta(max_length=200)] = []


class OccurrenceView(msgspec.Struct):
    track_id: str
    title: str
    key: IsoTime  # the occurrence's identity: its original start (a moved one keeps it)
    starts_at: IsoTime
    ends_at: IsoTime
    lobby_opens_at: IsoTime
    local_start: str  # wall time in the track's zone
    room_id: str | None


class TrackView(msgspec.Struct):
    id: str
    title: str
    kind: TrackKind
    capacity: int
    time_zone: str
    first_start: str
    rrule: str
    duration_minutes: int
    lobby_minutes: int
    host_id: str
    cohost_ids: list[str]
    skip: list[str]
    move: list[Move]
    created_at: IsoTime
    ended_at: IsoTime | None
    upcoming: list[OccurrenceView]  # in progress and the next 7 days (at most 20)
    today: list[OccurrenceView]  # today's sessions, "today" in the track's time zone (the server's clock)


class TrackList(msgspec.Struct):
    tracks: list[TrackView]


class OccurrenceList(msgspec.Struct):
    occurrences: list[OccurrenceView]


class EnrollBody(msgspec.Struct, forbid_unknown_fields=True):
    display_name: Annotated[
        str, msgspec.Meta(extra_json_schema={"minLength": 1, "maxLength": MAX_DISPLAY_NAME_CHARS})
    ]
    ends_at: IsoTime | None = None  # default: 12 weeks from now; at most a year


class CreatedEnrollment(msgspec.Struct):
    id: str
    track_id: str
    client_id: str
    enrollment_token: str
    join_url: str
    expires_at: IsoTime


class EnrollmentView(msgspec.Struct):
    id: str
    track_id: str
    client_id: str
    display_name: str
    created_at: IsoTime
    expires_at: IsoTime
    revoked_at: IsoTime | None


class EnrollmentList(msgspec.Struct):
    enrollments: list[EnrollmentView]


class EnrollmentTokenBody(msgspec.Struct, forbid_unknown_fields=True):
    enrollment_token: Annotated[str, msgspec.Meta(max_length=128)]


class NextSession(msgspec.Struct):
    """What the join page shows: the track's title and the next session, nothing about anyone."""

    track_title: str
    time_zone: str
    phase: LinkPhase
    starts_at: IsoTime | None
    ends_at: IsoTime | None
    lobby_opens_at: IsoTime | None
    room_id: str | None  # once the lobby is open (the room exists)


class KnockCredential(msgspec.Struct):
    device_token: str
    room_id: str
    expires_at: IsoTime
    starts_at: IsoTime
    track_title: str


class CreateFeedBody(msgspec.Struct, forbid_unknown_fields=True):
    enrollment_id: str | None = None  # none: the caller's own feed (every track they host)


class CreatedFeed(msgspec.Struct):
    id: str
    owner: FeedOwner
    url: str  # secret: shown only this once


# --- helpers ------------------------------------------------------------------------------------------------


def _local(text: str) -> datetime:
    try:
        return datetime.strptime(text, _LOCAL)
    except ValueError:
        raise BadRequest("times are local wall times YYYY-MM-DDTHH:MM") from None


def _exceptions(skip: list[str], move: list[Move]) -> tuple[frozenset[datetime], dict[datetime, datetime]]:
    moved: dict[datetime, datetime] = {}
    for change in move:
        original = _local(change.occurrence)
        if original in moved:
            raise BadRequest("an occurrence is moved twice")
        moved[original] = _local(change.to)
    return frozenset(_local(t) for t in skip), moved


def _occurrence_view(occurrence: Occurrence, zone_name: str) -> OccurrenceView:
    zone = program_zone(zone_name)
    return OccurrenceView(
        track_id=occurrence.track_id,
        title=occurrence.title,
        key=iso(occurrence.key),
        starts_at=iso(occurrence.starts_at),
        ends_at=iso(occurrence.ends_at),
        lobby_opens_at=iso(occurrence.lobby_opens_at),
        local_start=occurrence.starts_at.astimezone(zone).strftime(_LOCAL),
        room_id=occurrence.room_id,
    )


async def _with_rooms(services: Services, track: Track, found: list[Occurrence]) -> list[Occurrence]:
    rooms = await services.tracks.rooms_of(track.id, [o.key for o in found])
    return [o.with_room(rooms.get(o.key)) for o in found]


async def track_view(services: Services, track: Track) -> TrackView:
    now = datetime.fromtimestamp(services.clock(), UTC)
    schedule = track.schedule
    upcoming = (
        [] if track.ended_at is not None else track.occurrences(now, now + timedelta(days=UPCOMING_DAYS))
    )
    upcoming = await _with_rooms(services, track, upcoming[:UPCOMING_MAX])
    zone = program_zone(schedule.time_zone)
    midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    day_end = midnight + timedelta(days=1)  # same-zone arithmetic is wall time: the next midnight
    today = [] if track.ended_at is not None else track.occurrences(midnight, day_end)
    today = await _with_rooms(services, track, [o for o in today if o.starts_at >= midnight])
    return TrackView(
        id=track.id, title=track.title, kind=track.kind, capacity=track.capacity,
        time_zone=schedule.time_zone, first_start=schedule.first_start.strftime(_LOCAL), rrule=schedule.rrule,
        duration_minutes=schedule.duration_minutes, lobby_minutes=schedule.lobby_minutes,
        host_id=track.host_id, cohost_ids=sorted(track.cohost_ids),
        skip=[t.strftime(_LOCAL) for t in sorted(schedule.skipped)],
        move=[Move(o.strftime(_LOCAL), n.strftime(_LOCAL)) for o, n in sorted(schedule.moved.items())],
        created_at=iso(track.created_at), ended_at=iso(track.ended_at),
        upcoming=[_occurrence_view(o, schedule.time_zone) for o in upcoming],
        today=[_occurrence_view(o, schedule.time_zone) for o in today],
    )  # fmt: skip


async def _clinician_named(services: Services, username: str) -> UserId:
    account = await services.authenticator.account_named(username)
    if account is None or account.disabled or account.role is not Role.CLINICIAN:
        raise BadRequest("hosts and co-hosts must be active clinician accounts")
    return UserId(account.id)


async def track_for(caller: Caller, track_id: str, action: Action) -> Track:
    """404 before 403, as for rooms."""
    track = await caller.services.tracks.get_track(track_id)
    authorize(caller.principal, action, track_scope(track))
    return track


# --- tracks -------------------------------------------------------------------------------------------------


async def create_track_endpoint(request: Request) -> Response:
    caller = await authenticate(request)
    authorize(caller.principal, Action.CREATE_TRACK)
    body = await read_json(request, CreateTrackBody)
    services = caller.services
    me = UserId(caller.principal.subject)
    if caller.principal.role is Role.ADMIN:
        if body.host_username is None:
            raise BadRequest("host_username is required: an admin names the clinician who hosts the track")
        host = await _clinician_named(services, body.host_username)
    else:
        host = me
        if body.host_username is not None and await _clinician_named(services, body.host_username) != me:
            raise Forbidden("a clinician creates tracks they host: ask an admin to name another host")
    cohosts = frozenset([await _clinician_named(services, name) for name in body.cohost_usernames]) - {host}
    skipped, moved = _exceptions(body.skip, body.move)
    capacity = body.capacity if body.capacity is not None else DEFAULT_CAPACITY[RoomKind(body.kind.value)]
    track = Track(
        id=new_track_id(), title=check_title(body.title),
        schedule=Schedule(
            time_zone=body.time_zone, first_start=_local(body.first_start), rrule=body.rrule,
            duration_minutes=body.duration_minutes, lobby_minutes=body.lobby_minutes,
            skipped=skipped, moved=moved,
        ),
        kind=body.kind, capacity=capacity, host_id=host, cohost_ids=cohosts, created_by=me,
        created_at=services.clock(),
    )  # fmt: skip
    await create_track(services, track)
    await caller.audit(TRACK_CREATED, "track", track.id)
    return struct_response(
        await track_view(services, track), status_code=201, headers={"Location": f"/api/v1/tracks/{track.id}"}
    )


async def list_tracks(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    grant = authorize(caller.principal, Action.VIEW_TRACK)
    store = caller.services.tracks
    found = await (
        store.all_tracks() if grant is Grant.ALL else store.tracks_of(UserId(caller.principal.subject))
    )
    await caller.audit(TRACK_VIEWED, "track", "all")
    return struct_response(TrackList([await track_view(caller.services, t) for t in found]))


async def _tracks_collection(request: Request) -> Response:
    if request.method == "POST":
        return await create_track_endpoint(request)
    return await list_tracks(request)


async def get_track(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    track = await track_for(caller, request.path_params["track_id"], Action.VIEW_TRACK)
    await caller.audit(TRACK_VIEWED, "track", track.id)
    return struct_response(await track_view(caller.services, track))


async def end_track(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    track = await track_for(caller, request.path_params["track_id"], Action.MANAGE_TRACK)
    await caller.services.tracks.end_track(track.id, caller.services.clock())
    await caller.audit(TRACK_ENDED, "track", track.id)
    return Response(status_code=204)


async def _track_item(request: Request) -> Response:
    if request.method == "DELETE":
        return await end_track(request)
    return await get_track(request)


async def put_exceptions(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    track = await track_for(caller, request.path_params["track_id"], Action.MANAGE_TRACK)
    body = await read_json(request, ExceptionsBody)
    skipped, moved = _exceptions(body.skip, body.move)
    old = track.schedule
    schedule = Schedule(
        old.time_zone, old.first_start, old.rrule, old.duration_minutes, old.lobby_minutes, skipped, moved
    )
    changed = await change_exceptions(caller.services, track, schedule)
    await caller.audit(TRACK_CHANGED, "track", track.id)
    return struct_response(await track_view(caller.services, changed))


def _query_time(request: Request, name: str, default: datetime) -> datetime:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 time with a zone, e.g. 2026-03-02T00:00:00Z") from None
    if value.tzinfo is None:
        raise BadRequest(f"{name} must be an ISO 8601 time with a zone, e.g. 2026-03-02T00:00:00Z")
    return value.astimezone(UTC)


async def list_occurrences(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    track = await track_for(caller, request.path_params["track_id"], Action.VIEW_TRACK)
    now = datetime.fromtimestamp(caller.services.clock(), UTC)
    start = _query_time(request, "from", now)
    end = _query_time(request, "to", start + timedelta(days=28))
    if end - start > MAX_WINDOW:
        raise TooManyOccurrences("ask for at most a year of sessions at a time")
    found = await _with_rooms(caller.services, track, track.occurrences(start, end))
    return struct_response(OccurrenceList([_occurrence_view(o, track.schedule.time_zone) for o in found]))


# --- enrollments --------------------------------------------------------------------------------------------


async def enroll(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    track = await track_for(caller, request.path_params["track_id"], Action.ENROLL_CLIENT)
    if track.ended_at is not None:
        raise NotFound("the track has ended")
    body = await read_json(request, EnrollBody)
    name = check_display_name(body.display_name)
    services = caller.services
    now = services.clock()
    expires = now + DEFAULT_ENROLLMENT_DAYS * 86400
    if body.ends_at is not None:
        expires = _query_time_value(body.ends_at)
    if not now < expires <= now + MAX_ENROLLMENT_DAYS * 86400:
        raise BadRequest("ends_at must be in the future and within a year")
    token = new_secret(ENROLLMENT_PREFIX)
    enrollment = Enrollment(
        id=new_enrollment_id(), track_id=track.id, client_id=new_client_id(),
        created_by=UserId(caller.principal.subject), created_at=now, expires_at=expires,
    )  # fmt: skip
    await services.tracks.add_enrollment(enrollment, secret_hash(token), name)
    await caller.audit(ENROLLMENT_CREATED, "enrollment", enrollment.id)
    return struct_response(
        CreatedEnrollment(
            id=enrollment.id, track_id=track.id, client_id=enrollment.client_id, enrollment_token=token,
            join_url=f"{public_origin(services)}/join#enroll={token}", expires_at=iso(expires),
        ),
        status_code=201,
        headers={"Location": f"/api/v1/enrollments/{enrollment.id}"},
    )  # fmt: skip


def _query_time_value(raw: str) -> float:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("ends_at must be an ISO 8601 time with a zone") from None
    if value.tzinfo is None:
        raise BadRequest("ends_at must be an ISO 8601 time with a zone")
    return value.timestamp()


async def list_enrollments(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    track = await track_for(caller, request.path_params["track_id"], Action.ENROLL_CLIENT)
    services = caller.services
    listed = [
        EnrollmentView(
            id=e.id,
            track_id=e.track_id,
            client_id=e.client_id,
            display_name=await services.invites.client_display_name(e.client_id),
            created_at=iso(e.created_at),
            expires_at=iso(e.expires_at),
            revoked_at=iso(e.revoked_at),
        )
        for e in await services.tracks.enrollments_of(track.id)
    ]
    await caller.audit(TRACK_VIEWED, "enrollment", track.id)
    return struct_response(EnrollmentList(listed))


async def _enrollments_collection(request: Request) -> Response:
    if request.method == "POST":
        return await enroll(request)
    return await list_enrollments(request)


async def revoke_enrollment(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    services = caller.services
    enrollment = await services.tracks.get_enrollment(request.path_params["enrollment_id"])
    if enrollment is None:
        raise NotFound("no such enrollment")
    await track_for(caller, enrollment.track_id, Action.REVOKE_ENROLLMENT)
    await services.tracks.revoke_enrollment(enrollment.id, services.clock())
    # The occurrences' device credentials go with it, and any seat held now.
    for room_id in await services.invites.revoke_for_client(enrollment.client_id):
        await revoke_invite_sessions(services, room_id, enrollment.client_id)
    await caller.audit(ENROLLMENT_REVOKED, "enrollment", enrollment.id)
    return Response(status_code=204)


async def next_session(request: Request) -> Response:
    services = services_of(request)
    body = await read_json(request, EnrollmentTokenBody)
    state = await link_state(services, body.enrollment_token)
    occurrence = state.occurrence
    room_id = None
    if occurrence is not None and state.phase is LinkPhase.OPEN:
        room_id = (await services.tracks.rooms_of(state.track.id, [occurrence.key])).get(occurrence.key)
    return struct_response(
        NextSession(
            track_title=state.track.title, time_zone=state.track.schedule.time_zone, phase=state.phase,
            starts_at=iso(occurrence.starts_at) if occurrence else None,
            ends_at=iso(occurrence.ends_at) if occurrence else None,
            lobby_opens_at=iso(occurrence.lobby_opens_at) if occurrence else None,
            room_id=room_id,
        )
    )  # fmt: skip


async def knock(request: Request) -> Response:
    services = services_of(request)
    body = await read_json(request, EnrollmentTokenBody)
    state, exchanged = await knock_with_enrollment(services, body.enrollment_token)
    invite = exchanged.invite
    assert state.occurrence is not None
    await services.audit_outbox.write(
        invite.client_id, Role.CLIENT.value, ENROLLMENT_KNOCKED, "enrollment", state.enrollment.id,
        Outcome.SUCCESS, client_address(request),
    )  # fmt: skip
    return struct_response(
        KnockCredential(
            device_token=exchanged.device_token, room_id=invite.room_id, expires_at=iso(invite.expires_at),
            starts_at=iso(state.occurrence.starts_at), track_title=state.track.title,
        )
    )  # fmt: skip


# --- calendar feeds -----------------------------------------------------------------------------------------


async def create_feed(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    body = await read_json(request, CreateFeedBody, empty=CreateFeedBody())
    services = caller.services
    me = UserId(caller.principal.subject)
    if body.enrollment_id is None:
        require_role(caller.principal, Action.CREATE_CALENDAR_FEED)
        owner, owner_id = FeedOwner.CLINICIAN, str(me)
    else:
        enrollment = await services.tracks.get_enrollment(body.enrollment_id)
        if enrollment is None:
            raise NotFound("no such enrollment")
        await track_for(caller, enrollment.track_id, Action.CREATE_CALENDAR_FEED)
        owner, owner_id = FeedOwner.ENROLLMENT, str(enrollment.id)
    token = new_secret(FEED_PREFIX)
    feed = CalendarFeed(
        id=new_calendar_feed_id(), owner=owner, owner_id=owner_id, created_by=me, created_at=services.clock()
    )
    await services.tracks.add_feed(feed, secret_hash(token))
    await caller.audit(FEED_CREATED, "calendar_feed", feed.id)
    return struct_response(
        CreatedFeed(id=feed.id, owner=owner, url=f"{public_origin(services)}/calendar/{token}.ics"),
        status_code=201,
    )


async def revoke_feed(request: Request) -> Response:
    caller = await authenticate(request, allow_invite=True)
    require_account(caller)
    services = caller.services
    feed = await services.tracks.get_feed(request.path_params["feed_id"])
    if feed is None:
        raise NotFound("no such calendar feed")
    principal = caller.principal
    if grant_for(principal.role, Action.REVOKE_CALENDAR_FEED) is not Grant.ALL:
        owners = {feed.created_by}
        if feed.owner is FeedOwner.ENROLLMENT:
            enrollment = await services.tracks.get_enrollment(feed.owner_id)
            if enrollment is not None:
                owners |= (await services.tracks.get_track(enrollment.track_id)).clinician_ids
        elif feed.owner is FeedOwner.CLINICIAN:
            owners.add(UserId(feed.owner_id))
        # The feed's owners stand for the room scope: its creator, its clinician, the enrollment's track's.
        authorize(principal, Action.REVOKE_CALENDAR_FEED, RoomScope(RoomId(feed.id), frozenset(owners)))
    await services.tracks.revoke_feed(CalendarFeedId(feed.id), services.clock())
    await caller.audit(FEED_REVOKED, "calendar_feed", feed.id)
    return Response(status_code=204)


async def _feed_tracks(
    services: Services, feed: CalendarFeed, now: float
) -> tuple[list[Track], float | None]:
    if feed.owner is FeedOwner.CLINICIAN:
        return await services.tracks.tracks_of(UserId(feed.owner_id)), None
    enrollment = await services.tracks.get_enrollment(feed.owner_id)
    if enrollment is None or enrollment.failure_at(now) is not None:
        return [], None
    track = await services.tracks.get_track(enrollment.track_id)
    return ([track] if track.ended_at is None else []), enrollment.expires_at


def calendar_document(tracks: list[Track], now: float, until: float | None) -> bytes:
    """The feed: one VEVENT per occurrence from two weeks back to four months ahead. Event text is the
    track's title and nothing else (no names, no links, no notes)."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//vIOP//program//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", "vIOP sessions")
    start = datetime.fromtimestamp(now, UTC)
    stamp = start.replace(microsecond=0)
    for track in tracks:
        for occurrence in track.occurrences(start - FEED_PAST, start + FEED_AHEAD):
            if until is not None and occurrence.starts_at.timestamp() >= until:
                continue
            event = icalendar.Event()
            event.add("uid", f"{track.id}-{occurrence.key:%Y%m%dT%H%M%SZ}@viop.invalid")
            event.add("dtstamp", stamp)
            event.add("dtstart", occurrence.starts_at)
            event.add("dtend", occurrence.ends_at)
            event.add("summary", track.title)
            calendar.add_component(event)
    return bytes(calendar.to_ical())


async def calendar_feed(request: Request) -> Response:
    services = services_of(request)
    token = request.path_params["feed_token"]
    feed = (
        await services.tracks.feed_by_token_hash(secret_hash(token))
        if looks_like(token, FEED_PREFIX)
        else None
    )
    now = services.clock()
    if feed is None or feed.revoked_at is not None:
        raise NotFound("no such calendar")
    tracks, until = await _feed_tracks(services, feed, now)
    return Response(
        calendar_document(tracks, now, until),
        media_type="text/calendar; charset=utf-8",
        headers={"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"},
    )


# --- routes -------------------------------------------------------------------------------------------------


def routes() -> list[BaseRoute]:
    track_id = path_param("track_id")
    feed = documented_route(
        "/calendar/{feed_token}.ics",
        calendar_feed,
        ["GET"],
        Operation(
            summary="An iCalendar feed (the secret URL is the credential); event text is the track title only",
            operation_id="calendarFeed",
            security=[],
            parameters=[path_param("feed_token")],
            responses={200: Reply(body=str, media_type="text/calendar"), **refusals(404)},
        ),
    )
    feed.secret_path = True  # type: ignore[attr-defined]  # the access log writes its template
    return [
        documented_route(
            "/api/v1/tracks",
            _tracks_collection,
            ["GET", "POST"],
            {
                "post": Operation(
                    summary="Create a recurring track (a clinician hosts it; an admin names the host)",
                    operation_id="createTrack",
                    security=BEARER_SECURITY,
                    request=CreateTrackBody,
                    responses={201: Reply("Created", TrackView), **refusals(400, 401, 403, 413, 415)},
                ),
                "get": Operation(
                    summary="List tracks: a clinician's own, every track for admin and staff",
                    operation_id="listTracks",
                    security=BEARER_SECURITY,
                    responses={200: Reply(body=TrackList), **refusals(401, 403)},
                ),
            },
        ),
        documented_route(
            "/api/v1/tracks/{track_id}",
            _track_item,
            ["GET", "DELETE"],
            {
                "get": Operation(
                    summary="Read one track with its sessions of the coming week",
                    operation_id="getTrack",
                    security=BEARER_SECURITY,
                    parameters=[track_id],
                    responses={200: Reply(body=TrackView), **refusals(401, 403, 404)},
                ),
                "delete": Operation(
                    summary="End a track: no further rooms are made for it",
                    operation_id="endTrack",
                    security=BEARER_SECURITY,
                    parameters=[track_id],
                    responses={204: Reply("Ended"), **refusals(401, 403, 404)},
                ),
            },
        ),
        documented_route(
            "/api/v1/tracks/{track_id}/exceptions",
            put_exceptions,
            ["PUT"],
            Operation(
                summary="Replace the track's skipped (EXDATE) and moved (RECURRENCE-ID) sessions",
                operation_id="putTrackExceptions",
                security=BEARER_SECURITY,
                parameters=[track_id],
                request=ExceptionsBody,
                responses={200: Reply(body=TrackView), **refusals(400, 401, 403, 404, 413, 415)},
            ),
        ),
        documented_route(
            "/api/v1/tracks/{track_id}/occurrences",
            list_occurrences,
            ["GET"],
            Operation(
                summary="The track's sessions between two times (at most a year)",
                operation_id="listOccurrences",
                security=BEARER_SECURITY,
                parameters=[
                    track_id,
                    Param("from", "query", {"type": "string", "format": "date-time"}, "default: now"),
                    Param(
                        "to", "query", {"type": "string", "format": "date-time"}, "default: from + 28 days"
                    ),
                ],
                responses={200: Reply(body=OccurrenceList), **refusals(400, 401, 403, 404)},
            ),
        ),
        documented_route(
            "/api/v1/tracks/{track_id}/enrollments",
            _enrollments_collection,
            ["GET", "POST"],
            {
                "post": Operation(
                    summary="Enroll a new client: one link for every session until the enrollment ends",
                    operation_id="enrollClient",
                    security=BEARER_SECURITY,
                    parameters=[track_id],
                    request=EnrollBody,
                    responses={
                        201: Reply("Created; the token is shown only this once", CreatedEnrollment),
                        **refusals(400, 401, 403, 404, 413, 415),
                    },
                ),
                "get": Operation(
                    summary="The track's enrollments (its clinicians only)",
                    operation_id="listEnrollments",
                    security=BEARER_SECURITY,
                    parameters=[track_id],
                    responses={200: Reply(body=EnrollmentList), **refusals(401, 403, 404)},
                ),
            },
        ),
        documented_route(
            "/api/v1/enrollments/{enrollment_id}",
            revoke_enrollment,
            ["DELETE"],
            Operation(
                summary="End an enrollment now: its link and any session credential stop working",
                operation_id="revokeEnrollment",
                security=BEARER_SECURITY,
                parameters=[path_param("enrollment_id")],
                responses={204: Reply("Revoked"), **refusals(401, 403, 404)},
            ),
        ),
        documented_route(
            "/api/v1/enrollments/next",
            next_session,
            ["POST"],
            Operation(
                summary="With an enrollment link's token: the next session (or the one whose lobby is open)",
                operation_id="nextSession",
                security=[],
                request=EnrollmentTokenBody,
                responses={200: Reply(body=NextSession), **refusals(400, 401, 413, 415)},
            ),
        ),
        documented_route(
            "/api/v1/enrollments/knock",
            knock,
            ["POST"],
            Operation(
                summary="With an enrollment link's token, while a lobby is open: that session's device credential",
                operation_id="knockWithEnrollment",
                security=[],
                request=EnrollmentTokenBody,
                responses={
                    200: Reply("The device credential, shown only this once", KnockCredential),
                    **refusals(400, 401, 409, 413, 415),
                },
            ),
        ),
        documented_route(
            "/api/v1/calendar-feeds",
            create_feed,
            ["POST"],
            Operation(
                summary="A secret .ics URL: the caller's own sessions, or one enrollment's",
                operation_id="createCalendarFeed",
                security=BEARER_SECURITY,
                request=CreateFeedBody,
                request_required=False,
                responses={
                    201: Reply("Created; the URL is shown only this once", CreatedFeed),
                    **refusals(400, 401, 403, 404, 413, 415),
                },
            ),
        ),
        documented_route(
            "/api/v1/calendar-feeds/{feed_id}",
            revoke_feed,
            ["DELETE"],
            Operation(
                summary="Revoke a calendar feed's URL",
                operation_id="revokeCalendarFeed",
                security=BEARER_SECURITY,
                parameters=[path_param("feed_id")],
                responses={204: Reply("Revoked"), **refusals(401, 403, 404)},
            ),
        ),
        feed,
    ]
