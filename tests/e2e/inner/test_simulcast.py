"""Simulcast in real browsers: Chromium publishes two layers (``sendEncodings`` h and l), the relay accepts
both, and what a viewer's grid shows decides what it receives (``set_subscriptions``): a small tile the low
layer (getStats ``frameHeight`` 180), a large one the high layer (360), a tile scrolled off screen nothing."""

from __future__ import annotations

import asyncio
import time

from tests.e2e.browser import Browsers, Person
from tests.e2e.inner import flows
from tests.support import LiveServer
from vIOP.auth.permissions import Role

ROOM_TITLE = "Simulcast group"
HIGH, LOW = 360, 180  # the fake camera's 640x360 and its half


async def frame_height(person: Person, source: str) -> int:
    rows = [r for r in await flows.inbound(person) if r["kind"] == "video" and r["participantId"] == source]
    return max((r["frameHeight"] for r in rows), default=0)


async def wait_height(
    person: Person, source: str, height: int, publisher: Person, timeout_s: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while (now := await frame_height(person, source)) != height:
        if time.monotonic() >= deadline:
            # What the publisher's encoder sent tells the relay's choice from a layer never sent (Chrome
            # lowers a layer's resolution when its CPU or its uplink estimate limits it).
            sent = await publisher.page.evaluate("window.viop.outboundStats()")
            raise AssertionError(
                f"{person.name}: frame height of {source} is {now}, not {height}; "
                f"{publisher.name} sends {sent}"
            )
        await asyncio.sleep(0.2)


async def wait_video_stopped(
    person: Person, source: str, quiet_s: float = 1.5, timeout_s: float = 10.0
) -> None:
    """Bounded poll until no video frame from ``source`` has been decoded by ``person`` for ``quiet_s``
    (at 20 fps a running stream decodes 30 in that time)."""
    deadline = time.monotonic() + timeout_s
    last = (await flows.frames_decoded(person)).get(source, 0)
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        if time.monotonic() >= deadline:
            raise AssertionError(f"{person.name}: video from {source} still decoded after {timeout_s} s")
        await asyncio.sleep(0.2)
        now = (await flows.frames_decoded(person)).get(source, 0)
        if now != last:
            last, quiet_since = now, time.monotonic()


async def test_the_tile_size_picks_the_layer_and_an_off_screen_tile_pauses_it(
    server: LiveServer, people: Browsers
) -> None:
    await flows.create_account(server, Role.CLINICIAN, "dr.layers")
    clinician = await people.launch("clinician")
    alex = await people.launch("client-alex")
    await flows.sign_in(clinician, "dr.layers", "/console")
    await flows.create_room(clinician, ROOM_TITLE)
    await flows.open_room(clinician, ROOM_TITLE)
    link = await flows.create_invite(clinician, "Alex")
    await flows.client_joins(alex, link)
    await clinician.page.get_by_role("button", name="Admit Alex").click()
    await alex.wait_until("window.viop.phase() === 'in_room'", timeout_s=15)
    alex_id = await flows.participant_id(alex)
    await flows.wait_for_video_from(clinician, {alex_id})

    await wait_height(clinician, alex_id, LOW, alex)
    # One tile per row (a spotlight): far taller than the low layer, so the high layer comes.
    # (Script sets the style through the CSSOM: the page's CSP refuses inline style elements.)
    grid = "document.getElementById('grid').style.gridTemplateColumns"
    await clinician.page.evaluate(f"{grid} = '1fr'")
    await wait_height(clinician, alex_id, HIGH, alex)
    await flows.wait_for_more_video_from(clinician, alex_id)
    await clinician.page.evaluate(f"{grid} = ''")
    await wait_height(clinician, alex_id, LOW, alex)

    # Alex's tile off screen: no more of Alex's video for the clinician, Alex's audio goes on.
    tile = f"document.querySelector('#grid > li[data-participant=\"{alex_id}\"]')"
    await clinician.page.evaluate(f"{tile}.style.transform = 'translateY(-5000px)'")
    await wait_video_stopped(clinician, alex_id)
    await flows.wait_audio_flowing(clinician, alex_id)
    await clinician.page.evaluate(f"{tile}.style.transform = ''")
    await flows.wait_for_more_video_from(clinician, alex_id)
