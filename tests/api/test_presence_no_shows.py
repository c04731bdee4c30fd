"""Issue 16 over a real socket: a staff presence stream shows a track occurrence's room with who is expected,
waiting, present and (at start + N minutes, pushed by the no-show watcher) a no-show; a late arrival clears
the flag. The server's clock is settable (real seconds keep passing from where the test sets it)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.api import signal_support as ss
from tests.api.test_presence_stream import _next, _open, _staff
from tests.support import LiveServer
from vIOP.ids import ClientId, EnrollmentId, RoomId, UserId, new_client_id, new_enrollment_id, new_track_id
from vIOP.program.ports import Enrollment, Track, TrackKind
from vIOP.program.schedule import Schedule
from vIOP.session.services import Services
from vIOP.session.tracks import create_track

NY = ZoneInfo("America/New_York")


class SettableClock:
    def __init__(self, wall: datetime) -> None:
        self.offset = wall.timestamp() - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset

    def set(self, wall: datetime) -> None:
        self.offset = wall.timestamp() - time.time()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(datetime(2026, 3, 2, 17, 50, tzinfo=NY))


@pytest.fixture
async def live(live_server_factory: Callable[..., Any], clock: SettableClock) -> AsyncIterator[LiveServer]:
    async with live_server_factory(clock=clock) as server:
        yield server


async def enroll(services: Services, track: Track, name: str, now: float) -> ClientId:
    enrollment = Enrollment(
        id=EnrollmentId(new_enrollment_id()), track_id=track.id, client_id=ClientId(new_client_id()),
        created_by=track.host_id, created_at=now, expires_at=now + 30 * 86400,
    )  # fmt: skip
    await services.tracks.add_enrollment(enrollment, new_client_id().encode(), name)
    return enrollment.client_id


def expected_of(message: dict[str, Any], room_id: str) -> dict[str, tuple[str, str]] | None:
    rooms = message["rooms"] if message["type"] == "presence_snapshot" else [message["room"]]
    for room in rooms:
        if room["room_id"] == room_id and room["occurrence"] is not None:
            return {e["client_id"]: (e["display_name"], e["status"]) for e in room["occurrence"]["expected"]}
    return None


async def test_staff_stream_shows_expected_waiting_present_and_the_no_show_flag(
    live: LiveServer, clock: SettableClock
) -> None:
    services = ss.services(live)
    dr = await ss.clinician(live, "dr.track")
    host = UserId(dr.principal.subject)
    track = Track(
        id=new_track_id(), title="Evening IOP",
        schedule=Schedule("America/New_York", datetime(2026, 3, 2, 18, 0), "FREQ=DAILY", 180),
        kind=TrackKind.GROUP, capacity=12, host_id=host, cohost_ids=frozenset(), created_by=host,
        created_at=clock(),
    )  # fmt: skip
    await create_track(services, track)
    ana, bo, cy = [await enroll(services, track, name, clock()) for name in ("Ana", "Bo", "Cy")]
    scheduler = services.live.track_scheduler
    assert scheduler is not None
    await scheduler.tick()  # 17:50: the lobby is open (the running loop may have made the room already)
    occurrence_key = datetime(2026, 3, 2, 18, 0, tzinfo=NY)
    room_id = RoomId((await services.tracks.rooms_of(track.id, [occurrence_key]))[occurrence_key])
    entered = await services.rooms.host_enter(room_id, user_id=host, display_name="Dr Lee")
    assert entered.participant is not None
    await services.rooms.join(room_id, entered.participant.id)
    knocked = await services.rooms.knock(room_id, subject=ana, display_name="Ana")
    assert knocked.participant is not None
    await services.rooms.admit(room_id, by=entered.participant.id, participant_id=knocked.participant.id)
    await services.rooms.knock(room_id, subject=bo, display_name="Bo")

    staff, session = await _staff(live)
    ws = await _open(live, staff, session)
    try:
        snapshot = await _next(ws, "presence_snapshot")
        assert expected_of(snapshot, room_id) == {
            ana: ("Ana", "present"), bo: ("Bo", "waiting"), cy: ("Cy", "expected"),
        }  # fmt: skip
        [room] = [r for r in snapshot["rooms"] if r["room_id"] == room_id]
        occurrence = room["occurrence"]
        assert occurrence["track_id"] == track.id
        # Hours this program week, per client, against the 9 hours (nobody attended in that week yet).
        assert (occurrence["today"], occurrence["week_start"], occurrence["week_end"]) == (
            "2026-03-02", "2026-03-02", "2026-03-08",
        )  # fmt: skip
        assert {(e["week_minutes"], e["week_minutes_missing"]) for e in occurrence["expected"]} == {
            (0.0, 540.0)
        }
        assert (
            occurrence["no_show_at"]
            == occurrence["starts_at"] + 600
            == datetime(2026, 3, 2, 18, 10, tzinfo=NY).timestamp()
        )

        # 18:10: the watcher's round (woken, as its loop is at each limit) pushes the flag, unasked.
        clock.set(datetime(2026, 3, 2, 18, 10, tzinfo=NY))
        watcher = services.live.no_show_watcher
        assert watcher is not None
        watcher.wake()
        flagged = await _next(
            ws,
            "presence_room",
            within=10,
            where=lambda m: (expected_of(m, room_id) or {}).get(cy, ("", ""))[1] == "no_show",
        )
        assert expected_of(flagged, room_id) == {
            ana: ("Ana", "present"), bo: ("Bo", "waiting"), cy: ("Cy", "no_show"),
        }  # fmt: skip

        # Cy knocks late: the next view has them waiting, no flag.
        await services.rooms.knock(room_id, subject=cy, display_name="Cy")
        late = await _next(
            ws,
            "presence_room",
            where=lambda m: (expected_of(m, room_id) or {}).get(cy, ("", ""))[1] == "waiting",
        )
        assert expected_of(late, room_id) == {
            ana: ("Ana", "present"),
            bo: ("Bo", "waiting"),
            cy: ("Cy", "waiting"),
        }
    finally:
        await ws.close()


async def test_a_room_made_by_hand_has_no_occurrence(live: LiveServer) -> None:
    dr = await ss.clinician(live)
    scope = await ss.room(live, dr)
    staff, session = await _staff(live)
    ws = await _open(live, staff, session)
    try:
        snapshot = await _next(ws, "presence_snapshot")
        [room] = snapshot["rooms"]
        assert room["room_id"] == scope.room_id and room["occurrence"] is None
    finally:
        await ws.close()
