"""A whole group session in real browsers, through the reference client's pages only (issue 7, Done when).

A clinician, two clients and a staff member, each in their own Chromium with fake camera and microphone:
lobby and admit; every page decodes every other participant's video (``getStats()``); the staff dashboard
follows the room live over ``WS /ws/presence``; a host mute stops that client's audio at the others; a
leave updates rosters; "end for all" reaches every page; the attendance view shows the finished session
and offers the CSV. The second test drops a client's network mid-session: reconnecting on both pages, then
the same participant back without a new knock. axe-core runs on every screen the tests pass through, and
each page is screenshotted under test-artifacts/e2e/<test>/."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.browser import Browsers, Person
from tests.e2e.inner import flows
from tests.e2e.inner.fault_proxy import FaultProxy
from tests.support import LiveServer
from vIOP.auth.permissions import Role

ROOM_TITLE = "Tuesday evening group"


async def _clinician_with_room(server: LiveServer, people: Browsers) -> Person:
    await flows.create_account(server, Role.CLINICIAN, "dr.lee")
    clinician = await people.launch("clinician")
    await flows.sign_in(clinician, "dr.lee", "/console")
    room_id = await flows.create_room(clinician, ROOM_TITLE)
    # The rooms list is the server's (GET /api/v1/rooms): a fresh load still lists the new room.
    await clinician.page.reload()
    await clinician.on_screen("rooms")
    listed = clinician.page.locator(f'#room-list > li[data-room="{room_id}"]')
    await listed.wait_for(timeout=10_000)
    assert ROOM_TITLE in (await listed.text_content() or "")
    await clinician.assert_accessible("console: rooms list")
    await flows.open_room(clinician, ROOM_TITLE)
    return clinician


async def _roster_names(person: Person) -> list[str]:
    return await person.page.locator("#roster-list .who").all_text_contents()


async def _open_staff_dashboard(server: LiveServer, people: Browsers) -> tuple[Person, list[str]]:
    """A staff member signs in and lands on the dashboard; returns them and every API path it requests."""
    await flows.create_account(server, Role.STAFF, "front.desk")
    staff = await people.launch("staff")
    requests = flows.record_api_requests(staff)
    await flows.sign_in(staff, "front.desk", "/staff")
    await staff.on_screen("presence")
    # Live from the socket: its snapshot arrived and the page pinged (and was answered) at once.
    await staff.wait_until("window.viopPresence.received().presence_snapshot >= 1")
    await staff.wait_until("window.viopPresence.pings() >= 1 && window.viopPresence.received().pong >= 1")
    return staff, requests


async def test_group_session_lobby_media_staff_mute_leave_end(server: LiveServer, people: Browsers) -> None:
    clinician, alex, sam = await asyncio.gather(
        _clinician_with_room(server, people), people.launch("client-alex"), people.launch("client-sam")
    )
    await clinician.assert_accessible("console: empty room")
    links = {name: await flows.create_invite(clinician, name) for name in ("Alex", "Sam")}

    # Both clients open their links and wait; the clinician sees both in the lobby.
    await asyncio.gather(flows.client_joins(alex, links["Alex"]), flows.client_joins(sam, links["Sam"]))
    await alex.wait_until(
        "document.querySelector('#waiting-position').textContent.includes('in line') || "
        "document.querySelector('#waiting-position').textContent.includes('next')"
    )
    await alex.screenshot("waiting-room")
    await alex.assert_accessible("waiting room")
    await clinician.wait_until("document.querySelectorAll('#lobby-list > li').length === 2")
    await clinician.screenshot("lobby-with-two")
    await clinician.assert_accessible("console with lobby")

    # Admit them one by one.
    await clinician.page.get_by_role("button", name="Admit Alex").click()
    await clinician.page.get_by_role("button", name="Admit Sam").click()
    await asyncio.gather(
        *(p.wait_until("window.viop.phase() === 'in_room'", timeout_s=15) for p in (alex, sam))
    )
    ids = {p.name: await flows.participant_id(p) for p in (clinician, alex, sam)}

    # Every page decodes every other participant's video (getStats framesDecoded > 0).
    everyone = (clinician, alex, sam)
    await asyncio.gather(
        *(flows.wait_for_video_from(p, {ids[o.name] for o in everyone if o is not p}) for p in everyone)
    )
    for person in everyone:
        await person.wait_until("document.querySelectorAll('#grid > li').length === 3")
        await person.screenshot("session-three-live")
    await alex.assert_accessible("session")
    await clinician.assert_accessible("console in session")
    roster = await _roster_names(clinician)
    assert len(roster) == 3 and {"Alex", "Sam"} <= set(roster), roster

    # Issue 11: the console's heartbeat renews the sign-in only while the page is in use; a hidden tab's
    # does not (it keeps the seat only).
    assert await clinician.page.evaluate("window.viopConsole.nextPing()") == {"type": "ping", "active": True}
    hidden_ping = await clinician.page.evaluate(
        "(() => { Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});"
        " const ping = window.viopConsole.nextPing(); delete document.visibilityState; return ping; })()"
    )
    assert hidden_ping == {"type": "ping", "active": False}

    # The staff dashboard shows the room (by its title) with three people live.
    staff, staff_requests = await _open_staff_dashboard(server, people)
    room = "document.querySelector('#rooms > section[data-room]')"
    await staff.wait_until(f"{room}?.dataset.live === '3'", timeout_s=10)
    assert ROOM_TITLE in (await staff.page.locator("#rooms h2").first.text_content() or "")
    assert set(await staff.page.locator("#rooms .in-room .who").all_text_contents()) >= {"Alex", "Sam"}
    await staff.screenshot("presence-three-live")
    await staff.assert_accessible("staff dashboard")
    api_calls_at_open = len(staff_requests)

    # The clinician mutes Alex: Alex's audio stops arriving at Sam and the clinician; Sam's keeps flowing.
    await flows.wait_audio_flowing(sam, ids["client-alex"])
    await clinician.page.get_by_role("button", name="Mute Alex").click()
    await asyncio.gather(
        flows.wait_audio_stopped(sam, ids["client-alex"]),
        flows.wait_audio_stopped(clinician, ids["client-alex"]),
    )
    await flows.wait_audio_flowing(clinician, ids["client-sam"])
    await alex.wait_until("document.querySelector('#mic-toggle').getAttribute('aria-pressed') === 'true'")
    await alex.screenshot("muted-by-clinician")

    # Sam chooses "save data": audio only for Sam, the banner says so, the clinician's roster shows it;
    # Sam keeps hearing the others; turned off again, Sam decodes video again (issue 13).
    await sam.page.get_by_role("button", name="Save data (audio only)").click()
    await sam.wait_until("!document.querySelector('#audio-only-banner').hidden")
    sam_row = f'#roster-list > li[data-participant="{ids["client-sam"]}"]'
    await clinician.wait_until(f"document.querySelector('{sam_row}')?.textContent.includes('audio only')")
    await flows.wait_audio_flowing(sam, ids["clinician"])
    await sam.screenshot("save-data")
    await sam.assert_accessible("join: save data")
    await sam.page.get_by_role("button", name="Show video again").click()
    await sam.wait_until("document.querySelector('#audio-only-banner').hidden")
    await flows.wait_for_more_video_from(sam, ids["clinician"])
    await clinician.wait_until(f"!document.querySelector('{sam_row}')?.textContent.includes('audio only')")

    # Sam leaves: the clinician's roster, Alex's grid and the staff dashboard update.
    await sam.page.get_by_role("button", name="Leave").click()
    await sam.on_screen("ended")
    await sam.assert_accessible("join: left")
    await clinician.wait_until(
        "[...document.querySelectorAll('#roster-list .who')].every((n) => n.textContent !== 'Sam') && "
        "document.querySelectorAll('#roster-list > li').length === 2"
    )
    await alex.wait_until("document.querySelectorAll('#grid > li').length === 2")
    await staff.wait_until(f"{room}?.dataset.live === '2'", timeout_s=10)
    await clinician.screenshot("after-sam-left")
    await staff.screenshot("presence-two-live")

    # End for all (the button asks for confirmation first): every page shows the session ended.
    end = clinician.page.locator("#end-all")
    await end.click()
    await end.click()
    for person in (clinician, alex):
        await person.on_screen("ended", timeout_s=10)
        await person.screenshot("ended")
    assert "ended" in (await alex.page.locator("#ended-text").text_content() or "").lower()
    for person in (clinician, alex):
        # The message itself arrived (not only the socket's close reason).
        assert "room_ended" in await person.page.evaluate("window.viop.lastMessages()"), person.name
    await alex.assert_accessible("join: session ended")
    await clinician.assert_accessible("console: session ended")
    await staff.wait_until(f"{room} === null && !document.querySelector('#presence-empty').hidden")
    await staff.screenshot("presence-after-end")
    # Every change after the dashboard opened came over the presence socket: no HTTP request at all.
    assert staff_requests[api_calls_at_open:] == [], staff_requests
    assert "/api/v1/presence" not in staff_requests, staff_requests
    received = await staff.page.evaluate("window.viopPresence.received()")
    assert received.get("presence_room", 0) >= 1 and received.get("presence_room_gone", 0) >= 1, received

    # The ended room is gone from the clinician's rooms list (the server lists rooms that have not ended).
    await clinician.page.get_by_role("link", name="Back to your rooms").click()
    await clinician.on_screen("rooms")
    await clinician.wait_until("!document.querySelector('#rooms-empty').hidden")
    await clinician.assert_accessible("console: no rooms left")

    await _attendance_shows_the_session(clinician)
    for person in (clinician, alex, sam, staff):
        await person.assert_clean()


async def _attendance_shows_the_session(clinician: Person) -> None:
    """The attendance view lists the finished session's roster with join and leave times, and the CSV."""
    await clinician.page.goto("/attendance")
    await clinician.on_screen("attendance")
    rows = clinician.page.locator("#sessions tbody tr")
    await clinician.wait_until("document.querySelectorAll('#sessions tbody tr').length === 3", timeout_s=10)
    lines = {}
    for index in range(await rows.count()):
        row = rows.nth(index)
        name = await row.locator(".who").text_content()
        lines[name] = (await row.locator(".joined").text_content(), await row.locator(".left").text_content())
    assert set(lines) == {"Alex", "Sam", "Clinician"}, lines
    for name, (joined, left) in lines.items():
        # Both times shown; everyone has left a session that ended.
        assert joined and left and left != "still in", (name, joined, left)
    assert await clinician.page.locator("#weekly-body tr").count() == 2
    await clinician.screenshot("attendance")
    await clinician.assert_accessible("attendance")

    # The CSV: every stay in this session, ids only (names never leave in a file).
    await clinician.page.get_by_label("CSV table").select_option("intervals")
    async with clinician.page.expect_download(timeout=10_000) as download_info:
        await clinician.page.get_by_role("button", name="Download CSV").click()
    download = await download_info.value
    assert download.suggested_filename == "attendance-intervals.csv"
    csv_text = Path(await download.path()).read_text()
    header, *stays = csv_text.strip().splitlines()
    assert header.split(",")[:4] == ["room_id", "session_id", "subject", "role"], header
    assert len(stays) == 3 and sorted(line.split(",")[3] for line in stays) == ["client", "client", "host"], (
        csv_text
    )
    assert "Alex" not in csv_text and "Sam" not in csv_text


async def test_socket_drop_shows_reconnecting_then_same_participant_without_knock(
    server: LiveServer, people: Browsers, fault_proxy: FaultProxy
) -> None:
    clinician = await _clinician_with_room(server, people)
    link = await flows.create_invite(clinician, "Alex")
    # Alex reaches the server through the fault proxy (same app, the proxy's origin).
    alex = await people.launch("client-alex", base_url=fault_proxy.base_url)
    await flows.client_joins(alex, link.replace(server.base_url, fault_proxy.base_url))
    await clinician.page.get_by_role("button", name="Admit Alex").click()
    await alex.wait_until("window.viop.phase() === 'in_room'", timeout_s=15)
    alex_id = await flows.participant_id(alex)
    clinician_id = await flows.participant_id(clinician)
    await flows.wait_for_video_from(alex, {clinician_id})
    await flows.wait_for_video_from(clinician, {alex_id})
    staff, _ = await _open_staff_dashboard(server, people)
    on_dashboard = f"document.querySelector('#rooms li[data-participant=\"{alex_id}\"]')?.dataset.state"
    await staff.wait_until(f"{on_dashboard} === 'live'", timeout_s=10)

    # The network blips: every connection through the proxy dies and new ones are refused for a while.
    fault_proxy.cut()
    await alex.wait_until("window.viop.phase() === 'reconnecting'", timeout_s=10)
    await alex.wait_until("!document.querySelector('#reconnect-banner').hidden")
    await alex.screenshot("reconnecting")
    await clinician.wait_until(
        f"document.querySelector('#roster-list > li[data-participant=\"{alex_id}\"]')?.dataset.state === 'reconnecting'",
        timeout_s=10,
    )
    tile = f"document.querySelector('#grid > li[data-participant=\"{alex_id}\"]')"
    await clinician.wait_until(f"{tile}?.dataset.state === 'reconnecting'")
    await staff.wait_until(f"{on_dashboard} === 'reconnecting'", timeout_s=10)
    await clinician.screenshot("alex-reconnecting")
    await staff.screenshot("alex-reconnecting")
    await alex.assert_accessible("join: reconnecting")
    await clinician.assert_accessible("console: a client reconnecting")
    await staff.assert_accessible("staff dashboard: a client reconnecting")
    fault_proxy.restore()

    # Alex comes back by itself as the same participant, straight into the room, never through the lobby.
    await alex.wait_until("window.viop.phase() === 'in_room'", timeout_s=20)
    assert await flows.participant_id(alex) == alex_id
    history = await alex.page.evaluate("window.viop.phaseHistory()")
    assert "waiting" not in history[history.index("reconnecting") :], history
    # Alex knocked once, before the first admission; the reconnect added no knock.
    assert await clinician.page.evaluate("window.viop.lobbyKnocks()") == {alex_id: 1}
    lobby_after = await clinician.page.evaluate("document.querySelectorAll('#lobby-list > li').length")
    assert lobby_after == 0
    await clinician.wait_until(
        f"document.querySelector('#roster-list > li[data-participant=\"{alex_id}\"]')?.dataset.state === 'live'",
        timeout_s=10,
    )
    await clinician.wait_until(f"{tile}?.dataset.state === 'live'")
    await staff.wait_until(f"{on_dashboard} === 'live'", timeout_s=10)
    # Media flows again both ways on Alex's new peer connection.
    await flows.wait_for_video_from(alex, {clinician_id})
    await flows.wait_for_more_video_from(clinician, alex_id)
    await alex.screenshot("back-in-session")
    await clinician.screenshot("alex-back")
    await staff.screenshot("alex-back")
    await alex.assert_clean(expected=fault_proxy.console_errors_of_a_cut())
    await clinician.assert_clean()
    await staff.assert_clean()
