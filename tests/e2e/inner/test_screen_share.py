"""Issue 15, screen share for workshops, in the real web client (Chromium's fake screen capture).

A clinician shares their screen from the console; two clients decode the share while still decoding the
clinician's camera, see it on the stage and the sharer's tile saying so; stopping ends it for both within a
second. Then the clinician allows one client to share: that client's "Share screen" button appears, they
share, the others decode it; the clinician revokes, and the share stops everywhere.

Determinism (docs/TESTING.md, browser rules): every wait is a bounded poll (30 s) of state the page exposes
(``window.viop.share()``, ``data-*`` attributes, ``getStats()`` ``framesDecoded`` going up); no frame rates.
The one-second bound compares the pages' own clocks: when the sharer's capture ended and when each viewer's
page received ``share_state`` (same machine, same wall clock), not the test's polling.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.e2e.browser import Browsers, Person
from tests.e2e.inner import flows
from tests.support import LiveServer
from vIOP.auth.permissions import Role
from vIOP.signaling.messages import SCREEN_STREAM_SUFFIX

WAIT_S = 30.0  # anything that crosses a network or a media pipeline
STOP_WITHIN_MS = 1000  # the bound


async def share_state(person: Person) -> dict[str, Any]:
    state = await person.page.evaluate("window.viop.share()")
    assert isinstance(state, dict)
    return state


async def decoded(person: Person, source: str) -> int:
    return (await flows.frames_decoded(person)).get(source, 0)


async def decodes_more(person: Person, source: str, frames: int = 5) -> None:
    """Bounded poll until ``person`` has decoded ``frames`` more video frames from ``source``."""
    start = await decoded(person, source)
    deadline = time.monotonic() + WAIT_S
    while (now := await decoded(person, source)) < start + frames:
        if time.monotonic() >= deadline:
            seen = await person.page.evaluate(
                "(async () => ({stats: await window.viop.inboundStats(), tiles: [...document.querySelectorAll("
                "'#grid > li')].map(t => [t.dataset.participant, JSON.stringify(t.getBoundingClientRect())]),"
                " h: window.innerHeight}))()"
            )
            raise AssertionError(
                f"{person.name}: {now - start} new frames from {source} in {WAIT_S} s; {seen}"
            )
        await asyncio.sleep(0.2)


async def sees_share_of(person: Person, sharer: str) -> None:
    """The page shows ``sharer``'s share on its stage, their tile says so, and the share decodes beside
    the sharer's camera."""
    try:
        await person.wait_until(
            f"window.viop.share().stage === '{sharer}' && window.viop.share().sharer === '{sharer}'",
            timeout_s=WAIT_S,
        )
    except AssertionError as failed:
        seen = await person.page.evaluate(
            "(async () => ({share: window.viop.share(), messages: window.viop.lastMessages(),"
            " stats: await window.viop.inboundStats()}))()"
        )
        raise AssertionError(f"{failed}; the page: {seen}") from None
    tile = f"#grid > li[data-participant='{sharer}']"
    await person.wait_until(
        f"document.querySelector(\"{tile}\")?.dataset.sharing === 'true' && "
        f"document.querySelector(\"{tile}\").textContent.includes('Sharing screen')",
        timeout_s=WAIT_S,
    )
    await decodes_more(person, sharer + SCREEN_STREAM_SUFFIX)
    await decodes_more(person, sharer)  # the camera goes on beside it


async def share_ended_for(viewers: list[Person], sharer: Person, sharer_id: str, since: int | None) -> None:
    """Every viewer's page was told within a second of ``since`` (a page's Date.now(); None: when the sharer's
    capture ended); its stage is gone, the sharer's tile no longer says so, and the share's m-line is
    inactive. The sharer's own capture has ended."""
    await sharer.wait_until("window.viop.share().endedAt > 0 && !window.viop.share().mine", timeout_s=WAIT_S)
    ended_at = since if since is not None else (await share_state(sharer))["endedAt"]
    for viewer in viewers:
        await viewer.wait_until(
            f"window.viop.share().sharer === null && window.viop.share().stage === null && "
            f"window.viop.share().stateAt >= {ended_at}",
            timeout_s=WAIT_S,
        )
        took = (await share_state(viewer))["stateAt"] - ended_at
        assert took <= STOP_WITHIN_MS, f"{viewer.name}: share_state {took} ms after the share ended"
        tile = f"#grid > li[data-participant='{sharer_id}']"
        assert await viewer.page.evaluate(f'document.querySelector("{tile}").dataset.sharing') is None
        # The share's m-line went inactive in the viewer's renegotiation: no frame of it can arrive any more.
        # (Not "the camera goes on while the share's counter stands still": a camera the budget paused for the
        # share resumes when the link's probes allow, a matter of timing.)
        await viewer.wait_until(
            "(async () => { const mids = (await window.viop.inboundStats())"
            f".filter(r => r.participantId === '{sharer_id}{SCREEN_STREAM_SUFFIX}').map(r => r.mid);"
            " const dirs = window.viop.directions();"
            " return mids.length > 0 && mids.every(mid => dirs[mid] === 'inactive'); })()",
            timeout_s=WAIT_S,
        )


async def test_a_clinician_shares_two_clients_see_it_it_stops_then_an_allowed_client_shares_until_revoked(
    server: LiveServer, people: Browsers
) -> None:
    await flows.create_account(server, Role.CLINICIAN, "dr.share")
    host = await people.launch("clinician")
    await flows.sign_in(host, "dr.share", "/console")
    await flows.create_room(host, "Thursday workshop")
    await flows.open_room(host, "Thursday workshop")
    links = [await flows.create_invite(host, name) for name in ("Robin", "Sam")]
    robin, sam = await people.launch("robin"), await people.launch("sam")
    for client, link in ((robin, links[0]), (sam, links[1])):
        await flows.client_joins(client, link)
    await host.wait_until("document.querySelectorAll('#lobby-list > li').length === 2", timeout_s=WAIT_S)
    await host.page.get_by_role("button", name="Admit Robin").click()
    await host.page.get_by_role("button", name="Admit Sam").click()
    clients = [robin, sam]
    for client in clients:
        await client.wait_until("window.viop && window.viop.phase() === 'in_room'", timeout_s=WAIT_S)
    host_id = await flows.participant_id(host)
    robin_id, sam_id = await flows.participant_id(robin), await flows.participant_id(sam)
    for client in clients:
        await flows.wait_for_video_from(client, {host_id}, timeout_s=WAIT_S)
        assert not await client.page.get_by_role("button", name="Share screen").is_visible()  # not allowed

    # The clinician shares; both clients decode it beside the camera.
    await host.page.get_by_role("button", name="Share screen").click()
    await host.wait_until("window.viop.share().mine && window.viop.share().sharer !== null", timeout_s=WAIT_S)
    for client in clients:
        await sees_share_of(client, host_id)
    await host.assert_accessible("console: sharing the screen")
    await robin.assert_accessible("join: a clinician's shared screen")

    # The clinician stops: gone for both within a second.
    await host.page.get_by_role("button", name="Stop sharing").click()
    await share_ended_for(clients, host, host_id, None)

    # The clinician allows Robin; Robin shares; Sam and the clinician see it.
    await host.page.get_by_role("button", name="Allow Robin to share their screen").click()
    share_button = robin.page.get_by_role("button", name="Share screen")
    await share_button.wait_for(state="visible", timeout=WAIT_S * 1000)
    await share_button.click()
    await robin.wait_until(
        "window.viop.share().mine && window.viop.share().sharer !== null", timeout_s=WAIT_S
    )
    # The roster's buttons sit below the video: back up to it (tiles scrolled off screen are paused, by design).
    await host.page.evaluate("window.scrollTo(0, 0)")
    for viewer in (sam, host):
        await sees_share_of(viewer, robin_id)
    await host.wait_until("window.viop.share().allowed.length === 1", timeout_s=WAIT_S)
    assert not await host.page.get_by_role("button", name="Share screen").is_enabled()  # one share at a time

    # The clinician revokes: Robin's share stops everywhere and the button goes.
    revoke = host.page.get_by_role("button", name="Stop Robin sharing their screen")
    await revoke.scroll_into_view_if_needed()
    revoked_at = await host.page.evaluate("Date.now()")  # just before the click: the bound only loosens
    await revoke.click()
    await host.page.evaluate("window.scrollTo(0, 0)")
    await share_ended_for([sam, host], robin, robin_id, revoked_at)
    await robin.wait_until("window.viop.share().allowed.length === 0", timeout_s=WAIT_S)
    await share_button.wait_for(state="hidden", timeout=WAIT_S * 1000)
    assert sam_id not in (await share_state(sam))["allowed"]
    for person in (host, robin, sam):
        await person.assert_clean()
