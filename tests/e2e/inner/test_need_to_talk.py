"""Issue 15, "I need to talk", in the real web client: a client waiting in the lobby presses the button; the
clinician's console lists the request (with an Acknowledge button) and the staff dashboard marks the person;
another client in the room (the room's socket, read frame by frame) hears nothing of it; the clinician
acknowledges it and the client's page says so, and the marks go away."""

from __future__ import annotations

import msgspec

from tests.api import signal_support as ss
from tests.e2e.browser import Browsers
from tests.e2e.inner import flows
from tests.support import LiveServer
from vIOP.auth.permissions import Principal, Role, RoomScope
from vIOP.ids import RoomId, UserId
from vIOP.signaling import messages as m


async def test_a_request_to_talk_reaches_the_console_and_the_staff_page_only(
    server: LiveServer, people: Browsers
) -> None:
    await flows.create_account(server, Role.CLINICIAN, "dr.talk")
    await flows.create_account(server, Role.STAFF, "front.desk")
    clinician = await people.launch("clinician")
    await flows.sign_in(clinician, "dr.talk", "/console")
    room_id = await flows.create_room(clinician, "Wednesday group")
    await flows.open_room(clinician, "Wednesday group")
    link = await flows.create_invite(clinician, "Robin")
    staff = await people.launch("staff")
    await flows.sign_in(staff, "front.desk", "/staff")
    card = f"document.querySelector('#rooms > section[data-room=\"{room_id}\"]')"
    await staff.wait_until(f"{card} !== null")

    # Another client, already in the room (a scripted one: its socket is read frame by frame).
    record = await ss.services(server).room_directory.get(room_id)
    scope = RoomScope(RoomId(room_id), frozenset({UserId(record.host_user_id)}))
    host = ss.Clinician(Principal(Role.CLINICIAN, record.host_user_id), "")  # the invite's creator
    other = ss.participant(server, await ss.invite(server, host, scope, "Other"), scope, tracks=tuple)
    await other.join()
    try:
        await clinician.page.get_by_role("button", name="Admit Other").click()
        await other.wait_message(m.Admitted)

        client = await people.launch("client")
        await flows.client_joins(client, link)
        await client.page.get_by_role("button", name="I need to talk to a clinician").click()
        await client.wait_until("!document.querySelector('[data-screen=\"waiting\"] .talk-status').hidden")

        request = clinician.page.locator("#talk-list > li")
        await request.wait_for(timeout=10_000)
        assert await request.locator(".who").inner_text() == "Robin"
        await staff.wait_until(f"{card}.querySelector('.talk-requested') !== null")
        await clinician.screenshot("asked-to-talk")
        await clinician.assert_accessible("console: a client asked to talk")
        await staff.assert_accessible("staff dashboard: a client asked to talk")

        await clinician.page.get_by_role("button", name="Acknowledge Robin's request to talk").click()
        await client.wait_until(
            "document.querySelector('[data-screen=\"waiting\"] .talk-status').textContent"
            ".includes('has seen your request')"
        )
        await clinician.wait_until("document.querySelectorAll('#talk-list > li').length === 0")
        await staff.wait_until(f"{card}.querySelector('.talk-requested') === null")

        await other.send(m.Ping(id="settle"))
        await other.wait_message(m.Pong, where=lambda p: p.id == "settle")
        frames = b"".join(msgspec.json.encode(message) for message in other.messages)
        assert b'"type":"talk_request"' not in frames and b'"talk_requested":true' not in frames
        await client.assert_clean()
    finally:
        await other.close()
