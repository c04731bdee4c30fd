"""Who is audio only is told to that person and the room's hosts, never to the other clients (42 CFR Part 2,
minimum necessary), and the attendance ledger records the span (issue 13). Real socket, real relay, aiortc
clients, real redis-server and SQLite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.client.session import RoomClient
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.ports import AttendanceQuery
from vIOP.signaling import messages as m


@pytest.fixture
async def live(live_server_factory: Any) -> AsyncIterator[LiveServer]:
    async with live_server_factory(ice_host_addresses="127.0.0.1") as server:
        yield server


async def admitted(clinician: RoomClient, client: RoomClient, waiting: int) -> None:
    await client.join()
    await clinician.wait_message(m.Lobby, where=lambda lb: len(lb.waiting) == waiting)
    await clinician.send(m.Admit(participant_id=client.participant_id))
    await client.wait_message(m.Admitted)


def shows_audio_only(roster: m.Roster, pid: str) -> bool:
    return any(e.participant_id == pid and e.audio_only for e in roster.participants)


async def test_another_client_never_learns_who_is_audio_only_the_host_does_and_the_ledger_records_it(
    live: LiveServer,
) -> None:
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    clinician = ss.participant(live, host.principal, scope, host.session)
    ana = ss.participant(live, await ss.invite(live, host, scope, "Ana"), scope)
    ben = ss.participant(live, await ss.invite(live, host, scope, "Ben"), scope)
    try:
        await clinician.join()
        await admitted(clinician, ana, 1)
        await admitted(clinician, ben, 1)
        await clinician.start_media()
        await ana.start_media()
        await ana.wait_frames(clinician.participant_id, "video", at_least=3, within=30)
        pid = ana.participant_id

        before_on = time.time()
        await ana.send(m.SaveData(on=True))
        on = m.AudioOnly(participant_id=pid, on=True, reason=m.AudioOnlyReason.SAVE_DATA)
        await ana.wait_message(m.AudioOnly, where=lambda x: x == on)
        await clinician.wait_message(m.AudioOnly, where=lambda x: x == on)
        # Ben's socket has seen what the room was told so far once his own hand comes back to him.
        await ben.send(m.RaiseHand(up=True))
        await ben.wait_message(m.HandRaised, where=lambda x: x.up)
        assert not [x for x in ben.messages if isinstance(x, m.AudioOnly)]
        # The refreshed rosters: the host's and Ana's own show it; Ben's (sent after the host's) does not.
        await clinician.wait_message(m.Roster, where=lambda r: shows_audio_only(r, pid))
        await ana.wait_message(m.Roster, where=lambda r: shows_audio_only(r, pid))
        await ben.wait_message(m.Roster, where=lambda r: any(e.participant_id == pid for e in r.participants))

        await ana.send(m.SaveData(on=False))
        off = m.AudioOnly(participant_id=pid, on=False, reason=m.AudioOnlyReason.SAVE_DATA)
        await clinician.wait_message(m.AudioOnly, where=lambda x: x == off)
        after_off = time.time()
        await ana.send(m.Leave())
        await ana.wait_closed()
        await clinician.wait_message(m.ParticipantLeft, where=lambda x: x.participant_id == pid)
        # Ben's socket has seen everything the room said meanwhile (his own later messages follow it).
        await ben.send(m.RaiseHand(up=False))
        await ben.wait_message(m.HandRaised, where=lambda x: not x.up)

        assert not [x for x in ben.messages if isinstance(x, m.AudioOnly)]
        assert not [x for x in ben.messages if isinstance(x, m.Roster) and shows_audio_only(x, pid)]
        assert not [
            x for x in ben.messages if isinstance(x, m.ParticipantJoined) and x.participant.audio_only
        ]

        services = ss.services(live)
        assert services.live.delivery is not None
        await services.live.delivery.audio_only_settled()
        ledger = services.rooms.attendance
        assert ledger is not None
        stays = await ledger.intervals(AttendanceQuery(room_id=scope.room_id))
        spans = [span for s in stays if s.participant_id == pid for span in s.audio_only]
        assert len(spans) == 1 and spans[0].reason is AudioOnlyReason.SAVE_DATA
        assert spans[0].ended_at is not None
        assert before_on <= spans[0].started_at <= spans[0].ended_at <= after_off
    finally:
        await asyncio.gather(*(c.close() for c in (clinician, ana, ben)), return_exceptions=True)
