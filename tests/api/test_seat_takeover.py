"""Issue 11, finding 4: a seat is taken back only with its resume token.

Two real sockets with the same client credential (the second device holding the same link): the first is
admitted and drops; the second joins without the resume token. It must not get the seat: it knocks as a new
participant, the host sees that knock, and the first device's resume token no longer works.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.client.session import RoomClient
from vIOP.signaling import messages as m


@pytest.fixture
async def live(live_server_factory: Any) -> AsyncIterator[LiveServer]:
    async with live_server_factory(ice_host_addresses="127.0.0.1") as server:
        yield server


def waiting(lobby: m.Lobby) -> list[str]:
    return [entry.participant_id for entry in lobby.waiting]


@contextlib.asynccontextmanager
async def closing(*clients: RoomClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def test_second_device_without_resume_token_knocks_and_the_host_sees_it(live: LiveServer) -> None:
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    clinician = ss.participant(live, host.principal, scope, host.session, tracks=tuple)
    principal = await ss.invite(live, host, scope, "Ana")
    first = ss.participant(live, principal, scope, tracks=tuple)
    second = ss.participant(live, principal, scope, tracks=tuple)
    async with closing(clinician, first, second):
        await clinician.join()
        await first.join()
        seat = first.participant_id
        await clinician.wait_message(m.Lobby, where=lambda lb: waiting(lb) == [seat])
        await clinician.send(m.Admit(participant_id=seat))
        await first.wait_message(m.Admitted)
        await first.drop()
        await clinician.wait_message(m.Reconnecting, where=lambda r: r.participant_id == seat)

        welcome = await second.join()  # the same credential, no resume token

        assert not welcome.resumed
        assert welcome.participant_id != seat
        await second.wait_message(m.Waiting)
        assert second.latest(m.Admitted) is None
        assert second.latest(m.Roster) is None, "a knocking device must not see who is in the room"
        # The host sees the knock: the new participant waits in the lobby for a decision.
        await clinician.wait_message(m.Lobby, where=lambda lb: waiting(lb) == [welcome.participant_id])
        # The seat nobody resumed is let go, so the first device's resume token is spent as well.
        await clinician.wait_message(m.ParticipantLeft, where=lambda left: left.participant_id == seat)
        with pytest.raises(RuntimeError, match="resume"):
            await first.join(resume=True)


async def test_the_resume_token_still_takes_the_seat_back(live: LiveServer) -> None:
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    clinician = ss.participant(live, host.principal, scope, host.session, tracks=tuple)
    principal = await ss.invite(live, host, scope, "Ana")
    client = ss.participant(live, principal, scope, tracks=tuple)
    async with closing(clinician, client):
        await clinician.join()
        await client.join()
        seat = client.participant_id
        await clinician.wait_message(m.Lobby, where=lambda lb: waiting(lb) == [seat])
        await clinician.send(m.Admit(participant_id=seat))
        await client.wait_message(m.Admitted)
        await client.drop()
        await clinician.wait_message(m.Reconnecting, where=lambda r: r.participant_id == seat)
        welcome = await client.join(resume=True)
        assert welcome.resumed and welcome.participant_id == seat
        await client.wait_message(m.Admitted)


async def test_a_removed_client_knocking_again_is_shown_to_the_host_as_returning(live: LiveServer) -> None:
    """Removal is not a ban, but the host's lobby says who is coming back after one."""
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    clinician = ss.participant(live, host.principal, scope, host.session, tracks=tuple)
    principal = await ss.invite(live, host, scope, "Ana")
    first = ss.participant(live, principal, scope, tracks=tuple)
    again = ss.participant(live, principal, scope, tracks=tuple)
    newcomer = ss.participant(live, await ss.invite(live, host, scope, "Ben"), scope, tracks=tuple)
    async with closing(clinician, first, again, newcomer):
        await clinician.join()
        await first.join()
        await clinician.wait_message(m.Lobby, where=lambda lb: waiting(lb) == [first.participant_id])
        await clinician.send(m.Admit(participant_id=first.participant_id))
        await first.wait_message(m.Admitted)
        await clinician.send(m.Remove(participant_id=first.participant_id))
        await first.wait_message(m.Removed)
        await first.wait_closed()

        await again.join()
        await newcomer.join()
        lobby = await clinician.wait_message(m.Lobby, where=lambda lb: len(lb.waiting) == 2)
        flags = {e.participant_id: e.returning_after_removal for e in lobby.waiting}
        assert flags == {again.participant_id: True, newcomer.participant_id: False}
