"""Tracks at run time (docs/PROGRAM.md): each occurrence becomes a room when its lobby opens, and only then;
an enrollment link knocks on the occurrence in progress.

The scheduler runs in every process: all of them may try to open the same lobby, and the store's unique
(track, occurrence) key lets exactly one make the room (:meth:`TrackStore.claim_occurrence`); the winner
opens its live state with the track's clinicians as hosts. A room whose live state could not be opened
(Redis away at that moment) is re-opened only by a process that loses a later claim for it (docs/PROGRAM.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from vIOP.auth.invites import ExchangedInvite
from vIOP.auth.permissions import RoomScope
from vIOP.errors import Conflict, Unauthenticated
from vIOP.ids import RoomId, new_room_id
from vIOP.program.ports import Enrollment, EnrollmentFailure, Track, TrackStore
from vIOP.program.schedule import Occurrence, Schedule, validate
from vIOP.rooms.errors import RoomAlreadyOpen, RoomNotFound
from vIOP.rooms.occurrences import OccurrenceRef
from vIOP.rooms.room import RoomKind, RoomState
from vIOP.session.services import Services

log = logging.getLogger("vIOP.tracks")

ENROLLMENT_PREFIX: Final = "venr_"
FEED_PREFIX: Final = "vcal_"
_TOKEN_CHARS: Final = 43  # token_urlsafe(32)
# The longest the scheduler sleeps between rounds (a track created meanwhile is seen within this).
MAX_SLEEP_SECONDS: Final = 30.0
# An occurrence's device credential outlives its end by this much (a late reconnect still works).
DEVICE_GRACE: Final = timedelta(minutes=30)


def track_scope(track: Track) -> RoomScope:
    """A track for the permission table: its clinicians belong to it as hosts belong to a room."""
    return RoomScope(RoomId(track.id), frozenset(track.clinician_ids))


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def secret_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def looks_like(token: str, prefix: str) -> bool:
    return len(token) == len(prefix) + _TOKEN_CHARS and token.startswith(prefix) and token.isascii()


class EnrollmentRejected(Unauthenticated):
    code = "enrollment_invalid"

    def __init__(self, reason: EnrollmentFailure) -> None:
        super().__init__("this enrollment link has ended or was withdrawn: ask your clinician")
        self.reason = reason


class LobbyNotOpen(Conflict):
    code = "lobby_not_open"


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


# --- occurrences become rooms -------------------------------------------------------------------------------


async def open_occurrence_room(services: Services, track: Track, occurrence: Occurrence) -> RoomId:
    """The occurrence's room: made now (by this process, if no other made it first) or found."""
    now = services.clock()
    room_id, made = await services.tracks.claim_occurrence(track, occurrence, new_room_id(), now)
    if made:
        await _open_live(services, track, room_id)
        log.info("occurrence room opened", extra={"kind": "track", "room_id": room_id})
    return room_id


async def _open_live(services: Services, track: Track, room_id: RoomId) -> None:
    with contextlib.suppress(RoomAlreadyOpen):
        await services.rooms.open_room(
            room_id, kind=RoomKind(track.kind.value), host_ids=track.clinician_ids, capacity=track.capacity
        )


async def _reopen_if_missing(services: Services, track: Track, room_id: RoomId) -> None:
    """A claimed room whose live state is missing (the claiming process failed to open it)."""
    try:
        await services.rooms.room(room_id)
    except RoomNotFound:
        record = await services.room_directory.get(room_id)
        if record.state == RoomState.OPEN.value:
            await _open_live(services, track, room_id)


def lobby_is_open(occurrence: Occurrence, now: float) -> bool:
    return occurrence.lobby_opens_at.timestamp() <= now < occurrence.ends_at.timestamp()


class TrackScheduler:
    """Opens each occurrence's room when its lobby opens. :meth:`tick` is one round (tests call it with an
    injected clock); :meth:`run` repeats it, sleeping until the next lobby opens (at most
    :data:`MAX_SLEEP_SECONDS`, or until :meth:`wake`)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def tick(self) -> list[RoomId]:
        """Open the rooms of every occurrence whose lobby is open now; the rooms this process made."""
        services = self._services
        now = services.clock()
        made: list[RoomId] = []
        for track in await services.tracks.all_tracks():
            lobby = track.schedule.lobby
            due = [
                o
                for o in track.occurrences(_utc(now), _utc(now) + lobby + timedelta(seconds=1))
                if lobby_is_open(o, now)
            ]
            if not due:
                continue
            existing = await services.tracks.rooms_of(track.id, [o.key for o in due])
            for occurrence in due:
                if occurrence.key in existing:
                    continue
                room_id, created = await services.tracks.claim_occurrence(
                    track, occurrence, new_room_id(), now
                )
                if created:
                    await _open_live(services, track, room_id)
                    made.append(room_id)
                else:
                    await _reopen_if_missing(services, track, room_id)
        return made

    async def next_lobby_at(self, horizon: timedelta = timedelta(days=35)) -> float | None:
        """When the next lobby opens (epoch seconds), within ``horizon``; None if none does."""
        now = self._services.clock()
        soonest: float | None = None
        for track in await self._services.tracks.all_tracks():
            start = _utc(now) + track.schedule.lobby
            for occurrence in track.occurrences(start, start + horizon):
                opens = occurrence.lobby_opens_at.timestamp()
                if opens > now:
                    soonest = opens if soonest is None else min(soonest, opens)
                    break
        return soonest

    async def seconds_to_next_lobby(self) -> float:
        opens = await self.next_lobby_at(timedelta(seconds=MAX_SLEEP_SECONDS * 2))
        if opens is None:
            return MAX_SLEEP_SECONDS
        return min(MAX_SLEEP_SECONDS, max(0.05, opens - self._services.clock()))

    async def run(self) -> None:
        services = self._services

        async def wake_at_stop() -> None:
            await services.stopping.wait()
            self._wake.set()  # shutdown does not wait out a pause

        watcher = asyncio.create_task(wake_at_stop())
        try:
            await self._rounds()
        finally:
            watcher.cancel()

    async def _rounds(self) -> None:
        services = self._services
        while not services.stopping.is_set():
            self._wake.clear()  # before the round: a wake() during it brings the next round at once
            try:
                await self.tick()
                pause = await self.seconds_to_next_lobby()
            except Exception:
                log.exception("track scheduler round failed")
                pause = MAX_SLEEP_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=pause)


# --- enrollment links ---------------------------------------------------------------------------------------


class LinkPhase(StrEnum):
    UPCOMING = "upcoming"  # the next occurrence's lobby is not open yet
    OPEN = "open"  # the lobby of the occurrence in progress is open: knock
    NONE = "none"  # no further session within a year


@dataclass(frozen=True, slots=True)
class LinkState:
    enrollment: Enrollment
    track: Track
    occurrence: Occurrence | None
    phase: LinkPhase


async def enrollment_for(services: Services, token: str) -> tuple[Enrollment, Track]:
    """The usable enrollment behind an enrollment link's token, and its track; 401 otherwise."""
    if not looks_like(token, ENROLLMENT_PREFIX):
        raise EnrollmentRejected(EnrollmentFailure.UNKNOWN)
    enrollment = await services.tracks.enrollment_by_token_hash(secret_hash(token))
    if enrollment is None:
        raise EnrollmentRejected(EnrollmentFailure.UNKNOWN)
    now = services.clock()
    failure = enrollment.failure_at(now)
    if failure is not None:
        raise EnrollmentRejected(failure)
    track = await services.tracks.get_track(enrollment.track_id)
    if track.ended_at is not None and track.ended_at <= now:
        raise EnrollmentRejected(EnrollmentFailure.TRACK_ENDED)
    return enrollment, track


async def link_state(services: Services, token: str) -> LinkState:
    enrollment, track = await enrollment_for(services, token)
    now = services.clock()
    occurrence = track.next_occurrence(now)
    if occurrence is None or occurrence.starts_at.timestamp() >= enrollment.expires_at:
        return LinkState(enrollment, track, None, LinkPhase.NONE)
    phase = LinkPhase.OPEN if lobby_is_open(occurrence, now) else LinkPhase.UPCOMING
    return LinkState(enrollment, track, occurrence, phase)


async def knock_with_enrollment(services: Services, token: str) -> tuple[LinkState, ExchangedInvite]:
    """A device credential for the occurrence whose lobby is open (its room made now if no process made
    it yet); 409 ``lobby_not_open`` before the lobby opens."""
    state = await link_state(services, token)
    occurrence = state.occurrence
    if state.phase is not LinkPhase.OPEN or occurrence is None:
        raise LobbyNotOpen("the waiting room is not open yet: it opens before the session starts")
    room_id = await open_occurrence_room(services, state.track, occurrence)
    expires = min((occurrence.ends_at + DEVICE_GRACE).timestamp(), state.enrollment.expires_at)
    exchanged = await services.invites.issue_device(
        room_id, state.enrollment.client_id, state.track.host_id, expires
    )
    return LinkState(state.enrollment, state.track, occurrence.with_room(room_id), state.phase), exchanged


# --- tracks -------------------------------------------------------------------------------------------------


async def create_track(services: Services, track: Track) -> Track:
    """Validate the schedule (a clear 400 and nothing stored when it cannot run), then store the track and
    wake the scheduler (its first lobby may be open already)."""
    validate(track.schedule)
    await services.tracks.add_track(track)
    scheduler = services.live.track_scheduler
    if scheduler is not None:
        scheduler.wake()
    return track


async def change_exceptions(services: Services, track: Track, schedule: Schedule) -> Track:
    """Replace the track's skipped and moved occurrences (validated first; nothing stored on a 400)."""
    validate(schedule)
    await services.tracks.set_exceptions(track.id, schedule)
    scheduler = services.live.track_scheduler
    if scheduler is not None:
        scheduler.wake()
    return await services.tracks.get_track(track.id)


@dataclass(frozen=True, slots=True)
class TrackOccurrences:
    """Attendance's occurrence port (``vIOP.rooms.occurrences``) over the track store: which track
    occurrence a room was opened for, so attendance reports carry the track's id, title and start."""

    tracks: TrackStore

    async def occurrence_of(self, room_id: RoomId) -> OccurrenceRef | None:
        occurrence = await self.tracks.occurrence_by_room(room_id)
        if occurrence is None:
            return None
        return OccurrenceRef(str(occurrence.track_id), occurrence.title, occurrence.starts_at.timestamp())
