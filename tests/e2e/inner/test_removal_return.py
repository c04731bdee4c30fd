"""Issue 11: `remove` is not a ban. A removed client who knocks again (same tab, same credential) waits in
the lobby, and the clinician's console marks them as removed earlier in this session."""

from __future__ import annotations

from tests.e2e.browser import Browsers
from tests.e2e.inner import flows
from tests.support import LiveServer
from vIOP.auth.permissions import Role


async def test_a_removed_client_knocking_again_is_marked_in_the_console(
    server: LiveServer, people: Browsers
) -> None:
    await flows.create_account(server, Role.CLINICIAN, "dr.kim")
    clinician = await people.launch("clinician")
    await flows.sign_in(clinician, "dr.kim", "/console")
    await flows.create_room(clinician, "Thursday group")
    await flows.open_room(clinician, "Thursday group")
    link = await flows.create_invite(clinician, "Robin")

    client = await people.launch("client")
    await flows.client_joins(client, link)
    await clinician.wait_until("document.querySelectorAll('#lobby-list > li').length === 1")
    assert await clinician.page.locator("#lobby-list .returning").count() == 0
    await clinician.page.get_by_role("button", name="Admit Robin").click()
    await client.wait_until("window.viop && window.viop.phase() === 'in_room'", timeout_s=20)

    await clinician.page.get_by_role("button", name="Remove Robin").click()
    await clinician.page.get_by_role("button", name="Remove", exact=True).click()
    await client.on_screen("ended")

    # The same tab comes back (its device credential is still in sessionStorage) and knocks again.
    await client.page.goto("/join")
    await client.on_screen("confirm")
    await client.page.get_by_role("button", name="Continue").click()
    await client.wait_until("document.querySelector('#preview').videoWidth > 0")
    await client.page.get_by_role("button", name="Join the waiting room").click()
    await client.on_screen("waiting", timeout_s=15)

    returning = clinician.page.locator("#lobby-list > li .returning")
    await returning.wait_for(timeout=10_000)
    assert await returning.inner_text() == "Removed earlier in this session"
    await clinician.screenshot("lobby-returning-after-removal")
    await clinician.assert_accessible("console: a removed client knocks again")
