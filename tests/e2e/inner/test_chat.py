"""Chat in real browsers through the reference client's pages (issue 15, Done when): lobby chat both ways
before admission, a room line seen by everyone present (markup shown as text, never run), a private line
seen by the clinician only, and chat to everyone turned off by the clinician: the client's line is refused
and nobody receives it."""

from __future__ import annotations

import asyncio
import json

from tests.e2e.browser import Browsers, Person
from tests.e2e.inner import flows
from tests.support import LiveServer
from vIOP.auth.permissions import Role

LOG = "#chat-log"
ROOM_LINE = 'Hello group <img src=x onerror="window.chatInjected=1">'


def _log_has(text: str) -> str:
    """A page expression: the chat log shows a line whose text is exactly ``text``."""
    return (
        f"[...document.querySelectorAll('{LOG} .chat-text')].some(e => e.textContent === {json.dumps(text)})"
    )


async def _say(person: Person, to_label: str, text: str) -> None:
    await person.page.select_option("#chat-to", label=to_label)
    await person.page.fill("#chat-text", text)
    await person.page.get_by_role("button", name="Send", exact=True).click()


async def _texts(person: Person) -> list[str]:
    value = await person.page.evaluate(
        f"[...document.querySelectorAll('{LOG} .chat-text')].map(e => e.textContent)"
    )
    assert isinstance(value, list)
    return [str(v) for v in value]


async def test_lobby_room_and_private_chat_and_the_switch(server: LiveServer, people: Browsers) -> None:
    await flows.create_account(server, Role.CLINICIAN, "dr.chat")
    clinician, robin, sky = await asyncio.gather(
        people.launch("clinician"), people.launch("client-robin"), people.launch("client-sky")
    )
    await flows.sign_in(clinician, "dr.chat", "/console")
    await flows.create_room(clinician, "Chat group")
    await flows.open_room(clinician, "Chat group")
    links = {name: await flows.create_invite(clinician, name) for name in ("Robin", "Sky")}

    # Lobby chat, both ways, before admission.
    await flows.client_joins(robin, links["Robin"])
    await robin.wait_until("!document.querySelector('#chat-panel').hidden")
    await _say(robin, "The clinicians (private)", "Running late, my camera does not work")
    await clinician.wait_until(_log_has("Running late, my camera does not work"))
    await _say(clinician, "Robin (waiting room, private)", "No problem, audio only is fine")
    await robin.wait_until(_log_has("No problem, audio only is fine"))
    await robin.screenshot("lobby-chat")
    await robin.assert_accessible("waiting room with chat")

    await flows.client_joins(sky, links["Sky"])
    await clinician.wait_until("document.querySelectorAll('#lobby-list > li').length === 2")
    await clinician.page.get_by_role("button", name="Admit Robin").click()
    await clinician.page.get_by_role("button", name="Admit Sky").click()
    await asyncio.gather(
        *(p.wait_until("window.viop.phase() === 'in_room'", timeout_s=20) for p in (robin, sky))
    )
    assert "No problem, audio only is fine" not in await _texts(sky)  # Robin's thread was theirs alone

    # A room line reaches everyone present, as text.
    await robin.wait_until(
        "[...document.querySelectorAll('#chat-to option')].some(o => o.textContent === 'Everyone' && !o.disabled)"
    )
    await _say(robin, "Everyone", ROOM_LINE)
    for person in (clinician, sky, robin):
        await person.wait_until(_log_has(ROOM_LINE))
        assert await person.page.locator(f"{LOG} img").count() == 0
        assert await person.page.evaluate("window.chatInjected === undefined")

    # A private line from Sky reaches the clinician only.
    await _say(sky, "The clinicians (private)", "Can we talk after group?")
    await clinician.wait_until(_log_has("Can we talk after group?"))
    await _say(clinician, "Everyone", "Welcome, both of you")
    await robin.wait_until(_log_has("Welcome, both of you"))  # sent after Sky's line: Robin has had time
    assert "Can we talk after group?" not in await _texts(robin)
    await clinician.screenshot("console-chat")
    await clinician.assert_accessible("console with chat")

    # The clinician turns chat to everyone off: Robin, with "Everyone" still chosen, is refused.
    await robin.page.select_option("#chat-to", label="Everyone")
    await robin.page.fill("#chat-text", "Is anyone else struggling?")
    await clinician.page.get_by_label("Clients may chat to everyone").uncheck()
    await robin.wait_until("!document.querySelector('#chat-off-note').hidden")
    await sky.wait_until("!document.querySelector('#chat-off-note').hidden")
    await robin.page.get_by_role("button", name="Send", exact=True).click()
    await robin.wait_until("!document.querySelector('#chat-error').hidden")
    assert "turned chat to everyone off" in (await robin.page.locator("#chat-error").text_content() or "")
    # Still private with the clinicians; the refused line reached nobody.
    await _say(robin, "The clinicians (private)", "Okay, writing to you instead")
    await clinician.wait_until(_log_has("Okay, writing to you instead"))
    await _say(clinician, "Everyone", "Chat is off for now")
    await sky.wait_until(_log_has("Chat is off for now"))
    for person in (clinician, sky):
        assert "Is anyone else struggling?" not in await _texts(person)
    await robin.screenshot("chat-off")
    await robin.assert_accessible("session with chat off")
