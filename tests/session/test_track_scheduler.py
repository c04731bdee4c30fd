"""Occurrences become rooms exactly when their lobby opens (vIOP.session.tracks), with an injected clock, on a
real SQLite store and a real redis-server; two app instances on the same stores make one room per occurrence."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select

from tests.auth.support import CHEAP_ARGON2
from tests.support import test_settings
from vIOP.app import close_services, open_services, start_live
from vIOP.auth.accounts import AccountAdmin
from vIOP.auth.passwords import PasswordHasher
from vIOP.auth.permissions import Role
from vIOP.ids import RoomId, UserId, new_track_id
from vIOP.program.ports import Track, TrackKind
from vIOP.program.schedule import Schedule
from vIOP.rooms.clock import ManualClock
from vIOP.session.services import Services
from vIOP.session.tracks import TrackScheduler, create_track
from vIOP.storage.accounts_sql import SqlAccountStore
from vIOP.storage.schema import rooms, track_occurrences

NY = ZoneInfo("America/New_York")


def at(*wall: int) -> float:
    return datetime(*wall, tzinfo=NY).timestamp()  # type: ignore[misc]


@pytest.fixture
async def clock() -> ManualClock:
    return ManualClock(at(2026, 3, 2, 12, 0))


@pytest.fixture
async def services(
    data_dir: Path, redis_url: str, redis_client: aioredis.Redis, clock: ManualClock
) -> AsyncIterator[Services]:
    opened = await open_services(test_settings(data_dir, redis_url), clock=clock)
    try:
        yield opened
    finally:
        await close_services(opened)


async def clinician(services: Services, name: str) -> UserId:
    ring = services.storage.keys
    admin = AccountAdmin(
        SqlAccountStore(services.storage.db, ring),
        lambda username: ring.blind_index("username", username),
        PasswordHasher(CHEAP_ARGON2),
        require_totp=False,
    )
    created = await admin.create(Role.CLINICIAN, name, "correct horse battery staple", with_totp=False)
    return UserId(created.account.id)


async def evening_track(services: Services, clock: ManualClock, **schedule: object) -> Track:
    host = await clinician(services, "host.evening")
    cohost = await clinician(services, "cohost.evening")
    values: dict[str, object] = {
        "time_zone": "America/New_York",
        "first_start": datetime(2026, 3, 2, 18, 0),
        "rrule": "FREQ=WEEKLY;BYDAY=MO,WE,TH",
        "duration_minutes": 180,
    }
    values.update(schedule)
    track = Track(
        id=new_track_id(), title="Evening IOP", schedule=Schedule(**values),  # type: ignore[arg-type]
        kind=TrackKind.GROUP, capacity=12, host_id=host, cohost_ids=frozenset({cohost}),
        created_by=host, created_at=clock(),
    )  # fmt: skip
    return await create_track(services, track)


async def walk(scheduler: TrackScheduler, clock: ManualClock, until: float) -> list[tuple[float, str]]:
    """Run the scheduler as its loop does, to ``until``: a round at each time it says the next lobby opens,
    and one a second before (which must make nothing). Returns (time, room) for each room made."""
    made: list[tuple[float, str]] = []
    while (opens := await scheduler.next_lobby_at()) is not None and opens < until:
        clock.now = opens - 1
        assert await scheduler.tick() == [], "a room was made before its lobby opened"
        clock.now = opens
        made += [(clock(), room) for room in await scheduler.tick()]
    return made


async def test_rooms_open_exactly_when_each_lobby_opens_across_the_dst_change(
    services: Services, clock: ManualClock
) -> None:
    track = await evening_track(services, clock)
    made = await walk(TrackScheduler(services), clock, at(2026, 3, 12, 23, 0))
    lobbies = [
        at(2026, 3, 2, 17, 45), at(2026, 3, 4, 17, 45), at(2026, 3, 5, 17, 45),
        # Sunday 8 March: daylight time; the lobby still opens at 17:45 local, an hour earlier in UTC
        at(2026, 3, 9, 17, 45), at(2026, 3, 11, 17, 45), at(2026, 3, 12, 17, 45),
    ]  # fmt: skip
    assert [when for when, _ in made] == lobbies
    assert at(2026, 3, 9, 17, 45) - at(2026, 3, 5, 17, 45) == timedelta(days=4, hours=-1).total_seconds()
    for when, room_id in made:
        record = await services.room_directory.get(room_id)
        assert record.title == "Evening IOP"
        assert record.host_ids == track.clinician_ids
        live = await services.rooms.room(record.id)
        assert live.host_ids == track.clinician_ids
        occurrence = await services.tracks.occurrence_by_room(room_id)
        assert occurrence is not None and occurrence.track_id == track.id
        assert occurrence.lobby_opens_at.timestamp() == when
        assert occurrence.starts_at.timestamp() == when + 15 * 60
        assert occurrence.title == "Evening IOP"


async def test_an_exception_date_skips_and_a_moved_occurrence_moves(
    services: Services, clock: ManualClock
) -> None:
    await evening_track(
        services,
        clock,
        skipped=frozenset({datetime(2026, 3, 4, 18, 0)}),
        moved={datetime(2026, 3, 5, 18, 0): datetime(2026, 3, 6, 10, 0)},
    )
    scheduler = TrackScheduler(services)
    made = await walk(scheduler, clock, at(2026, 3, 7, 0, 0))
    assert [when for when, _ in made] == [at(2026, 3, 2, 17, 45), at(2026, 3, 6, 9, 45)]
    for skipped_or_moved_away in (at(2026, 3, 4, 17, 45), at(2026, 3, 4, 19, 0), at(2026, 3, 5, 17, 45)):
        clock.now = skipped_or_moved_away
        assert await scheduler.tick() == []
    moved = await services.tracks.occurrence_by_room(made[1][1])
    assert moved is not None
    assert moved.starts_at == datetime(2026, 3, 6, 10, 0, tzinfo=NY).astimezone(UTC)
    assert moved.key == datetime(2026, 3, 5, 18, 0, tzinfo=NY).astimezone(UTC)  # keeps its identity


async def test_no_room_before_the_lobby_opens_and_one_per_occurrence_after(
    services: Services, clock: ManualClock
) -> None:
    await evening_track(services, clock)
    scheduler = TrackScheduler(services)
    clock.now = at(2026, 3, 2, 17, 44, 59)
    assert await scheduler.tick() == []
    clock.now = at(2026, 3, 2, 17, 45)
    (room_id,) = await scheduler.tick()
    clock.advance(600)
    assert await scheduler.tick() == []  # made already
    occurrence = await services.tracks.occurrence_by_room(room_id)
    assert occurrence is not None
    assert await services.tracks.enrolled_clients(occurrence) == []


async def test_two_app_instances_on_the_same_stores_make_one_room_per_occurrence(
    data_dir: Path, redis_url: str, redis_client: aioredis.Redis, clock: ManualClock
) -> None:
    settings = test_settings(data_dir, redis_url)
    first = await open_services(settings, clock=clock)
    second = await open_services(settings, clock=clock)
    try:
        await evening_track(first, clock)
        schedulers = [TrackScheduler(first), TrackScheduler(second)]
        made: list[str] = []
        for lobby in (at(2026, 3, 2, 17, 45), at(2026, 3, 4, 17, 45), at(2026, 3, 5, 17, 45)):
            clock.now = lobby
            for _ in range(3):  # both race every round; later rounds find the room made
                rounds = await asyncio.gather(*(s.tick() for s in schedulers))
                made += [room for found in rounds for room in found]
        assert len(made) == 3 and len(set(made)) == 3
        async with first.storage.db.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(track_occurrences))).scalar() == 3
            assert (await conn.execute(select(func.count()).select_from(rooms))).scalar() == 3
        for room_id in made:
            await second.rooms.room(room_id)  # its live state is there for every process
    finally:
        await close_services(second)
        await close_services(first)


async def test_the_running_loop_opens_the_room_once_the_lobby_opens(
    services: Services, clock: ManualClock
) -> None:
    """The live loop (start_live), not a test-driven round: woken when the clock reaches the lobby."""
    track = await evening_track(services, clock)
    start_live(services)
    scheduler = services.live.track_scheduler
    assert scheduler is not None
    key = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    assert await services.tracks.rooms_of(track.id, [key]) == {}  # 12:00: its first round made nothing
    clock.now = at(2026, 3, 2, 17, 45)
    scheduler.wake()
    async with asyncio.timeout(10):
        while not await services.tracks.rooms_of(track.id, [key]):
            await asyncio.sleep(0.05)


async def test_attendance_learns_the_occurrence_behind_a_room_the_scheduler_made(
    services: Services, clock: ManualClock
) -> None:
    """The attendance report's occurrence port is wired to the track store: a room opened for an
    occurrence reports the track's id, title and scheduled start; a room made by hand reports none."""
    track = await evening_track(services, clock)
    [(when, room_id)] = await walk(TrackScheduler(services), clock, at(2026, 3, 2, 23, 0))
    assert services.occurrences is not None
    ref = await services.occurrences.occurrence_of(RoomId(room_id))
    assert ref is not None
    assert (ref.track_id, ref.title, ref.starts_at) == (str(track.id), "Evening IOP", when + 15 * 60)
    assert await services.occurrences.occurrence_of(RoomId("rm_made_by_hand")) is None


async def test_two_app_processes_on_the_same_stores_make_one_room_per_occurrence(
    data_dir: Path, redis_url: str, redis_client: aioredis.Redis, clock: ManualClock
) -> None:
    """As the test above, with two real OS processes (``tests/session/track_worker.py``) racing each round."""
    settings = test_settings(data_dir, redis_url)
    services = await open_services(settings, clock=clock)
    try:
        await evening_track(services, clock)
    finally:
        await close_services(services)
    lobbies = [at(2026, 3, 2, 17, 45), at(2026, 3, 4, 17, 45), at(2026, 3, 5, 17, 45)]
    worker = [
        sys.executable,
        "-m",
        "tests.session.track_worker",
        str(data_dir),
        redis_url,
        *map(str, lobbies),
    ]
    procs = [
        await asyncio.create_subprocess_exec(*worker, stdout=asyncio.subprocess.PIPE, cwd=Path.cwd())
        for _ in range(2)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    made = [line for out, _ in outputs for line in out.decode().split()]
    assert len(made) == 3 and len(set(made)) == 3, made  # each occurrence's room made once, by one of them
    services = await open_services(settings, clock=clock)
    try:
        async with services.storage.db.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(track_occurrences))).scalar() == 3
            assert (await conn.execute(select(func.count()).select_from(rooms))).scalar() == 3
        for room_id in made:
            assert (await services.rooms.room(RoomId(room_id))).host_ids  # live in Redis, once
    finally:
        await close_services(services)
