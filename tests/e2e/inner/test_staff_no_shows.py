"""Issue 16: the staff dashboard in a real Chromium shows a track occurrence's expected clients, who is waiting,
who is in the room, and the no-show flag once the server's clock reaches start + N minutes (N = 10, the
default); a client who arrives late loses the flag. The server's clock is settable (real seconds keep
passing from where the test sets it); the room's people are real signaling clients (``vIOP.client``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest

from tests.api import signal_support as ss
from tests.e2e.browser import Browsers, browsers
from tests.e2e.inner import flows
from tests.e2e.inner.test_enrollment_link import NY, SettableClock
from tests.support import LiveServer, free_port
from vIOP.auth.permissions import Role, RoomScope
from vIOP.client.session import RoomClient
from vIOP.ids import ClientId, EnrollmentId, RoomId, UserId, new_client_id, new_enrollment_id, new_track_id
from vIOP.program.ports import Enrollment, Track, TrackKind
from vIOP.program.schedule import Schedule
from vIOP.session.services import Services
from vIOP.session.tracks import ENROLLMENT_PREFIX, create_track, new_secret, secret_hash
from vIOP.signaling import messages as m


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
async def server(live_server_factory: Callable[..., Any], clock: SettableClock) -> AsyncIterator[LiveServer]:
    # 18:06: tonight's 18:00 session has started; its no-show limit is 18:10 (4 minutes of slack for setup).
    clock.set(datetime(2026, 3, 2, 18, 6, tzinfo=NY))
    port = free_port()
    async with live_server_factory(
        clock=clock, port=port, allowed_origins=f"http://127.0.0.1:{port}", ice_host_addresses="127.0.0.1"
    ) as live:
        yield live


@pytest.fixture
async def people(request: pytest.FixtureRequest, server: LiveServer) -> AsyncIterator[Browsers]:
    async with browsers(request.node.name, server.base_url) as launched:
        yield launched


async def enroll(services: Services, track: Track, name: str, now: float) -> ClientId:
    enrollment = Enrollment(
        id=EnrollmentId(new_enrollment_id()), track_id=track.id, client_id=ClientId(new_client_id()),
        created_by=track.host_id, created_at=now - 86400, expires_at=now + 30 * 86400,
    )  # fmt: skip
    await services.tracks.add_enrollment(enrollment, secret_hash(new_secret(ENROLLMENT_PREFIX)), name)
    return enrollment.client_id


async def client_of(server: LiveServer, scope: RoomScope, client_id: ClientId, host: UserId) -> RoomClient:
    """A signaling client for an enrolled client: the device credential the enrollment link would give."""
    services = ss.services(server)
    exchanged = await services.invites.issue_device(
        scope.room_id, client_id, host, services.clock() + 3 * 3600
    )
    return ss.participant(server, exchanged.invite.principal, scope, tracks=tuple)


async def test_dashboard_shows_expected_waiting_present_and_no_show_at_start_plus_n(
    server: LiveServer, people: Browsers, clock: SettableClock
) -> None:
    services = ss.services(server)
    dr = await ss.clinician(server, "dr.evening")
    host = UserId(dr.principal.subject)
    track = Track(
        id=new_track_id(), title="Evening IOP",
        schedule=Schedule("America/New_York", datetime(2026, 3, 2, 18, 0), "FREQ=DAILY", 180),
        kind=TrackKind.GROUP, capacity=12, host_id=host, cohost_ids=frozenset(), created_by=host,
        created_at=clock() - 86400,
    )  # fmt: skip
    await create_track(services, track)
    ana, bo, cy = [await enroll(services, track, name, clock()) for name in ("Ana Canary", "Bo", "Cy")]
    scheduler = services.live.track_scheduler
    assert scheduler is not None
    await scheduler.tick()  # the lobby is open (the running loop may have made the room already)
    key = datetime(2026, 3, 2, 18, 0, tzinfo=NY)
    room_id = RoomId((await services.tracks.rooms_of(track.id, [key]))[key])
    scope = RoomScope(room_id, frozenset({host}))

    await flows.create_account(server, Role.STAFF, "front.desk")
    staff = await people.launch("staff")
    await flows.sign_in(staff, "front.desk", "/staff")
    card = f"document.querySelector('#rooms > section[data-room=\"{room_id}\"]')"

    def status(client: str) -> str:
        return f"{card}?.querySelector('ul.expected > li[data-client=\"{client}\"]')?.dataset.status"

    await staff.wait_until(f"{card}?.querySelectorAll('ul.expected > li').length === 3", timeout_s=30)
    for client in (ana, bo, cy):
        await staff.wait_until(f"{status(client)} === 'expected'", timeout_s=30)

    clinician = ss.participant(server, dr.principal, scope, dr.session, tracks=tuple)
    ana_client = await client_of(server, scope, ana, host)
    bo_client = await client_of(server, scope, bo, host)
    cy_client = await client_of(server, scope, cy, host)
    try:
        await clinician.join()
        await ana_client.join()
        await clinician.wait_message(m.Lobby, where=lambda lobby: len(lobby.waiting) == 1, within=30)
        await clinician.send(m.Admit(participant_id=ana_client.participant_id))
        await ana_client.wait_message(m.Admitted, within=30)
        await bo_client.join()
        await staff.wait_until(f"{status(ana)} === 'present' && {status(bo)} === 'waiting'", timeout_s=30)
        assert await staff.page.evaluate(f"{status(cy)}") == "expected"
        assert await staff.page.evaluate(f"{card}.dataset.noShows") == "0"

        # 18:10, start + 10 minutes: the server's no-show round (woken as its loop is at each limit) flags
        # Cy, and the page shows it without being asked.
        clock.set(datetime(2026, 3, 2, 18, 10, tzinfo=NY))
        watcher = services.live.no_show_watcher
        assert watcher is not None
        watcher.wake()
        await staff.wait_until(f"{status(cy)} === 'no_show' && {card}.dataset.noShows === '1'", timeout_s=30)
        flagged = staff.page.locator(f'#rooms ul.expected > li[data-client="{cy}"]')
        assert await flagged.locator(".who").text_content() == "Cy"
        assert await flagged.locator(".no-show").text_content() == "Not arrived"
        assert await staff.page.evaluate(f"{status(ana)}") == "present"
        assert await staff.page.evaluate(f"{status(bo)}") == "waiting"
        # Hours this program week (Monday 2 March to Sunday 8 March in New York): none yet, so 9 h are due.
        assert await flagged.locator(".week-hours").text_content() == "0 h this week needs 9 h more by Sunday"
        await staff.screenshot("no-show-flagged")
        await staff.assert_accessible("staff dashboard: expected vs present, a no-show")

        # Cy knocks late: the flag clears on the dashboard.
        await cy_client.join()
        await staff.wait_until(f"{status(cy)} === 'waiting' && {card}.dataset.noShows === '0'", timeout_s=30)
    finally:
        for client in (cy_client, bo_client, ana_client, clinician):
            await client.close()
    await staff.assert_clean()
