"""Expected vs present, and no-shows at run time (docs/PROGRAM.md "No-shows and expected vs present").

:func:`occurrence_presence` is what the staff presence stream adds to a track occurrence's room: who the
occurrence expects (its enrolled clients), and for each whether they are waiting, present, still expected
or a no-show (:mod:`vIOP.program.noshow` holds the rule). :class:`NoShowWatcher` runs in every process: at
each occurrence's no-show limit it decides, once per client across every process (a Redis ``SET NX`` per
occurrence and client), which expected clients are absent, emits ``client.no_show`` for each, and refreshes
the room on this process's presence streams so the flag appears live (every process does that refresh; only
the claim's winner emits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from vIOP.errors import VIOPError
from vIOP.ids import ClientId
from vIOP.program.noshow import (
    Attendance,
    NoShowClaims,
    NoShowDecision,
    attendance_by_client,
    is_past_limit,
    no_show_at,
    no_shows,
    occurrence_id,
)
from vIOP.program.schedule import Occurrence
from vIOP.rooms.attendance import WEEK_MINUTES_REQUIRED, WeekStart, daily_totals, weekly_totals
from vIOP.rooms.participant import SEATED_STATES, ParticipantState, Role
from vIOP.rooms.ports import AttendanceQuery
from vIOP.rooms.room import Room
from vIOP.session.services import Services
from vIOP.storage.redis_noshow import RedisNoShowClaims
from vIOP.webhooks.events import WebhookEventType

log = logging.getLogger("vIOP.noshow")

MAX_SLEEP_SECONDS: Final = 30.0
# A decision's claim outlives any occurrence (at most 12 h long) by far; then Redis forgets it.
CLAIM_KEEP_SECONDS: Final = 3 * 86400


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def here_now(room: Room) -> tuple[frozenset[str], frozenset[str]]:
    """The client ids waiting in the room's lobby, and those admitted or in the room."""
    waiting: set[str] = set()
    present: set[str] = set()
    for p in room.active():
        if p.role is not Role.CLIENT:
            continue
        if p.state in SEATED_STATES:
            present.add(p.subject)
        elif p.state in (ParticipantState.WAITING, ParticipantState.KNOCKING):
            waiting.add(p.subject)
    return frozenset(waiting), frozenset(present)


@dataclass(frozen=True, slots=True)
class ExpectedClientState:
    client_id: ClientId
    attendance: Attendance


@dataclass(frozen=True, slots=True)
class OccurrencePresence:
    occurrence: Occurrence
    no_show_at: datetime
    expected: tuple[ExpectedClientState, ...]


async def _states(
    services: Services, room: Room, occurrence: Occurrence, now: float
) -> dict[ClientId, Attendance]:
    """Where each expected client is. Only when someone would be flagged is the attendance ledger read
    (one query for the room): an absent client with a stay in this session has left, not failed to come."""
    minutes = services.settings.no_show_minutes
    waiting, present = here_now(room)
    expected = await services.tracks.enrolled_clients(occurrence)
    states = attendance_by_client(
        expected, waiting=waiting, present=present, occurrence=occurrence, minutes=minutes, now=now
    )
    ledger = services.rooms.attendance
    if ledger is None or not no_shows(states):
        return states
    stays = await ledger.intervals(AttendanceQuery(room_id=room.id, session_id=room.session_id))
    stayed = frozenset(i.subject for i in stays)
    return attendance_by_client(
        expected, waiting=waiting, present=present, occurrence=occurrence, minutes=minutes, now=now,
        stayed=stayed,
    )  # fmt: skip


async def occurrence_presence(services: Services, room: Room, occurrence: Occurrence) -> OccurrencePresence:
    """The expected/waiting/present/left/no-show projection of the room opened for ``occurrence``."""
    states = await _states(services, room, occurrence, services.clock())
    return OccurrencePresence(
        occurrence,
        no_show_at(occurrence, services.settings.no_show_minutes),
        tuple(ExpectedClientState(c, a) for c, a in states.items()),
    )


@dataclass(frozen=True, slots=True)
class WeekHours:
    """Each expected client's attended minutes in the program week so far (Monday to Sunday in the track's
    time zone), counted by the billing code (``vIOP.rooms.attendance``: daily then weekly totals)."""

    today: date
    week_start: date
    minutes: Mapping[ClientId, float]

    @property
    def week_end(self) -> date:
        return self.week_start + timedelta(days=6)

    def missing(self, client_id: ClientId) -> float:
        return round(max(0.0, WEEK_MINUTES_REQUIRED - self.minutes.get(client_id, 0.0)), 2)


async def week_hours(
    services: Services, occurrence: Occurrence, clients: Iterable[ClientId], now: float
) -> WeekHours | None:
    """The week's minutes so far of ``clients`` (one ledger query per client); None without a ledger."""
    ledger = services.rooms.attendance
    if ledger is None:
        return None
    zone = (await services.tracks.get_track(occurrence.track_id)).schedule.zone
    today = datetime.fromtimestamp(now, zone).date()
    first = WeekStart.MONDAY.week_of(today)
    since = datetime.combine(first, time.min, zone).timestamp()
    minutes: dict[ClientId, float] = {}
    for client_id in clients:
        stays = await ledger.intervals(AttendanceQuery(subject=client_id, start=since, end=now))
        weeks = weekly_totals(daily_totals(stays, now=now, tz=zone))
        minutes[client_id] = next((w.minutes for w in weeks if w.week_start == first), 0.0)
    return WeekHours(today, first, minutes)


class NoShowWatcher:
    """Decides no-shows at each occurrence's limit. :meth:`tick` is one round (tests call it with an
    injected clock); :meth:`run` repeats it, sleeping until the next limit (at most
    :data:`MAX_SLEEP_SECONDS`, or until :meth:`wake`)."""

    def __init__(self, services: Services, claims: NoShowClaims | None = None) -> None:
        self._services = services
        self._claims: NoShowClaims = claims if claims is not None else RedisNoShowClaims(services.redis)
        self._wake = asyncio.Event()
        self._settled: set[str] = set()  # occurrence ids this process has decided (in memory only)

    def wake(self) -> None:
        self._wake.set()

    async def _due(self, now: float) -> list[Occurrence]:
        """Occurrences with a room whose no-show limit has passed and that have not ended."""
        minutes = self._services.settings.no_show_minutes
        due: list[Occurrence] = []
        for track in await self._services.tracks.all_tracks():
            found = [
                o
                for o in track.occurrences(_utc(now) - timedelta(minutes=minutes), _utc(now) + timedelta(seconds=1))
                if is_past_limit(o, minutes, now) and now < o.ends_at.timestamp()
                and occurrence_id(o) not in self._settled
            ]  # fmt: skip
            if not found:
                continue
            rooms = await self._services.tracks.rooms_of(track.id, [o.key for o in found])
            due.extend(o.with_room(rooms[o.key]) for o in found if o.key in rooms)
        return due

    async def tick(self) -> list[NoShowDecision]:
        """Decide every due occurrence; the no-shows this process won (and emitted)."""
        services = self._services
        now = services.clock()
        decided: list[NoShowDecision] = []
        for occurrence in await self._due(now):
            assert occurrence.room_id is not None
            try:
                room = await services.rooms.room(occurrence.room_id)
            except VIOPError:
                continue  # its live state is gone (ended): nobody to flag
            decided.extend(await self._decide(occurrence, room, now))
            self._settled.add(occurrence_id(occurrence))
            for stream in list(services.live.presence_streams):
                stream.refresh(occurrence.room_id)
        return decided

    async def _decide(self, occurrence: Occurrence, room: Room, now: float) -> list[NoShowDecision]:
        services = self._services
        states = await _states(services, room, occurrence, now)
        decided: list[NoShowDecision] = []
        oid = occurrence_id(occurrence)
        for client_id in no_shows(states):
            if not await self._claims.claim(oid, client_id, keep_seconds=CLAIM_KEEP_SECONDS):
                continue  # another process (or an earlier round) decided it
            payload = {
                "client_id": client_id,
                "room_id": occurrence.room_id,
                "track_id": occurrence.track_id,
                "occurrence_id": oid,
                "starts_at": occurrence.starts_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "flagged_at": _utc(now).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "minutes_late": int((now - occurrence.starts_at.timestamp()) // 60),
            }
            try:
                await services.webhook_events.emit(WebhookEventType.CLIENT_NO_SHOW, payload)
            except Exception:
                await self._claims.release(oid, client_id)  # the next round decides it again
                raise
            log.info("client no-show", extra={"kind": "noshow", "room_id": occurrence.room_id})
            decided.append(NoShowDecision(occurrence, client_id, now))
        return decided

    async def seconds_to_next_limit(self) -> float:
        services = self._services
        now = services.clock()
        minutes = timedelta(minutes=services.settings.no_show_minutes)
        soonest: float | None = None
        for track in await services.tracks.all_tracks():
            for o in track.occurrences(_utc(now) - minutes, _utc(now) + timedelta(seconds=MAX_SLEEP_SECONDS)):
                limit = (o.starts_at + minutes).timestamp()
                if limit > now:
                    soonest = limit if soonest is None else min(soonest, limit)
        if soonest is None:
            return MAX_SLEEP_SECONDS
        return min(MAX_SLEEP_SECONDS, max(0.05, soonest - now))

    async def run(self) -> None:
        services = self._services

        async def wake_at_stop() -> None:
            await services.stopping.wait()
            self._wake.set()

        watcher = asyncio.create_task(wake_at_stop())
        try:
            while not services.stopping.is_set():
                self._wake.clear()
                try:
                    await self.tick()
                    pause = await self.seconds_to_next_limit()
                except Exception:
                    log.exception("no-show round failed")
                    pause = MAX_SLEEP_SECONDS
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=pause)
        finally:
            watcher.cancel()
