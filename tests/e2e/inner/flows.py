"""What people do in the reference client, as a real user would: click, type, read the screen.

The checks read the page (DOM) or the read-only ``window.viop`` diagnostics handle; media checks use the
page's own ``RTCPeerConnection.getStats()`` through that handle.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Request

from tests.api import signal_support as ss
from tests.e2e.browser import Person
from tests.support import LiveServer
from vIOP.auth.permissions import Role
from vIOP.cli.users import open_account_admin

PASSWORD = "correct horse battery staple 42"
MEDIA_TIMEOUT_S = 20.0


async def create_account(server: LiveServer, role: Role, username: str) -> None:
    """The same path as ``python -m vIOP users create``: the configured store, audited."""
    async with open_account_admin(server.settings) as admin:
        await admin.create(role, username, PASSWORD, with_totp=False)


async def sign_in(person: Person, username: str, lands_on: str) -> None:
    await person.page.goto("/")
    await person.on_screen("login")
    await person.page.get_by_label("Username").fill(username)
    await person.page.get_by_label("Password").fill(PASSWORD)
    await person.page.get_by_role("button", name="Sign in").click()
    await person.page.wait_for_url(f"**{lands_on}", timeout=10_000)


async def create_room(clinician: Person, title: str) -> str:
    await clinician.on_screen("rooms")
    await clinician.page.get_by_label("Room name").fill(title)
    await clinician.page.get_by_label("Kind").select_option("group")
    await clinician.page.get_by_role("button", name="Create room").click()
    item = clinician.page.locator("#room-list > li").filter(has_text=title)
    await item.wait_for(timeout=10_000)
    room_id = await item.get_attribute("data-room")
    assert room_id and room_id.startswith("rm_"), room_id
    return room_id


async def open_room(clinician: Person, title: str) -> None:
    await clinician.page.get_by_role("button", name=f"Open {title}").click()
    await clinician.wait_until("window.viop && window.viop.phase() === 'in_room'", timeout_s=15)


async def create_invite(clinician: Person, display_name: str) -> str:
    await clinician.page.get_by_label("Client's display name").fill(display_name)
    await clinician.page.get_by_role("button", name="Create invite link").click()
    link = clinician.page.locator("#invite-link")
    await clinician.wait_until(
        "document.querySelector('#invite-link').value.includes('/join#') && "
        "!document.querySelector('#invite-result').hidden"
    )
    value = await link.input_value()
    # Clear for the next invite so two links are never confused.
    await clinician.page.evaluate("document.querySelector('#invite-link').value = ''")
    return value


async def client_joins(client: Person, link: str) -> None:
    """Open the invite link, confirm, see the camera preview, and knock."""
    await client.page.goto(link)
    await client.on_screen("confirm")
    await client.page.get_by_role("button", name="Continue").click()
    await client.wait_until("document.querySelector('#preview').videoWidth > 0")
    await client.page.get_by_role("button", name="Join the waiting room").click()
    await client.on_screen("waiting", timeout_s=15)


def record_api_requests(person: Person) -> list[str]:
    """From now on, the path (no query) of every API request the person's page makes, in order."""
    paths: list[str] = []

    def seen(request: Request) -> None:
        path = urlsplit(request.url).path
        if path.startswith("/api/"):
            paths.append(path)

    person.page.on("request", seen)
    return paths


async def participant_id(person: Person) -> str:
    value = await person.wait_until("window.viop && window.viop.participantId()")
    assert isinstance(value, str) and value.startswith("pt_"), value
    return value


async def inbound(person: Person) -> list[dict[str, Any]]:
    rows = await person.page.evaluate("window.viop.inboundStats()")
    assert isinstance(rows, list)
    return rows


async def frames_decoded(person: Person) -> dict[str, int]:
    """Video frames decoded so far per source participant (getStats ``framesDecoded``)."""
    decoded: dict[str, int] = {}
    for row in await inbound(person):
        if row["kind"] == "video" and row["participantId"]:
            source = row["participantId"]
            decoded[source] = max(decoded.get(source, 0), row["framesDecoded"])
    return decoded


async def wait_for_video_from(
    person: Person, sources: set[str], *, timeout_s: float = MEDIA_TIMEOUT_S
) -> None:
    """Bounded poll until getStats() shows decoded video frames from every one of ``sources``."""
    deadline = time.monotonic() + timeout_s
    while True:
        decoded = await frames_decoded(person)
        if all(decoded.get(source, 0) > 0 for source in sources):
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"{person.name}: frames decoded per source after {timeout_s} s: {decoded}")
        await asyncio.sleep(0.2)


async def wait_for_more_video_from(
    person: Person, source: str, *, timeout_s: float = MEDIA_TIMEOUT_S
) -> None:
    """Bounded poll until ``person`` decodes new video frames from ``source`` (its counter grows)."""
    first = (await frames_decoded(person)).get(source, 0)
    deadline = time.monotonic() + timeout_s
    while (now := (await frames_decoded(person)).get(source, 0)) <= first:
        if time.monotonic() >= deadline:
            raise AssertionError(f"{person.name}: no new frame from {source} in {timeout_s} s (at {now})")
        await asyncio.sleep(0.2)


async def audio_packets_from(person: Person, source: str) -> int:
    return sum(
        row["packetsReceived"]
        for row in await inbound(person)
        if row["kind"] == "audio" and row["participantId"] == source
    )


async def wait_audio_flowing(person: Person, source: str, *, timeout_s: float = 10.0) -> None:
    """Bounded poll until audio packets from ``source`` are arriving at ``person``."""
    first = await audio_packets_from(person, source)
    deadline = time.monotonic() + timeout_s
    while await audio_packets_from(person, source) <= first:
        if time.monotonic() >= deadline:
            raise AssertionError(f"{person.name}: no audio from {source} for {timeout_s} s")
        await asyncio.sleep(0.2)


async def wait_audio_stopped(
    person: Person, source: str, *, quiet_s: float = 1.0, timeout_s: float = 10.0
) -> None:
    """Bounded poll until no audio packet from ``source`` has arrived at ``person`` for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    last = await audio_packets_from(person, source)
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        if time.monotonic() >= deadline:
            raise AssertionError(f"{person.name}: audio from {source} still arriving after {timeout_s} s")
        await asyncio.sleep(0.2)
        now = await audio_packets_from(person, source)
        if now != last:
            last, quiet_since = now, time.monotonic()


async def invite_link(server: LiveServer, display_name: str) -> str:
    """A real invite link, made through the app's own services (a clinician, a room, an invite)."""
    host = await ss.clinician(server, username=f"dr.{display_name.lower()}")
    scope = await ss.room(server, host)
    created = await ss.services(server).invites.create(host.principal, scope, display_name)
    return f"/join#invite={created.token}&room={scope.room_id}"
