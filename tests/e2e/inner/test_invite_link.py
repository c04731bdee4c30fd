"""Issue 11, finding 3: what a shared computer's browser history keeps of an invite link is worth nothing.

Chromium records every URL it navigates to in its History database (fragment, query and path alike, and
the source of every server redirect), before any page script runs: measured, and the reason the link is
exchanged once (on "Continue") for a device credential that lives only in the tab's sessionStorage. So the test
reads the History database of a real Chromium profile after the join page loaded and the person went on
(closing the context flushes it) and checks: the device credential is nowhere in it, and the link it does hold is refused when a
second device opens it ("already used on another device: ask your clinician"), with no ticket issued.
"""

from __future__ import annotations

import re
import sqlite3

from tests.api import signal_support as ss
from tests.e2e.browser import Browsers
from tests.e2e.inner import flows
from tests.e2e.inner.flows import invite_link, record_api_requests
from tests.support import LiveServer
from vIOP.signaling import messages as m

_TOKEN = re.compile(r"v(?:inv|dev)_[A-Za-z0-9_-]{43}")


def history_urls(profile: object) -> list[str]:
    database = f"{profile}/Default/History"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT url FROM urls")]


async def test_the_invite_link_left_in_history_is_spent_and_a_second_device_is_told(
    server: LiveServer, people: Browsers
) -> None:
    link = await invite_link(server, "Jordan")
    link_token = link.split("invite=", 1)[1].split("&", 1)[0]

    family_computer = await people.launch("family-computer")
    await family_computer.page.goto(link)
    await family_computer.on_screen("confirm")
    # "Continue" spends the link (a click: a mail scanner that merely renders the page spends nothing).
    await family_computer.page.get_by_role("button", name="Continue").click()
    await family_computer.on_screen("setup")
    device = await family_computer.page.evaluate("JSON.parse(sessionStorage.getItem('viop.device')).token")
    assert isinstance(device, str) and device.startswith("vdev_")
    assert "#" not in family_computer.page.url
    await family_computer.assert_clean()
    await family_computer.context.close()  # History is written out on close

    urls = history_urls(family_computer.profile)
    assert any(u.endswith("/join") or "/join#" in u for u in urls), urls
    found = {token for url in urls for token in _TOKEN.findall(url)}
    # Never the credential that opens the room, nor any prefix of it beyond the public "vdev_".
    assert all(device[: len("vdev_") + 8] not in url for url in urls)
    # Whatever invite token History holds is the spent link (Chromium keeps the navigated URL).
    assert found <= {link_token}

    # A second device with the link copied out of that History: refused, explained, no ticket.
    copied = next(url for url in urls if link_token in url) if found else link
    second = await people.launch("second-device")
    api_calls = record_api_requests(second)
    await second.page.goto(copied)
    await second.on_screen("no-invite")
    assert await second.page.evaluate("document.body.dataset.linkProblem") == "already_used"
    title = await second.page.locator("#no-invite-title").inner_text()
    assert "already used on another device" in title
    assert "clinician" in await second.page.locator("#no-invite-text").inner_text()
    assert api_calls == [f"/api/v1/rooms/{link.rsplit('room=', 1)[1]}"]  # told on arrival; no ticket
    await second.assert_accessible("join: link already used")
    await second.assert_clean(expected=(re.compile(r"Failed to load resource: .* 401 .*/api/v1/rooms/.*"),))


async def test_closing_the_tab_leaves_at_once_instead_of_holding_the_seat(
    server: LiveServer, people: Browsers
) -> None:
    """The join page sends `leave` on pagehide: the others see the client leave, never "reconnecting"."""
    dr = await ss.clinician(server, username="dr.pagehide")
    scope = await ss.room(server, dr)
    created = await ss.services(server).invites.create(dr.principal, scope, "Robin")
    host = ss.participant(server, dr.principal, scope, dr.session, tracks=tuple)
    client = await people.launch("client")
    try:
        await host.join()
        await flows.client_joins(client, f"/join#invite={created.token}&room={scope.room_id}")
        knock = await host.wait_message(m.Lobby, where=lambda lb: len(lb.waiting) == 1)
        pid = knock.waiting[0].participant_id
        await host.send(m.Admit(participant_id=pid))
        await client.wait_until("window.viop && window.viop.phase() === 'in_room'", timeout_s=15)

        await client.page.goto("about:blank")  # the tab navigates away (pagehide), as closing it does

        left = await host.wait_message(m.ParticipantLeft, where=lambda msg: msg.participant_id == pid)
        assert left.reason is m.LeaveReason.LEFT
        assert not any(isinstance(msg, m.Reconnecting) and msg.participant_id == pid for msg in host.messages)
    finally:
        await host.close()
