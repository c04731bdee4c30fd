"""Tracks, enrollments and calendar feeds, and the store port that keeps them (SQL: ``vIOP.storage.tracks_sql``).

The small stable API other features build on (attendance by track, webhooks):
``TrackStore.occurrence_by_room(room_id)`` (the :class:`~vIOP.program.schedule.Occurrence` a room was made
for, or None) and ``TrackStore.enrolled_clients(occurrence)`` (the client ids expected at it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from vIOP.ids import CalendarFeedId, ClientId, EnrollmentId, RoomId, TrackId, UserId
from vIOP.program.schedule import Occurrence, Schedule, next_occurrence, occurrences


class TrackKind(StrEnum):
    GROUP = "group"
    INDIVIDUAL = "individual"  # individual counseling: a track with one client


@dataclass(frozen=True, slots=True)
class Track:
    id: TrackId
    title: str  # shown in calendars and to enrolled clients; stored sealed like a room's title
    schedule: Schedule
    kind: TrackKind
    capacity: int
    host_id: UserId  # owns each occurrence's room
    cohost_ids: frozenset[UserId]
    created_by: UserId
    created_at: float
    ended_at: float | None = None

    @property
    def clinician_ids(self) -> frozenset[UserId]:
        return self.cohost_ids | {self.host_id}

    def occurrences(self, start: datetime, end: datetime) -> list[Occurrence]:
        return occurrences(self.id, self.title, self.schedule, start, end)

    def next_occurrence(self, now: float) -> Occurrence | None:
        """The occurrence in progress or next (None once the track ended or the rule ran out)."""
        if self.ended_at is not None and self.ended_at <= now:
            return None
        return next_occurrence(self.id, self.title, self.schedule, datetime.fromtimestamp(now, UTC))


class EnrollmentFailure(StrEnum):
    UNKNOWN = "unknown"
    EXPIRED = "expired"  # the enrollment ended
    REVOKED = "revoked"  # the client left the track, or the link was withdrawn
    TRACK_ENDED = "track_ended"


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A client in a track, and their one link (only its SHA-256 is stored)."""

    id: EnrollmentId
    track_id: TrackId
    client_id: ClientId
    created_by: UserId
    created_at: float
    expires_at: float
    revoked_at: float | None = None

    def failure_at(self, now: float) -> EnrollmentFailure | None:
        if self.revoked_at is not None and self.revoked_at <= now:
            return EnrollmentFailure.REVOKED
        if now >= self.expires_at:
            return EnrollmentFailure.EXPIRED
        return None

    def expects(self, occurrence: Occurrence) -> bool:
        """Whether this client is expected at ``occurrence``: enrolled before it ends, not left before
        it starts."""
        ended = self.expires_at if self.revoked_at is None else min(self.expires_at, self.revoked_at)
        return self.created_at < occurrence.ends_at.timestamp() and ended > occurrence.starts_at.timestamp()


class FeedOwner(StrEnum):
    CLINICIAN = "clinician"  # every track the clinician hosts or co-hosts
    ENROLLMENT = "enrollment"  # the enrollment's track, while it lasts


@dataclass(frozen=True, slots=True)
class CalendarFeed:
    """A secret, revocable ``.ics`` URL (only SHA-256 of its token is stored)."""

    id: CalendarFeedId
    owner: FeedOwner
    owner_id: str  # a UserId or an EnrollmentId
    created_by: UserId
    created_at: float
    revoked_at: float | None = None


class TrackStore(Protocol):
    async def add_track(self, track: Track) -> None: ...

    async def get_track(self, track_id: str) -> Track:
        """:class:`~vIOP.errors.NotFound` for an unknown or malformed id."""
        ...

    async def tracks_of(self, user_id: UserId) -> list[Track]:
        """Tracks ``user_id`` hosts or co-hosts, not ended (bounded)."""
        ...

    async def all_tracks(self) -> list[Track]:
        """Every track not ended (bounded): what the scheduler walks."""
        ...

    async def set_exceptions(self, track_id: TrackId, schedule: Schedule) -> None:
        """Store ``schedule``'s skipped and moved occurrences (already validated) in place of the old ones."""
        ...

    async def end_track(self, track_id: TrackId, at: float) -> None: ...

    async def claim_occurrence(
        self, track: Track, occurrence: Occurrence, room_id: RoomId, at: float
    ) -> tuple[RoomId, bool]:
        """Make ``room_id`` the room of ``occurrence`` (its durable room record with the track's clinicians
        as hosts, in one transaction), unless a room was made for it already: returns the occurrence's room
        and whether this call made it. Unique per (track, occurrence key): across processes, one room."""
        ...

    async def rooms_of(self, track_id: TrackId, keys: list[datetime]) -> dict[datetime, RoomId]:
        """The rooms made so far for these occurrence keys."""
        ...

    async def occurrence_by_room(self, room_id: str) -> Occurrence | None:
        """The occurrence ``room_id`` was made for (None for a room made by hand)."""
        ...

    async def add_enrollment(
        self, enrollment: Enrollment, token_hash: bytes, display_name: str | None
    ) -> None:
        """Insert the enrollment; with ``display_name`` also its (new) client, the name sealed under the
        client's own data key."""
        ...

    async def get_enrollment(self, enrollment_id: str) -> Enrollment | None: ...

    async def enrollment_by_token_hash(self, token_hash: bytes) -> Enrollment | None: ...

    async def enrollments_of(self, track_id: TrackId) -> list[Enrollment]: ...

    async def revoke_enrollment(self, enrollment_id: EnrollmentId, at: float) -> None: ...

    async def enrolled_clients(self, occurrence: Occurrence) -> list[ClientId]:
        """The clients expected at ``occurrence`` (:meth:`Enrollment.expects`)."""
        ...

    async def add_feed(self, feed: CalendarFeed, token_hash: bytes) -> None: ...

    async def feed_by_token_hash(self, token_hash: bytes) -> CalendarFeed | None: ...

    async def get_feed(self, feed_id: str) -> CalendarFeed | None: ...

    async def revoke_feed(self, feed_id: CalendarFeedId, at: float) -> None: ...
