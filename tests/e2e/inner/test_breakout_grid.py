"""Issue 15, a private breakout as the rest of the group sees it in the real web client: the two who stepped
out are marked "Stepped out" on their tiles (no frozen last frame), and the marks go when they are back."""

from __future__ import annotations

from tests.api import signal_support as ss
from tests.e2e.browser import Browsers
from tests.e2e.inner import flows
from tests.support import LiveServer
from vIOP.auth.permissions import Principal, Role, RoomScope
from vIOP.ids import RoomId, UserId
from vIOP.signaling import messages as m


async def test_the_group_sees_who_stepped_out_for_a_private_talk(
    server: LiveServer, people: Browsers
) -> None:
    await flows.create_account(server, Role.CLINICIAN, "dr.aside")
    clinician = await people.launch("clinician")
    await flows.sign_in(clinician, "dr.aside", "/console")
    room_id = await flows.create_room(clinician, "Friday group")
    await flows.open_room(clinician, "Friday group")
    link = await flows.create_invite(clinician, "Robin")

    # The client the clinician talks to privately: a scripted one (its socket is read frame by frame).
    record = await ss.services(server).room_directory.get(room_id)
    scope = RoomScope(RoomId(room_id), frozenset({UserId(record.host_user_id)}))
    host = ss.Clinician(Principal(Role.CLINICIAN, record.host_user_id), "")
    other = ss.participant(server, await ss.invite(server, host, scope, "Sam"), scope)
    await other.join()
    try:
        await clinician.page.get_by_role("button", name="Admit Sam").click()
        await other.wait_message(m.Admitted)
        await other.start_media()  # in the room once its media is up (a seat alone is not on the roster)

        robin = await people.launch("client")
        await flows.client_joins(robin, link)
        await clinician.page.get_by_role("button", name="Admit Robin").click()
        await robin.wait_until("window.viop && window.viop.phase() === 'in_room'", timeout_s=30)
        tile = f"document.querySelector('#grid li.tile[data-participant=\"{other.participant_id}\"]')"
        await robin.wait_until(f"{tile} !== null && {tile}.dataset.state === 'live'", timeout_s=30)

        await clinician.page.get_by_role("button", name="Talk privately with Sam").first.click()
        await robin.wait_until(f"{tile}.dataset.state === 'stepped_out'", timeout_s=30)
        assert "Stepped out" in await robin.page.evaluate(f"{tile}.querySelector('.badges').textContent")
        assert (
            await robin.page.evaluate(f"getComputedStyle({tile}.querySelector('video')).visibility")
            == "hidden"
        )
        await robin.screenshot("group-sees-a-breakout")
        await robin.assert_accessible("session: two of the group stepped out")

        await clinician.page.get_by_role("button", name="Bring Sam back to the group").first.click()
        await robin.wait_until(f"{tile}.dataset.state === 'live'", timeout_s=30)
        assert "Stepped out" not in await robin.page.evaluate(f"{tile}.querySelector('.badges').textContent")
    finally:
        await other.close()
