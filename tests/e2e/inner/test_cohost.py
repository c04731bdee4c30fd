"""Issue 15, co-therapists, in the real web client: a clinician adds a colleague as co-host from the console;
the colleague finds the room in their own list, opens it (no knock), admits the client and ends the room."""

from __future__ import annotations

from tests.e2e.browser import Browsers
from tests.e2e.inner import flows
from tests.support import LiveServer
from vIOP.auth.permissions import Role


async def test_a_cohost_added_in_the_console_runs_the_room(server: LiveServer, people: Browsers) -> None:
    await flows.create_account(server, Role.CLINICIAN, "dr.amy")
    await flows.create_account(server, Role.CLINICIAN, "dr.bea")
    amy = await people.launch("clinician")
    await flows.sign_in(amy, "dr.amy", "/console")
    await flows.create_room(amy, "Friday group")
    await flows.open_room(amy, "Friday group")
    await amy.page.get_by_label("Colleague's username").fill("nobody.here")
    await amy.page.get_by_role("button", name="Add as co-host").click()
    await amy.wait_until("!document.querySelector('#cohost-error').hidden")  # a typed refusal, shown
    await amy.page.get_by_label("Colleague's username").fill("dr.bea")
    await amy.page.get_by_role("button", name="Add as co-host").click()
    await amy.wait_until("document.querySelector('#cohost-error').hidden")
    await amy.wait_until("document.querySelector('#cohost-username').value === ''")
    link = await flows.create_invite(amy, "Robin")

    bea = await people.launch("cohost")
    await flows.sign_in(bea, "dr.bea", "/console")
    await flows.open_room(bea, "Friday group")  # listed for her, entered without knocking
    client = await people.launch("client")
    await flows.client_joins(client, link)
    await bea.wait_until("document.querySelectorAll('#lobby-list > li').length === 1")
    await bea.page.get_by_role("button", name="Admit Robin").click()
    await client.wait_until("window.viop && window.viop.phase() === 'in_room'", timeout_s=20)
    await bea.assert_accessible("console: a co-host runs the room")
    await bea.page.get_by_role("button", name="End for all").click()
    await bea.page.get_by_role("button", name="Confirm: end for everyone").click()
    await client.on_screen("ended", timeout_s=15)
    await amy.on_screen("ended", timeout_s=15)
