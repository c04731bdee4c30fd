"""Issue 15, private breakout, end to end: real aiortc peers on a live server (uvicorn, Redis, SQLite).

A host moves a seated client into a private breakout with a co-host. The client then hears only the
co-host; the group (the host and another client) stops receiving the two within 1 s and its roster shows
them only as stepped out, never why or with whom (asserted on the other client's socket: every message it
received); room chat stays inside each group. Ending the breakout brings the client back without a knock
and media flows both ways again; the ledger holds one interval for the client with the breakout span in it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.client.session import RoomClient
from vIOP.ids import UserId
from vIOP.rooms.ports import AttendanceQuery
from vIOP.signaling import messages as m

STOP_WITHIN = 1.0  # the bound: the group stops receiving the breakout's two within a second
LATER_FRAMES = 100  # 2 s of 20 ms audio: how long the test watches for a stream that should have stopped


@pytest.fixture
async def live(live_server_factory: Any) -> AsyncIterator[LiveServer]:
    async with live_server_factory(ice_host_addresses="127.0.0.1") as server:
        yield server


def last_frame_at(viewer: RoomClient, publisher: str, kind: str) -> float:
    """When ``viewer`` last decoded a frame of ``publisher``'s ``kind``; -inf if it never did (video may not
    have started yet on a loaded machine: the test waits for audio only, which no budget pauses)."""
    count = viewer.counter.streams.get((publisher, kind))
    if count is None or count.last_at is None:
        assert kind == "video", (publisher, kind)  # everyone heard everyone before the breakout
        return float("-inf")
    return count.last_at


async def more_frames(viewer: RoomClient, publisher: str, n: int = LATER_FRAMES) -> None:
    """Let ``n`` more audio frames of ``publisher`` reach ``viewer``: time passing, measured by media that
    keeps flowing (audio: never paused by a downlink budget, which a loaded test machine may move video into)."""
    start = viewer.counter.frames(publisher, "audio")
    await viewer.wait_frames(publisher, "audio", at_least=start + n, within=30)


async def test_a_breakout_takes_a_client_aside_with_a_cohost_and_brings_them_back(live: LiveServer) -> None:
    svc = ss.services(live)
    dr = await ss.clinician(live, "dr.group", "Dr. Group")
    co = await ss.clinician(live, "dr.private", "Dr. Private")
    scope = await ss.room(live, dr)
    cohost_id = UserId(co.principal.subject)
    await svc.room_directory.add_cohost(scope.room_id, cohost_id, by=None, at=svc.rooms.clock())
    await svc.rooms.add_host(scope.room_id, user_id=cohost_id, by=None)
    scope = await svc.room_directory.room_scope(scope.room_id)
    target_principal = await ss.invite(live, dr, scope, "Breakout Client")

    def person(principal: Any, session: str | None = None) -> RoomClient:
        # Microphone and camera (a camera that sends keyframes only when asked, as the relay must ask after
        # the return); the relay-level detail is tests/media/test_relay_groups.py.
        return ss.participant(live, principal, scope, session)

    host, cohost = person(dr.principal, dr.session), person(co.principal, co.session)
    target = person(target_principal)
    other = person(await ss.invite(live, dr, scope, "Group Client"))
    everyone = [host, cohost, target, other]
    try:
        await host.join()
        await cohost.join()
        for client in (target, other):
            await client.join()
            await client.wait_message(m.Waiting)
            await host.send(m.Admit(participant_id=client.participant_id))
            await client.wait_message(m.Admitted)
        for p in everyone:  # the test runs longer than the heartbeat expiry: keep the seats
            assert p.signaling is not None and p.welcome is not None
            p.signaling.start_heartbeat(p.welcome.heartbeat_seconds)
        await asyncio.gather(*(p.start_media() for p in everyone))
        ids = {p.participant_id for p in everyone}
        for viewer in everyone:  # everyone hears everyone before the breakout
            for pid in ids - {viewer.participant_id}:
                await viewer.wait_frames(pid, "audio", at_least=25, within=30)
        await target.send(m.NeedToTalk())
        await host.wait_message(m.TalkRequest, within=10, where=lambda msg: msg.pending)

        # --- into the breakout: "Talk privately" --------------------------------------------------------
        started_at = time.monotonic()
        await host.send(
            m.StartBreakout(participant_id=target.participant_id, clinician_id=cohost.participant_id)
        )
        told = await target.wait_message(m.Breakout, within=10, where=lambda msg: msg.active)
        assert (told.clinician_id, told.clinician_name) == (cohost.participant_id, "Dr. Private")
        await host.wait_message(m.TalkRequest, within=10, where=lambda msg: not msg.pending)  # acknowledged
        aside = {target.participant_id, cohost.participant_id}
        group = [host, other]
        for viewer in group:  # the group stops receiving the two within a second
            await more_frames(viewer, group[1 - group.index(viewer)].participant_id)
            for pid in aside:
                for kind in ("audio", "video"):
                    assert last_frame_at(viewer, pid, kind) - started_at <= STOP_WITHIN, (pid, kind)
        for a, b in ((target, cohost), (cohost, target)):  # the two hear each other, and only each other
            before = {pid: a.counter.frames(pid, "audio") for pid in ids}
            await more_frames(a, b.participant_id)
            for viewer in group:
                assert last_frame_at(a, viewer.participant_id, "audio") - started_at <= STOP_WITHIN
                assert a.counter.frames(viewer.participant_id, "audio") == before[viewer.participant_id]

        # the group's roster: stepped out, nothing more; the target's: its two sides only
        def stepped_out(msg: m.Roster) -> bool:
            return all(e.stepped_out for e in msg.participants if e.participant_id in aside)

        await other.wait_message(m.Roster, within=10, where=stepped_out)
        roster = await target.wait_message(
            m.Roster, within=10, where=lambda msg: {e.participant_id for e in msg.participants} == aside
        )
        assert not any(e.stepped_out for e in roster.participants)
        host_roster = await host.wait_message(
            m.Roster,
            within=10,
            where=lambda msg: stepped_out(msg) and any(e.breakout_with for e in msg.participants),
        )
        assert {e.participant_id: e.breakout_with for e in host_roster.participants if e.breakout_with} == {
            target.participant_id: cohost.participant_id,
            cohost.participant_id: target.participant_id,
        }

        # room chat stays in each group: the group's next line arrives after the breakout's would have
        await target.send(m.Chat(text="Only for you"))
        await cohost.wait_message(m.ChatMessage, within=10, where=lambda msg: msg.text == "Only for you")
        await other.send(m.Chat(text="Group line"))
        await host.wait_message(m.ChatMessage, within=10, where=lambda msg: msg.text == "Group line")
        await cohost.send(m.Chat(text="Breakout reply"))
        await target.wait_message(m.ChatMessage, within=10, where=lambda msg: msg.text == "Breakout reply")
        await other.send(m.Chat(text="Group line two"))
        await host.wait_message(m.ChatMessage, within=10, where=lambda msg: msg.text == "Group line two")
        chat_of = {
            p.participant_id: {x.text for x in p.messages if isinstance(x, m.ChatMessage)} for p in everyone
        }
        assert chat_of[other.participant_id] == {"Group line", "Group line two"}
        assert chat_of[host.participant_id] == {"Group line", "Group line two"}
        assert chat_of[target.participant_id] == {"Only for you", "Breakout reply"}

        # --- back to the group, no knock ---------------------------------------------------------------
        await host.send(m.EndBreakout(participant_id=target.participant_id))
        await target.wait_message(m.Breakout, within=10, where=lambda msg: not msg.active)
        for viewer in everyone:  # media resumes between the two and the group on the same connections
            for pid in ids - {viewer.participant_id}:
                await more_frames(viewer, pid, 25)
                # video too: the relay asks each publisher for a keyframe for the legs it resumes
                decoded = viewer.counter.frames(pid, "video")
                await viewer.wait_frames(pid, "video", at_least=decoded + 10, within=30)
        await other.wait_message(
            m.Roster, within=10, where=lambda msg: not any(e.stepped_out for e in msg.participants)
        )
        # admitted once, at the start, and never in the waiting room since: the way back needed no knock
        assert target.received_since(m.Waiting, started_at) == []
        assert [x for x in target.messages if isinstance(x, m.Admitted)] == [m.Admitted()]

        # the group never learned why or with whom (every message the other client received)
        for message in other.messages:
            assert not isinstance(message, m.Breakout | m.TalkRequest), message
            if isinstance(message, m.Roster):
                assert all(e.breakout_with is None and not e.talk_requested for e in message.participants)

        # the ledger: one interval for the client, the breakout a span within it
        await target.send(m.Leave())
        await target.wait_closed()
        for _ in range(250):  # the leave is written by the server's own task: a bounded poll
            stays = await svc.rooms.attendance.intervals(  # type: ignore[union-attr]
                AttendanceQuery(room_id=scope.room_id, subject=target_principal.subject)
            )
            if stays and stays[0].left_at is not None:
                break
            await asyncio.sleep(0.02)
        [stay] = stays
        [span] = stay.breakouts
        assert stay.left_at is not None and span.ended_at is not None
        assert stay.joined_at <= span.started_at < span.ended_at <= stay.left_at
        assert span.clinician == cohost_id
    finally:
        await asyncio.gather(*(p.close() for p in everyone), return_exceptions=True)
