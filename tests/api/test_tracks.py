"""Tracks, enrollment links and calendar feeds over HTTP (docs/PROGRAM.md), on a real server with an injected
clock: bad schedules are refused and store nothing; one enrollment link knocks on each occurrence."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import icalendar
import pytest
from sqlalchemy import func, select

from tests.api.support import Api, User, assert_error, bearer
from vIOP.auth.permissions import Role
from vIOP.rooms.clock import ManualClock
from vIOP.storage.schema import tracks

NY = ZoneInfo("America/New_York")


def at(*wall: int) -> float:
    return datetime(*wall, tzinfo=NY).timestamp()  # type: ignore[misc]


EVENING: dict[str, Any] = {
    "title": "Evening IOP",
    "time_zone": "America/New_York",
    "first_start": "2026-03-02T18:00",
    "rrule": "FREQ=WEEKLY;BYDAY=MO,WE,TH",
    "duration_minutes": 180,
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(at(2026, 3, 2, 12, 0))


@pytest.fixture
async def api(live_server_factory: Callable[..., Any], clock: ManualClock) -> AsyncIterator[Api]:
    async with (
        live_server_factory(clock=clock) as live,
        httpx.AsyncClient(base_url=live.base_url, timeout=30, trust_env=False) as http,
    ):
        yield Api(live, http)


async def create(api: Api, user: User, **changes: Any) -> httpx.Response:
    return await api.http.post("/api/v1/tracks", json={**EVENING, **changes}, headers=user.headers)


async def track_rows(api: Api) -> int:
    async with api.services.storage.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(tracks))).scalar_one())


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "unknown_time_zone"),
        ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "invalid_rrule"),
        ({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, "rrule_never_yields"),
        ({"rrule": "FREQ=DAILY;BYHOUR=8,12,18"}, "too_many_occurrences"),
        ({"first_start": "2026-03-01T02:30", "rrule": "FREQ=DAILY"}, "dst_gap"),
        ({"first_start": "2026-11-01T01:30", "rrule": "FREQ=DAILY"}, "dst_overlap"),
        ({"first_start": "2026-03-02 18:00"}, "bad_request"),
        ({"skip": ["2026-03-03T18:00"]}, "invalid_schedule"),
    ],
)
async def test_bad_schedules_get_a_clear_400_and_store_nothing(
    api: Api, changes: dict[str, Any], code: str
) -> None:
    clinician = await api.user(Role.CLINICIAN)
    assert_error(await create(api, clinician, **changes), 400, code)
    assert await track_rows(api) == 0


async def test_a_year_of_occurrences_at_most_per_request(api: Api) -> None:
    clinician = await api.user(Role.CLINICIAN)
    track = (await create(api, clinician)).json()
    url = f"/api/v1/tracks/{track['id']}/occurrences"
    too_long = {"from": "2026-03-01T00:00:00Z", "to": "2027-06-01T00:00:00Z"}
    assert_error(
        await api.http.get(url, params=too_long, headers=clinician.headers), 400, "too_many_occurrences"
    )
    week = {"from": "2026-03-01T00:00:00Z", "to": "2026-03-13T00:00:00Z"}
    listed = (await api.http.get(url, params=week, headers=clinician.headers)).json()["occurrences"]
    assert [o["local_start"] for o in listed] == [
        "2026-03-02T18:00", "2026-03-04T18:00", "2026-03-05T18:00",
        "2026-03-09T18:00", "2026-03-11T18:00", "2026-03-12T18:00",
    ]  # fmt: skip
    assert (
        listed[0]["starts_at"] == "2026-03-02T23:00:00Z" and listed[3]["starts_at"] == "2026-03-09T22:00:00Z"
    )


async def test_one_enrollment_link_for_every_occurrence(api: Api, clock: ManualClock) -> None:
    host = await api.user(Role.CLINICIAN)
    track = (await create(api, host)).json()
    enrolled = await api.http.post(
        f"/api/v1/tracks/{track['id']}/enrollments", json={"display_name": "Riley"}, headers=host.headers
    )
    assert enrolled.status_code == 201, enrolled.text
    token = enrolled.json()["enrollment_token"]
    assert enrolled.json()["join_url"].endswith(f"/join#enroll={token}")
    link = {"enrollment_token": token}

    upcoming = (await api.http.post("/api/v1/enrollments/next", json=link)).json()
    assert upcoming["phase"] == "upcoming" and upcoming["starts_at"] == "2026-03-02T23:00:00Z"
    assert upcoming["track_title"] == "Evening IOP" and upcoming["time_zone"] == "America/New_York"
    assert_error(await api.http.post("/api/v1/enrollments/knock", json=link), 409, "lobby_not_open")

    rooms = []
    for lobby in (at(2026, 3, 2, 17, 45), at(2026, 3, 4, 17, 50)):
        clock.now = lobby
        knocked = await api.http.post("/api/v1/enrollments/knock", json=link)
        assert knocked.status_code == 200, knocked.text
        device = knocked.json()["device_token"]
        room_id = knocked.json()["room_id"]
        rooms.append(room_id)
        room = await api.http.get(f"/api/v1/rooms/{room_id}", headers=bearer(device))
        assert room.status_code == 200 and room.json()["title"] == "Evening IOP"
        ticket = await api.http.post(
            "/api/v1/signal-tickets", json={"room_id": room_id}, headers=bearer(device)
        )
        assert ticket.status_code == 200, ticket.text
        occurrence = await api.services.tracks.occurrence_by_room(room_id)
        assert occurrence is not None
        assert await api.services.tracks.enrolled_clients(occurrence) == [enrolled.json()["client_id"]]
        # a client sees nothing of the program beyond their own link
        listing = await api.http.get(f"/api/v1/tracks/{track['id']}/enrollments", headers=bearer(device))
        assert listing.status_code == 403
    assert len(set(rooms)) == 2

    # two days on, the host's sign-in has idled out (the same injected clock): a fresh one
    host = User(host.account, (await api.services.tokens.issue(host.account.id, host.account.role)).token)
    revoked = await api.http.delete(f"/api/v1/enrollments/{enrolled.json()['id']}", headers=host.headers)
    assert revoked.status_code == 204
    assert_error(await api.http.post("/api/v1/enrollments/next", json=link), 401, "enrollment_invalid")
    assert_error(await api.http.post("/api/v1/enrollments/knock", json=link), 401, "enrollment_invalid")
    after = await api.http.post("/api/v1/signal-tickets", json={"room_id": rooms[1]}, headers=bearer(device))
    assert after.status_code == 401


async def test_an_ended_enrollment_link_is_refused(api: Api, clock: ManualClock) -> None:
    host = await api.user(Role.CLINICIAN)
    track = (await create(api, host)).json()
    enrolled = await api.http.post(
        f"/api/v1/tracks/{track['id']}/enrollments",
        json={"display_name": "Riley", "ends_at": "2026-03-03T00:00:00Z"},
        headers=host.headers,
    )
    link = {"enrollment_token": enrolled.json()["enrollment_token"]}
    assert (await api.http.post("/api/v1/enrollments/next", json=link)).status_code == 200
    clock.now = at(2026, 3, 4, 17, 45)
    assert_error(await api.http.post("/api/v1/enrollments/knock", json=link), 401, "enrollment_invalid")
    assert_error(
        await api.http.post("/api/v1/enrollments/next", json={"enrollment_token": "venr_" + "x" * 43}),
        401,
        "enrollment_invalid",
    )


async def test_calendar_feeds_hold_the_title_only_and_can_be_revoked(api: Api) -> None:
    host = await api.user(Role.CLINICIAN)
    track = (await create(api, host)).json()
    enrolled = await api.http.post(
        f"/api/v1/tracks/{track['id']}/enrollments",
        json={"display_name": "Riley Canary"},
        headers=host.headers,
    )
    feeds = [
        await api.http.post("/api/v1/calendar-feeds", headers=host.headers),
        await api.http.post(
            "/api/v1/calendar-feeds", json={"enrollment_id": enrolled.json()["id"]}, headers=host.headers
        ),
    ]
    for created in feeds:
        assert created.status_code == 201, created.text
        url = httpx.URL(created.json()["url"])
        served = await api.http.get(url.path)
        assert served.status_code == 200
        assert served.headers["content-type"].startswith("text/calendar")
        assert b"Riley" not in served.content and b"Canary" not in served.content
        calendar = icalendar.Calendar.from_ical(served.content)
        events = list(calendar.walk("VEVENT"))
        assert events and {str(e["SUMMARY"]) for e in events} == {"Evening IOP"}
        assert {k for e in events for k in e} <= {"UID", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY"}
        first = min(e["DTSTART"].dt for e in events)
        assert first == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
        assert (
            await api.http.delete(f"/api/v1/calendar-feeds/{created.json()['id']}", headers=host.headers)
        ).status_code == 204
        assert_error(await api.http.get(url.path), 404, "not_found")


async def test_clinicians_manage_their_own_tracks_and_admins_name_the_host(api: Api) -> None:
    host, other, staff, admin = (
        await api.user(Role.CLINICIAN), await api.user(Role.CLINICIAN), await api.user(Role.STAFF), await api.user(Role.ADMIN),
    )  # fmt: skip
    assert_error(await create(api, admin), 400, "bad_request")
    made = await create(api, admin, host_username=host.account.username)
    assert made.status_code == 201 and made.json()["host_id"] == host.id
    track_id = made.json()["id"]
    assert (await api.http.get(f"/api/v1/tracks/{track_id}", headers=host.headers)).status_code == 200
    assert (await api.http.get(f"/api/v1/tracks/{track_id}", headers=staff.headers)).status_code == 200
    assert_error(await api.http.get(f"/api/v1/tracks/{track_id}", headers=other.headers), 403, "forbidden")
    assert_error(await create(api, staff), 403, "forbidden")
    assert (await api.http.get("/api/v1/tracks", headers=other.headers)).json()["tracks"] == []
    assert_error(
        await api.http.post(
            f"/api/v1/tracks/{track_id}/enrollments", json={"display_name": "X"}, headers=other.headers
        ),
        403,
        "forbidden",
    )
    moved = await api.http.put(
        f"/api/v1/tracks/{track_id}/exceptions",
        json={
            "skip": ["2026-03-04T18:00"],
            "move": [{"occurrence": "2026-03-05T18:00", "to": "2026-03-06T10:00"}],
        },
        headers=host.headers,
    )
    assert moved.status_code == 200, moved.text
    assert [o["local_start"] for o in moved.json()["upcoming"]][:2] == [
        "2026-03-02T18:00",
        "2026-03-06T10:00",
    ]
    bad = await api.http.put(
        f"/api/v1/tracks/{track_id}/exceptions",
        json={"move": [{"occurrence": "2026-03-05T18:00", "to": "2026-03-08T02:30"}]},
        headers=host.headers,
    )
    assert_error(bad, 400, "dst_gap")
    unchanged = (await api.http.get(f"/api/v1/tracks/{track_id}", headers=host.headers)).json()
    assert unchanged["skip"] == ["2026-03-04T18:00"]
    assert (await api.http.delete(f"/api/v1/tracks/{track_id}", headers=host.headers)).status_code == 204
    assert (await api.http.get("/api/v1/tracks", headers=host.headers)).json()["tracks"] == []
