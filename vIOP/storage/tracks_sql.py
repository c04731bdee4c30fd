"""The SQL :class:`~vIOP.program.ports.TrackStore`: tracks, their exceptions, the rooms made for occurrences,
enrollments and calendar feeds.

Titles are sealed under the system field key like room titles (AAD bound to the row id); an enrollment's new
client gets its own data key, as an invite's does. Tokens (enrollment links, calendar URLs) are stored only
as SHA-256. One room per occurrence across processes: the room record, its co-hosts and the
``track_occurrences`` row go in one transaction, and the primary key (track, occurrence key) lets one win.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from vIOP.errors import NotFound
from vIOP.ids import CalendarFeedId, ClientId, EnrollmentId, RoomId, TrackId, UserId
from vIOP.program.ports import CalendarFeed, Enrollment, FeedOwner, Track, TrackKind
from vIOP.program.schedule import Occurrence, Schedule
from vIOP.rooms.room import RoomState
from vIOP.storage.crypto import FieldRef, KeyRing, KeyScope
from vIOP.storage.database import Database
from vIOP.storage.schema import (
    calendar_feeds,
    clients,
    enrollments,
    room_cohosts,
    rooms,
    track_cohosts,
    track_exceptions,
    track_occurrences,
    tracks,
)

_TRACK_ID = re.compile(r"^tk_[A-Za-z0-9_-]{1,64}$")
_ENROLLMENT_ID = re.compile(r"^en_[A-Za-z0-9_-]{1,64}$")
_FEED_ID = re.compile(r"^cf_[A-Za-z0-9_-]{1,64}$")
LIST_LIMIT = 500
_LOCAL = "%Y-%m-%dT%H:%M"


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _local(value: datetime) -> str:
    return value.strftime(_LOCAL)


def _parse_local(text: str) -> datetime:
    return datetime.strptime(text, _LOCAL)


def _title_ref(track_id: str) -> FieldRef:
    return FieldRef("tracks", "title", track_id)


def _room_title_ref(room_id: str) -> FieldRef:
    return FieldRef("rooms", "title", room_id)  # as vIOP.storage.rooms_sql seals room titles


def _client_name_ref(client_id: str) -> FieldRef:
    return FieldRef("clients", "display_name", client_id)  # as vIOP.storage.invites_sql


class SqlTrackStore:
    __slots__ = ("_db", "_ring")

    def __init__(self, db: Database, ring: KeyRing) -> None:
        self._db = db
        self._ring = ring

    # --- tracks -----------------------------------------------------------------------------------------

    async def add_track(self, track: Track) -> None:
        schedule = track.schedule
        sealed = self._ring.system_fields.encrypt(_title_ref(track.id), track.title)
        async with self._db.begin() as conn:
            await conn.execute(
                insert(tracks).values(
                    id=track.id, kind=track.kind.value, title=sealed, capacity=track.capacity,
                    time_zone=schedule.time_zone, first_start=_local(schedule.first_start),
                    rrule=schedule.rrule.strip(), duration_minutes=schedule.duration_minutes,
                    lobby_minutes=schedule.lobby_minutes, host_user_id=track.host_id,
                    created_by=track.created_by, created_at=_at(track.created_at),
                    ended_at=None if track.ended_at is None else _at(track.ended_at),
                )
            )  # fmt: skip
            for user_id in sorted(track.cohost_ids - {track.host_id}):
                await conn.execute(insert(track_cohosts).values(track_id=track.id, user_id=user_id))
            await self._write_exceptions(conn, track.id, schedule)

    @staticmethod
    async def _write_exceptions(conn: Any, track_id: str, schedule: Schedule) -> None:
        for original in sorted(schedule.skipped):
            await conn.execute(
                insert(track_exceptions).values(
                    track_id=track_id, original_start=_local(original), moved_to=None
                )
            )
        for original, new in sorted(schedule.moved.items()):
            await conn.execute(
                insert(track_exceptions).values(
                    track_id=track_id, original_start=_local(original), moved_to=_local(new)
                )
            )

    async def set_exceptions(self, track_id: TrackId, schedule: Schedule) -> None:
        async with self._db.begin() as conn:
            await conn.execute(delete(track_exceptions).where(track_exceptions.c.track_id == track_id))
            await self._write_exceptions(conn, track_id, schedule)

    async def get_track(self, track_id: str) -> Track:
        if not _TRACK_ID.match(track_id):
            raise NotFound("no such track")
        found = await self._tracks(tracks.c.id == track_id, include_ended=True)
        if not found:
            raise NotFound("no such track")
        return found[0]

    async def tracks_of(self, user_id: UserId) -> list[Track]:
        cohosted = select(track_cohosts.c.track_id).where(track_cohosts.c.user_id == user_id)
        return await self._tracks(or_(tracks.c.host_user_id == user_id, tracks.c.id.in_(cohosted)))

    async def all_tracks(self) -> list[Track]:
        return await self._tracks(None)

    async def end_track(self, track_id: TrackId, at: float) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(tracks)
                .where(tracks.c.id == track_id, tracks.c.ended_at.is_(None))
                .values(ended_at=_at(at))
            )

    async def _tracks(self, condition: Any, *, include_ended: bool = False) -> list[Track]:
        query = select(tracks).order_by(tracks.c.created_at, tracks.c.id)
        if condition is not None:
            query = query.where(condition)
        if not include_ended:
            query = query.where(tracks.c.ended_at.is_(None))
        async with self._db.read() as conn:
            rows = (await conn.execute(query.limit(LIST_LIMIT))).all()
            ids = [row.id for row in rows]
            cohosts: dict[str, set[UserId]] = {}
            changes: dict[str, list[Row[Any]]] = {}
            if ids:
                for track_id, user_id in await conn.execute(
                    select(track_cohosts.c.track_id, track_cohosts.c.user_id).where(
                        track_cohosts.c.track_id.in_(ids)
                    )
                ):
                    cohosts.setdefault(track_id, set()).add(UserId(user_id))
                for change in await conn.execute(
                    select(track_exceptions).where(track_exceptions.c.track_id.in_(ids))
                ):
                    changes.setdefault(change.track_id, []).append(change)
        return [self._track(row, cohosts.get(row.id, set()), changes.get(row.id, [])) for row in rows]

    def _track(self, row: Row[Any], cohost_ids: set[UserId], changes: list[Row[Any]]) -> Track:
        schedule = Schedule(
            time_zone=row.time_zone,
            first_start=_parse_local(row.first_start),
            rrule=row.rrule,
            duration_minutes=row.duration_minutes,
            lobby_minutes=row.lobby_minutes,
            skipped=frozenset(_parse_local(c.original_start) for c in changes if c.moved_to is None),
            moved={_parse_local(c.original_start): _parse_local(c.moved_to) for c in changes if c.moved_to},
        )
        return Track(
            id=TrackId(row.id),
            title=self._ring.system_fields.decrypt_text(_title_ref(row.id), row.title),
            schedule=schedule,
            kind=TrackKind(row.kind),
            capacity=row.capacity,
            host_id=UserId(row.host_user_id),
            cohost_ids=frozenset(cohost_ids),
            created_by=UserId(row.created_by),
            created_at=row.created_at.timestamp(),
            ended_at=_epoch(row.ended_at),
        )

    # --- occurrences ------------------------------------------------------------------------------------

    async def claim_occurrence(
        self, track: Track, occurrence: Occurrence, room_id: RoomId, at: float
    ) -> tuple[RoomId, bool]:
        created = _at(int(at))
        try:
            async with self._db.begin() as conn:
                await conn.execute(
                    insert(rooms).values(
                        id=room_id, kind=track.kind.value,
                        title=self._ring.system_fields.encrypt(_room_title_ref(room_id), track.title),
                        capacity=track.capacity, host_user_id=track.host_id,
                        state=RoomState.OPEN.value, created_at=created, ended_at=None,
                    )
                )  # fmt: skip
                for user_id in sorted(track.cohost_ids - {track.host_id}):
                    await conn.execute(
                        insert(room_cohosts).values(
                            room_id=room_id, user_id=user_id, added_by=None, added_at=created
                        )
                    )
                await conn.execute(
                    insert(track_occurrences).values(
                        track_id=track.id, occurrence_key=occurrence.key, room_id=room_id,
                        starts_at=occurrence.starts_at, ends_at=occurrence.ends_at, created_at=created,
                    )
                )  # fmt: skip
        except IntegrityError:
            existing = await self.rooms_of(track.id, [occurrence.key])
            if occurrence.key not in existing:
                raise
            return existing[occurrence.key], False
        return room_id, True

    async def rooms_of(self, track_id: TrackId, keys: list[datetime]) -> dict[datetime, RoomId]:
        if not keys:
            return {}
        query = select(track_occurrences.c.occurrence_key, track_occurrences.c.room_id).where(
            track_occurrences.c.track_id == track_id, track_occurrences.c.occurrence_key.in_(keys)
        )
        async with self._db.read() as conn:
            return {key: RoomId(room_id) for key, room_id in await conn.execute(query)}

    async def occurrence_by_room(self, room_id: str) -> Occurrence | None:
        query = (
            select(track_occurrences, tracks.c.title, tracks.c.lobby_minutes)
            .select_from(track_occurrences.join(tracks, tracks.c.id == track_occurrences.c.track_id))
            .where(track_occurrences.c.room_id == room_id)
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return Occurrence(
            track_id=TrackId(row.track_id),
            title=self._ring.system_fields.decrypt_text(_title_ref(row.track_id), row.title),
            key=row.occurrence_key,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            lobby_opens_at=row.starts_at - timedelta(minutes=row.lobby_minutes),
            room_id=RoomId(row.room_id),
        )

    # --- enrollments ------------------------------------------------------------------------------------

    async def add_enrollment(
        self, enrollment: Enrollment, token_hash: bytes, display_name: str | None
    ) -> None:
        created = _at(enrollment.created_at)
        async with self._db.begin() as conn:
            if display_name is not None:
                key_id = await self._ring.create_data_key(conn, KeyScope.CLIENT)
                name = await self._ring.encrypt_field(
                    key_id, _client_name_ref(enrollment.client_id), display_name
                )
                await conn.execute(
                    insert(clients).values(
                        id=enrollment.client_id, data_key_id=key_id, display_name=name,
                        created_by=enrollment.created_by, created_at=created,
                    )
                )  # fmt: skip
            await conn.execute(
                insert(enrollments).values(
                    id=enrollment.id, track_id=enrollment.track_id, client_id=enrollment.client_id,
                    token_hash=token_hash, created_by=enrollment.created_by, created_at=created,
                    expires_at=_at(enrollment.expires_at), revoked_at=None,
                )
            )  # fmt: skip

    async def get_enrollment(self, enrollment_id: str) -> Enrollment | None:
        if not _ENROLLMENT_ID.match(enrollment_id):
            return None
        return await self._enrollment(enrollments.c.id == enrollment_id)

    async def enrollment_by_token_hash(self, token_hash: bytes) -> Enrollment | None:
        return await self._enrollment(enrollments.c.token_hash == token_hash)

    async def enrollments_of(self, track_id: TrackId) -> list[Enrollment]:
        query = (
            select(enrollments)
            .where(enrollments.c.track_id == track_id)
            .order_by(enrollments.c.created_at, enrollments.c.id)
            .limit(LIST_LIMIT)
        )
        async with self._db.read() as conn:
            return [_enrollment(row) for row in await conn.execute(query)]

    async def revoke_enrollment(self, enrollment_id: EnrollmentId, at: float) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(enrollments)
                .where(enrollments.c.id == enrollment_id, enrollments.c.revoked_at.is_(None))
                .values(revoked_at=_at(at))
            )

    async def enrolled_clients(self, occurrence: Occurrence) -> list[ClientId]:
        return sorted(
            enrollment.client_id
            for enrollment in await self.enrollments_of(occurrence.track_id)
            if enrollment.expects(occurrence)
        )

    async def _enrollment(self, condition: Any) -> Enrollment | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(enrollments).where(condition))).first()
        return None if row is None else _enrollment(row)

    # --- calendar feeds ---------------------------------------------------------------------------------

    async def add_feed(self, feed: CalendarFeed, token_hash: bytes) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                insert(calendar_feeds).values(
                    id=feed.id, token_hash=token_hash, owner=feed.owner.value, owner_id=feed.owner_id,
                    created_by=feed.created_by, created_at=_at(feed.created_at), revoked_at=None,
                )
            )  # fmt: skip

    async def feed_by_token_hash(self, token_hash: bytes) -> CalendarFeed | None:
        return await self._feed(calendar_feeds.c.token_hash == token_hash)

    async def get_feed(self, feed_id: str) -> CalendarFeed | None:
        if not _FEED_ID.match(feed_id):
            return None
        return await self._feed(calendar_feeds.c.id == feed_id)

    async def revoke_feed(self, feed_id: CalendarFeedId, at: float) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(calendar_feeds)
                .where(calendar_feeds.c.id == feed_id, calendar_feeds.c.revoked_at.is_(None))
                .values(revoked_at=_at(at))
            )

    async def _feed(self, condition: Any) -> CalendarFeed | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(calendar_feeds).where(condition))).first()
        if row is None:
            return None
        return CalendarFeed(
            id=CalendarFeedId(row.id),
            owner=FeedOwner(row.owner),
            owner_id=row.owner_id,
            created_by=UserId(row.created_by),
            created_at=row.created_at.timestamp(),
            revoked_at=_epoch(row.revoked_at),
        )


def _enrollment(row: Row[Any]) -> Enrollment:
    return Enrollment(
        id=EnrollmentId(row.id),
        track_id=TrackId(row.track_id),
        client_id=ClientId(row.client_id),
        created_by=UserId(row.created_by),
        created_at=row.created_at.timestamp(),
        expires_at=row.expires_at.timestamp(),
        revoked_at=_epoch(row.revoked_at),
    )
