"""Issue 16: one enrollment link for every session of a track, in a real Chromium, with a settable server clock.

The server's clock (``open_services(clock=...)``: lobbies, links, tickets) runs in real time from a point the
test sets, so nobody waits for an evening: before the lobby opens the page names the next start (in the
reader's locale and the program's time zone); once it is open the same link knocks on that session's room;
the next day the same link knocks on the next day's room.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.api import signal_support as ss
from tests.e2e.browser import Browsers, Person, browsers
from tests.e2e.inner import flows
from tests.support import LiveServer, free_port
from vIOP.auth.permissions import Role
from vIOP.ids import ClientId, EnrollmentId, TrackId, UserId, new_client_id, new_enrollment_id, new_track_id
from vIOP.program.ports import Enrollment, Track, TrackKind
from vIOP.program.schedule import Schedule
from vIOP.rooms.participant import ParticipantState
from vIOP.session.tracks import ENROLLMENT_PREFIX, create_track, new_secret, secret_hash

NY = ZoneInfo("America/New_York")


class SettableClock:
    """Real seconds keep passing (heartbeats, timeouts), from wherever the test last set the clock."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def set(self, wall: datetime) -> None:
        self.offset = wall.timestamp() - time.time()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
async def server(live_server_factory: Callable[..., Any], clock: SettableClock) -> AsyncIterator[LiveServer]:
    clock.set(datetime(2026, 3, 2, 17, 0, tzinfo=NY))
    port = free_port()
    async with live_server_factory(
        clock=clock,
        port=port,
        allowed_origins=f"http://127.0.0.1:{port}",
        ice_host_addresses="127.0.0.1",
        heartbeat_seconds=2,
    ) as live:
        yield live


@pytest.fixture
async def people(request: pytest.FixtureRequest, server: LiveServer) -> AsyncIterator[Browsers]:
    async with browsers(request.node.name, server.base_url) as launched:
        yield launched


async def evening_track_with_one_client(server: LiveServer, clock: SettableClock) -> tuple[TrackId, str]:
    """A daily 18:00 (New York) track and one enrolled client; the link as the API would give it."""
    services = ss.services(server)
    dr = await ss.clinician(server, username="dr.evening")
    host = dr.principal.subject
    track = Track(
        id=new_track_id(), title="Evening IOP",
        schedule=Schedule("America/New_York", datetime(2026, 3, 2, 18, 0), "FREQ=DAILY", 180),
        kind=TrackKind.GROUP, capacity=12, host_id=host, cohost_ids=frozenset(), created_by=host,  # type: ignore[arg-type]
        created_at=clock(),
    )  # fmt: skip
    await create_track(services, track)
    token = new_secret(ENROLLMENT_PREFIX)
    enrollment = Enrollment(
        id=EnrollmentId(new_enrollment_id()), track_id=track.id, client_id=ClientId(new_client_id()),
        created_by=UserId(host), created_at=clock(), expires_at=clock() + 30 * 86400,
    )  # fmt: skip
    await services.tracks.add_enrollment(enrollment, secret_hash(token), "Riley")
    return track.id, f"/join#enroll={token}"


async def room_of(server: LiveServer, track_id: TrackId, wall: datetime) -> str:
    key = wall.astimezone(UTC)
    rooms = await ss.services(server).tracks.rooms_of(track_id, [key])
    return rooms[key]


async def knock_from_the_link(client: Person) -> str:
    await client.on_screen("confirm")
    await client.page.get_by_role("button", name="Continue").click()
    await client.on_screen("setup")
    await client.page.get_by_role("button", name="Join the waiting room").click()
    await client.on_screen("waiting", timeout_s=30)
    room: str = await client.page.evaluate("JSON.parse(sessionStorage.getItem('viop.device')).room")
    return room


async def test_one_enrollment_link_shows_the_next_start_then_knocks_on_each_days_session(
    server: LiveServer, people: Browsers, clock: SettableClock
) -> None:
    track_id, link = await evening_track_with_one_client(server, clock)
    client = await people.launch("client")

    # 17:00 in New York: the lobby opens at 17:45. The page names the start; no room exists yet.
    await client.page.goto(link)
    await client.on_screen("upcoming")
    assert await client.page.evaluate("document.body.dataset.nextStart") == "2026-03-02T23:00:00Z"
    text = await client.page.locator("#upcoming-text").inner_text()
    assert "Evening IOP" in text and "6:00" in text and ("EST" in text or "GMT-5" in text), text
    assert "#" not in client.page.url
    await client.assert_accessible("join: next session")
    assert (
        await ss.services(server).tracks.rooms_of(track_id, [datetime(2026, 3, 2, 23, 0, tzinfo=UTC)]) == {}
    )

    # 17:50: the lobby is open. "Check again" and the same page knocks on tonight's room.
    clock.set(datetime(2026, 3, 2, 17, 50, tzinfo=NY))
    await client.page.get_by_role("button", name="Check again").click()
    tonight = await knock_from_the_link(client)
    assert tonight == await room_of(server, track_id, datetime(2026, 3, 2, 18, 0, tzinfo=NY))
    knocked = await ss.services(server).rooms.room(tonight)  # type: ignore[arg-type]
    assert [p.state for p in knocked.active()] == [ParticipantState.WAITING]

    # The next day at 17:50, the same link again: tomorrow's room.
    await client.page.goto("about:blank")
    clock.set(datetime(2026, 3, 3, 17, 50, tzinfo=NY))
    await client.page.goto(link)
    tomorrow = await knock_from_the_link(client)
    assert tomorrow == await room_of(server, track_id, datetime(2026, 3, 3, 18, 0, tzinfo=NY))
    assert tomorrow != tonight
    await client.assert_clean()


async def test_the_console_shows_todays_sessions_and_makes_an_enrollment_link(
    server: LiveServer, people: Browsers, clock: SettableClock
) -> None:
    await flows.create_account(server, Role.CLINICIAN, "dr.console")
    services = ss.services(server)
    host = UserId((await services.authenticator.account_named("dr.console")).id)  # type: ignore[union-attr]
    track = Track(
        id=new_track_id(), title="Evening IOP",
        schedule=Schedule("America/New_York", datetime(2026, 3, 2, 18, 0), "FREQ=DAILY", 180),
        kind=TrackKind.GROUP, capacity=12, host_id=host, cohost_ids=frozenset(), created_by=host,
        created_at=clock(),
    )  # fmt: skip
    await create_track(services, track)
    clock.set(datetime(2026, 3, 2, 17, 45, tzinfo=NY))
    scheduler = services.live.track_scheduler
    assert scheduler is not None
    await scheduler.tick()  # the lobby opens now (the running loop may have made it already)
    room_id = await room_of(server, track.id, datetime(2026, 3, 2, 18, 0, tzinfo=NY))

    clinician = await people.launch("clinician")
    await flows.sign_in(clinician, "dr.console", "/console")
    today = clinician.page.locator("#today-list > li").filter(has_text="Evening IOP")
    await today.wait_for(timeout=15_000)
    assert await today.get_attribute("data-room") == room_id
    await clinician.page.get_by_role("button", name="Enroll a client in Evening IOP").click()
    await clinician.page.get_by_label("Name of the client to enroll").fill("Riley")
    await clinician.page.get_by_role("button", name="Create enrollment link").click()
    await clinician.wait_until("document.querySelector('#enroll-link').value.includes('/join#enroll=venr_')")
    await clinician.assert_accessible("console: tracks")
    await clinician.assert_clean()
