"""No-shows at run time (vIOP.session.noshow), with an injected clock, a real SQLite store and a real
redis-server: the watcher decides at start + N minutes, emits ``client.no_show`` once per client per
occurrence even with two app instances racing, and the presence projection clears the flag on arrival."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.session.test_track_scheduler import at, clinician
from tests.support import test_settings
from vIOP.app import close_services, open_services
from vIOP.ids import (
    ClientId,
    EnrollmentId,
    ParticipantId,
    RoomId,
    SessionId,
    UserId,
    new_client_id,
    new_enrollment_id,
    new_id,
    new_participant_id,
    new_track_id,
)
from vIOP.program.noshow import Attendance
from vIOP.program.ports import Enrollment, Track, TrackKind
from vIOP.program.schedule import Schedule
from vIOP.rooms.attendance import CloseMark, CloseReason, OpenMark
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.participant import Role as ParticipantRole
from vIOP.session.noshow import NoShowWatcher, occurrence_presence, week_hours
from vIOP.session.services import Services
from vIOP.session.tracks import TrackScheduler, create_track
from vIOP.session.webhooks import subscribe
from vIOP.webhooks.events import PayloadValue, WebhookEventType


@pytest.fixture
async def clock() -> ManualClock:
    return ManualClock(at(2026, 3, 2, 17, 0))


async def evening_with_clients(
    services: Services, clock: ManualClock, names: list[str]
) -> tuple[Track, list[ClientId]]:
    host = await clinician(services, "host.noshow")
    track = Track(
        id=new_track_id(), title="Evening IOP",
        schedule=Schedule("America/New_York", datetime(2026, 3, 2, 18, 0), "FREQ=DAILY", 180),
        kind=TrackKind.GROUP, capacity=12, host_id=host, cohost_ids=frozenset(), created_by=host,
        created_at=clock(),
    )  # fmt: skip
    await create_track(services, track)
    clients: list[ClientId] = []
    for name in names:
        enrollment = Enrollment(
            id=EnrollmentId(new_enrollment_id()), track_id=track.id, client_id=ClientId(new_client_id()),
            created_by=UserId(host), created_at=clock(), expires_at=clock() + 30 * 86400,
        )  # fmt: skip
        await services.tracks.add_enrollment(enrollment, secrets.token_bytes(32), name)
        clients.append(enrollment.client_id)
    return track, clients


async def no_show_events(services: Services) -> list[dict[str, PayloadValue]]:
    """Every client.no_show row in the outbox, read by claiming and settling each in turn."""
    store = services.webhooks
    assert store is not None
    found: list[dict[str, PayloadValue]] = []
    now = datetime.now(UTC)
    while rows := await store.claim("test-reader", now, 30, 100):
        for row in rows:
            if row.event_type is WebhookEventType.CLIENT_NO_SHOW:
                found.append(row.payload)
            await store.delivered(row, "test-reader", now, 200)
    return found


async def seat(services: Services, room_id: RoomId, host: UserId, client: ClientId) -> ParticipantId:
    room = await services.rooms.room(room_id)
    present = room.active_of(host)
    if present is None:
        entered = await services.rooms.host_enter(room_id, user_id=host, display_name="Dr Lee")
        assert entered.participant is not None
        present = entered.participant
    knocked = await services.rooms.knock(room_id, subject=client, display_name="Ana")
    assert knocked.participant is not None
    await services.rooms.admit(room_id, by=present.id, participant_id=knocked.participant.id)
    return knocked.participant.id


async def test_no_show_at_start_plus_n_minutes_once_per_client_with_two_app_instances(
    data_dir: Path, redis_url: str, redis_client: aioredis.Redis, clock: ManualClock
) -> None:
    settings = test_settings(data_dir, redis_url)
    first = await open_services(settings, clock=clock)
    second = await open_services(settings, clock=clock)
    try:
        assert first.webhooks is not None
        await subscribe(
            first.webhooks, "http://127.0.0.1:9/ehr", ["client.no_show"],
            allow_phi=False, allow_private=True, created_by=None,
        )  # fmt: skip
        track, (ana, bo, cy) = await evening_with_clients(first, clock, ["Ana", "Bo", "Cy"])
        clock.now = at(2026, 3, 2, 17, 45)
        (room_id,) = await TrackScheduler(first).tick()
        await seat(first, room_id, track.host_id, ana)  # present
        await first.rooms.knock(room_id, subject=bo, display_name="Bo")  # waiting
        watchers = [NoShowWatcher(first), NoShowWatcher(second)]

        clock.now = at(2026, 3, 2, 18, 9, 59)  # a second before the limit: nobody is a no-show yet
        assert await asyncio.gather(*(w.tick() for w in watchers)) == [[], []]
        occurrence = await first.tracks.occurrence_by_room(room_id)
        assert occurrence is not None
        view = await occurrence_presence(first, await first.rooms.room(room_id), occurrence)
        assert {e.client_id: e.attendance for e in view.expected} == {
            ana: Attendance.PRESENT, bo: Attendance.WAITING, cy: Attendance.EXPECTED,
        }  # fmt: skip

        clock.now = at(2026, 3, 2, 18, 10)
        decided = []
        for _ in range(3):  # both race every round; later rounds decide nothing more
            rounds = await asyncio.gather(*(w.tick() for w in watchers))
            decided += [d for found in rounds for d in found]
        assert [d.client_id for d in decided] == [cy]
        for watcher in (NoShowWatcher(first), NoShowWatcher(second)):  # fresh processes: still decided
            assert await watcher.tick() == []
        [event] = await no_show_events(first)
        assert event == {
            "client_id": cy, "room_id": room_id, "track_id": track.id,
            "occurrence_id": f"{track.id}.20260302T230000Z",
            "starts_at": "2026-03-02T23:00:00Z", "flagged_at": "2026-03-02T23:10:00Z", "minutes_late": 10,
        }  # fmt: skip
        view = await occurrence_presence(second, await second.rooms.room(room_id), occurrence)
        assert {e.client_id: e.attendance for e in view.expected}[cy] is Attendance.NO_SHOW
        # What the decision stores in Redis: one key per decided (occurrence, client), ids only.
        [claim] = await redis_client.keys("viop:noshow:*")
        assert claim.decode() == f"viop:noshow:{track.id}.20260302T230000Z:{cy}"
        assert await redis_client.get(claim) == b"1"

        # Cy arrives late: the dashboard's flag clears; the webhook stays sent, and is not sent again.
        clock.now = at(2026, 3, 2, 18, 25)
        await first.rooms.knock(room_id, subject=cy, display_name="Cy")
        view = await occurrence_presence(first, await first.rooms.room(room_id), occurrence)
        assert {e.client_id: e.attendance for e in view.expected}[cy] is Attendance.WAITING
        assert await asyncio.gather(*(w.tick() for w in watchers)) == [[], []]
        assert await no_show_events(first) == []
    finally:
        await close_services(second)
        await close_services(first)


async def test_a_client_who_came_and_left_before_the_limit_has_left_and_is_no_no_show(
    data_dir: Path, redis_url: str, redis_client: aioredis.Redis, clock: ManualClock
) -> None:
    """Being here is checked at the limit, but the attendance ledger remembers who was in the room: a client
    who was seated and left before the limit shows "left", and no client.no_show is emitted for them."""
    services = await open_services(test_settings(data_dir, redis_url), clock=clock)
    try:
        assert services.webhooks is not None
        await subscribe(
            services.webhooks, "http://127.0.0.1:9/ehr", ["client.no_show"],
            allow_phi=False, allow_private=True, created_by=None,
        )  # fmt: skip
        track, (ana, cy) = await evening_with_clients(services, clock, ["Ana", "Cy"])
        clock.now = at(2026, 3, 2, 17, 45)
        (room_id,) = await TrackScheduler(services).tick()
        ana_seat = await seat(services, room_id, track.host_id, ana)
        await services.rooms.join(room_id, ana_seat)
        await services.rooms.leave(room_id, ana_seat)
        await services.rooms.flush_attendance()
        clock.now = at(2026, 3, 2, 18, 10)
        decided = await NoShowWatcher(services).tick()
        assert [d.client_id for d in decided] == [cy]
        assert [e["client_id"] for e in await no_show_events(services)] == [cy]
        occurrence = await services.tracks.occurrence_by_room(room_id)
        assert occurrence is not None
        view = await occurrence_presence(services, await services.rooms.room(room_id), occurrence)
        assert {e.client_id: e.attendance for e in view.expected} == {
            ana: Attendance.LEFT, cy: Attendance.NO_SHOW,
        }  # fmt: skip
    finally:
        await close_services(services)


async def test_a_room_made_by_hand_and_an_occurrence_nobody_missed_emit_nothing(
    data_dir: Path, redis_url: str, redis_client: aioredis.Redis, clock: ManualClock
) -> None:
    services = await open_services(test_settings(data_dir, redis_url), clock=clock)
    try:
        assert services.webhooks is not None
        await subscribe(
            services.webhooks, "http://127.0.0.1:9/ehr", ["client.no_show"],
            allow_phi=False, allow_private=True, created_by=None,
        )  # fmt: skip
        track, (ana,) = await evening_with_clients(services, clock, ["Ana"])
        clock.now = at(2026, 3, 2, 17, 45)
        (room_id,) = await TrackScheduler(services).tick()
        await seat(services, room_id, track.host_id, ana)
        clock.now = at(2026, 3, 2, 18, 30)
        assert await NoShowWatcher(services).tick() == []
        assert await no_show_events(services) == []
    finally:
        await close_services(services)


async def stay(services: Services, room_id: RoomId, subject: ClientId, start: float, stop: float) -> None:
    ledger = services.rooms.attendance
    assert ledger is not None
    ids = (room_id, SessionId(new_id("ss")), new_participant_id(), subject)
    await ledger.open(OpenMark(*ids, role=ParticipantRole.CLIENT, at=start), 60.0)
    await ledger.close(CloseMark(*ids, at=stop, reason=CloseReason.LEFT))


async def test_each_expected_clients_hours_this_week_against_nine(
    data_dir: Path, redis_url: str, redis_client: aioredis.Redis, clock: ManualClock
) -> None:
    """Counted by the billing code in the track's time zone, Monday to Sunday: last Sunday's stay is last
    week's; Monday's 3 h and Wednesday's hour so far count."""
    services = await open_services(test_settings(data_dir, redis_url), clock=clock)
    try:
        _, (ana, bo) = await evening_with_clients(services, clock, ["Ana", "Bo"])
        clock.now = at(2026, 3, 4, 17, 45)  # Wednesday
        (room_id,) = await TrackScheduler(services).tick()
        await stay(services, room_id, ana, at(2026, 3, 1, 18, 0), at(2026, 3, 1, 21, 0))  # Sunday: last week
        await stay(services, room_id, ana, at(2026, 3, 2, 18, 0), at(2026, 3, 2, 21, 0))  # Monday: 3 h
        await stay(services, room_id, ana, at(2026, 3, 4, 18, 0), at(2026, 3, 4, 19, 0))  # today: 1 h
        clock.now = at(2026, 3, 4, 19, 0)
        occurrence = await services.tracks.occurrence_by_room(room_id)
        assert occurrence is not None
        week = await week_hours(services, occurrence, [ana, bo], clock())
        assert week is not None
        assert (week.today, week.week_start, week.week_end) == (
            date(2026, 3, 4),
            date(2026, 3, 2),
            date(2026, 3, 8),
        )
        assert dict(week.minutes) == {ana: 240.0, bo: 0.0}
        assert (week.missing(ana), week.missing(bo)) == (300.0, 540.0)
    finally:
        await close_services(services)
