"""The staff dashboard on its own: a knock shows up live over ``WS /ws/presence`` with the name and the wait,
and when the sign-in ends elsewhere the stream closes and every name leaves the screen."""

from __future__ import annotations

import re

import httpx

from tests.api import signal_support as ss
from tests.e2e.browser import Browsers
from tests.e2e.inner import flows
from tests.support import LiveServer
from vIOP.auth.permissions import Role


async def test_dashboard_shows_a_knock_live_and_clears_names_when_signed_out(
    server: LiveServer, people: Browsers
) -> None:
    host = await ss.clinician(server)
    scope = await ss.room(server, host)
    await flows.create_account(server, Role.STAFF, "front.desk")
    staff = await people.launch("staff")
    requests = flows.record_api_requests(staff)
    await flows.sign_in(staff, "front.desk", "/staff")
    card = f"document.querySelector('#rooms > section[data-room=\"{scope.room_id}\"]')"
    await staff.wait_until(f"{card}?.dataset.waiting === '0'")
    await staff.wait_until(f"{card}.querySelector('h2').textContent.startsWith('Evening group')")
    await staff.wait_until("window.viopPresence.received().pong >= 1")
    requests_at_open = len(requests)

    client = ss.participant(server, await ss.invite(server, host, scope, "Ana Canary"), scope, tracks=tuple)
    await client.join()
    try:
        await staff.wait_until(f"{card}?.dataset.waiting === '1'", timeout_s=10)
        waiting = staff.page.locator("#rooms ul.waiting > li")
        assert await waiting.locator(".who").text_content() == "Ana Canary"
        assert re.fullmatch(r"waiting \d+ s", await waiting.locator(".wait").text_content() or "")
        assert requests[requests_at_open:] == [], requests  # the knock came over the socket
        await staff.screenshot("someone-waiting")
        await staff.assert_accessible("staff dashboard: someone waiting")

        # Signed out in another tab: the server closes the stream; the page forgets the sign-in and the names.
        token = await staff.page.evaluate("sessionStorage.getItem('viop.access_token')")
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            response = await http.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 204, response.text
        await staff.on_screen("signed-out", timeout_s=15)
    finally:
        await client.close()
    assert "Ana Canary" not in await staff.page.content()
    assert await staff.page.evaluate("sessionStorage.getItem('viop.access_token')") is None
    await staff.screenshot("signed-out-elsewhere")
    await staff.assert_accessible("staff dashboard: signed out")
    # Its one try for a new ticket was refused (401), which Chromium logs; nothing else may be.
    refused = re.compile(
        r"Failed to load resource: the server responded with a status of 401 \(Unauthorized\) "
        rf"\({re.escape(server.base_url)}/api/v1/signal-tickets:0\)"
    )
    await staff.assert_clean(expected=(refused,))
