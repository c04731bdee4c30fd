"""Issue 11, finding 5: clients see the clinician's display name, never the login username.

A username is half of the credentials (and the key a guesser needs to try passwords): it must not reach any
client. Real uvicorn socket, Redis, SQLite; every message the client receives is re-encoded and scanned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.signaling import messages as m

USERNAME = "dr.quillon.canary"


@pytest.fixture
async def live(live_server_factory: Any) -> AsyncIterator[LiveServer]:
    async with live_server_factory(ice_host_addresses="127.0.0.1") as server:
        yield server


async def host_as_seen_by_a_client(live: LiveServer, display_name: str | None) -> tuple[str, list[bytes]]:
    """Host and client meet in a room; the host's roster name and every frame the client received."""
    host = await ss.clinician(live, USERNAME, display_name)
    scope = await ss.room(live, host)
    clinician = ss.participant(live, host.principal, scope, host.session)
    client = ss.participant(live, await ss.invite(live, host, scope, "Ana"), scope)
    try:
        await clinician.join()
        await client.join()
        await client.wait_message(m.Waiting)
        await clinician.send(m.Admit(participant_id=client.participant_id))
        await client.wait_message(m.Admitted)
        await asyncio.gather(clinician.start_media(), client.start_media())  # seated -> in the room
        host_id = clinician.participant_id

        def host_entry(message: m.ServerMessage) -> m.RosterEntry | None:
            if isinstance(message, m.Roster):
                return next((e for e in message.participants if e.participant_id == host_id), None)
            if isinstance(message, m.ParticipantJoined) and message.participant.participant_id == host_id:
                return message.participant
            return None

        found = await client.wait_for(lambda message: host_entry(message) is not None, within=30)
        entry = host_entry(found)
        assert entry is not None
        shown = entry.display_name
        return shown, [msgspec.json.encode(message) for message in client.messages]
    finally:
        await asyncio.gather(clinician.close(), client.close(), return_exceptions=True)


async def test_clients_see_the_display_name_not_the_username(live: LiveServer) -> None:
    shown, frames = await host_as_seen_by_a_client(live, "Dr. Lee")
    assert shown == "Dr. Lee"
    assert all(USERNAME.encode() not in frame for frame in frames)


async def test_an_account_without_a_display_name_is_shown_by_its_role(live: LiveServer) -> None:
    shown, frames = await host_as_seen_by_a_client(live, None)
    assert shown == "Clinician"
    assert len(frames) >= 3 and all(USERNAME.encode() not in frame for frame in frames)


# --- issue 15: the clinician edits their own display name over the API ---------------------------------------


async def test_a_clinician_renames_themself_and_clients_see_the_new_name_never_the_username(
    live: LiveServer,
) -> None:
    import httpx

    from tests.api.support import assert_error, bearer

    svc = ss.services(live)
    host = await ss.clinician(live, USERNAME, "Dr. Lee")
    token = (await svc.tokens.issue(host.principal.subject, host.principal.role)).token  # type: ignore[arg-type]
    async with httpx.AsyncClient(base_url=live.base_url, trust_env=False) as http:
        url, auth = "/api/v1/account/display-name", bearer(token)
        for bad in ("   ", USERNAME.upper(), "x" * 200, "Dr.\u200bLee"):
            assert_error(await http.put(url, json={"display_name": bad}, headers=auth), 400, "bad_request")
        assert (await svc.authenticator.active_account(host.principal.subject)).display_name == "Dr. Lee"  # type: ignore[arg-type]
        renamed = await http.put(url, json={"display_name": "  Dr. Lee Moss "}, headers=auth)
        assert renamed.status_code == 200, renamed.text
        assert renamed.json() == {"id": host.principal.subject, "display_name": "Dr. Lee Moss"}
        scope = await ss.room(live, host)
        invite = await svc.invites.create(host.principal, scope, "Ana")
        client_token = invite.token
        assert_error(
            await http.put(url, json={"display_name": "Me"}, headers=bearer(client_token)), 403, "forbidden"
        )
    clinician = ss.participant(live, host.principal, scope, host.session)
    client = ss.participant(live, invite.invite.principal, scope)
    try:
        await clinician.join()
        await client.join()
        await client.wait_message(m.Waiting)
        await clinician.send(m.Admit(participant_id=client.participant_id))
        await client.wait_message(m.Admitted)
        await asyncio.gather(clinician.start_media(), client.start_media())
        host_id = clinician.participant_id
        roster = await client.wait_message(
            m.Roster, within=30, where=lambda r: any(e.participant_id == host_id for e in r.participants)
        )
        assert [e.display_name for e in roster.participants if e.participant_id == host_id] == [
            "Dr. Lee Moss"
        ]
        assert all(USERNAME.encode() not in msgspec.json.encode(message) for message in client.messages)
    finally:
        await asyncio.gather(clinician.close(), client.close(), return_exceptions=True)
