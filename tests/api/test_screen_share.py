"""Screen share end to end (issue 15): real aiortc participants on a live server.

The host publishes microphone, camera and a screen track (its offer's second video section); two clients
decode the share (stream id ``<host>.screen``) while still decoding the host's camera. Stopping ends it for
both within a second: ``share_state`` names nobody and the share's m-line goes inactive in their next
offer. A client a host allows shares the same way; when the host revokes, their share stops. Refusals
(a client not allowed, a second share at once) are typed errors that change nothing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiortc import MediaStreamTrack

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.client.media import SyntheticVideoTrack, silent_audio_track
from vIOP.client.session import RoomClient
from vIOP.media.sdp import summarize_sdp
from vIOP.signaling import messages as m

STOP_WITHIN = 1.0  # the bound, from stop_share (or revoke_share) to every receiver
FLOW_WITHIN = 30.0  # media across a busy machine


@pytest.fixture
async def live(live_server_factory: Any) -> AsyncIterator[LiveServer]:
    async with live_server_factory(ice_host_addresses="127.0.0.1") as server:
        yield server


def with_screen() -> tuple[MediaStreamTrack, ...]:
    return (silent_audio_track(), SyntheticVideoTrack(), SyntheticVideoTrack(320, 180))


def camera_only() -> tuple[MediaStreamTrack, ...]:
    return (silent_audio_track(), SyntheticVideoTrack())


def screen(pid: str) -> str:
    return pid + m.SCREEN_STREAM_SUFFIX


def offer_sends(message: m.ServerMessage, stream: str) -> bool | None:
    """Whether a server offer sends ``stream`` (None: not an offer)."""
    if not isinstance(message, m.ServerOffer):
        return None
    return any(
        s.stream_id == stream and s.direction in ("sendonly", "sendrecv")
        for s in summarize_sdp(message.sdp).media
    )


async def stopped_for(viewer: RoomClient, sharer: str, since: float) -> float:
    """Seconds from ``since`` until ``viewer`` was told nobody shares and got an offer without the share."""
    before = {id(msg) for msg, at in zip(viewer.messages, viewer.arrivals, strict=True) if at < since}
    told = await viewer.wait_for(
        lambda msg: isinstance(msg, m.ShareState) and msg.sharer is None and id(msg) not in before,
        within=FLOW_WITHIN,
    )
    offered = await viewer.wait_for(
        lambda msg: offer_sends(msg, screen(sharer)) is False and id(msg) not in before, within=FLOW_WITHIN
    )
    arrived = {id(msg): at for msg, at in zip(viewer.messages, viewer.arrivals, strict=True)}
    return max(arrived[id(told)], arrived[id(offered)]) - since


async def refusal(client: RoomClient, message: m.ClientMessage) -> str:
    """Send ``message`` (it carries an id) and return the code of the ``error`` that answers it."""
    await client.send(message)
    reply = await client.wait_message(m.ErrorMessage, where=lambda e: e.id == message.id)
    return reply.code


async def decodes_both(viewer: RoomClient, sharer: str, frames: int = 10) -> None:
    """``viewer`` decodes more of ``sharer``'s share and camera (framesDecoded going up, no rate asked)."""
    camera, shared = viewer.counter.frames(sharer, "video"), viewer.counter.frames(screen(sharer), "video")
    await viewer.wait_frames(screen(sharer), "video", at_least=shared + frames, within=FLOW_WITHIN)
    await viewer.wait_frames(sharer, "video", at_least=camera + frames, within=FLOW_WITHIN)


async def open_room(
    live: LiveServer, client_tracks: tuple[Callable[[], tuple[MediaStreamTrack, ...]], ...]
) -> tuple[RoomClient, list[RoomClient]]:
    dr = await ss.clinician(live)
    scope = await ss.room(live, dr)
    host = ss.participant(live, dr.principal, scope, dr.session, tracks=with_screen)
    clients = [
        ss.participant(live, await ss.invite(live, dr, scope, f"Client {i}"), scope, tracks=tracks)
        for i, tracks in enumerate(client_tracks)
    ]
    await host.join()
    for client in clients:
        await client.join()
        await client.wait_message(m.Waiting)
    await host.send(m.AdmitAll())
    for client in clients:
        await client.wait_message(m.Admitted)
        await client.wait_message(m.ShareState, where=lambda s: s.sharer is None)  # told on admission
    for participant in (host, *clients):
        await participant.start_media()
    return host, clients


async def test_a_host_shares_two_clients_decode_it_beside_the_camera_and_it_stops_for_both_within_a_second(
    live: LiveServer,
) -> None:
    host, clients = await open_room(live, (camera_only, camera_only))
    try:
        hid = host.participant_id
        for client in clients:
            await client.wait_frames(hid, "video", at_least=5, within=FLOW_WITHIN)
            assert client.counter.frames(screen(hid), "video") == 0  # published, not shared: not sent

        await host.send(m.StartShare(id="share-1"))
        for viewer in (*clients, host):
            await viewer.wait_message(m.ShareState, where=lambda s: s.sharer == hid)
        for client in clients:
            await decodes_both(client, hid)

        stopped_at = time.monotonic()
        await host.send(m.StopShare())
        took = [await stopped_for(client, hid, stopped_at) for client in clients]
        assert max(took) <= STOP_WITHIN, took
        ended = [client.counter.frames(screen(hid), "video") for client in clients]
        for client in clients:  # the camera goes on; the share does not
            await client.wait_frames(hid, "video", at_least=client.counter.frames(hid, "video") + 10)
        assert [client.counter.frames(screen(hid), "video") for client in clients] == ended
    finally:
        for participant in (host, *clients):
            await participant.close()


async def test_an_allowed_client_shares_until_the_host_revokes_and_refusals_change_nothing(
    live: LiveServer,
) -> None:
    host, (presenter, viewer) = await open_room(live, (with_screen, camera_only))
    try:
        hid, pid = host.participant_id, presenter.participant_id
        assert await refusal(presenter, m.StartShare(id="not-allowed")) == "share_not_allowed"
        assert await refusal(viewer, m.AllowShare(participant_id=pid, id="not-a-host")) == "forbidden"

        await host.send(m.AllowShare(participant_id=pid))
        await presenter.wait_message(m.ShareState, where=lambda s: pid in s.allowed and s.sharer is None)
        await presenter.send(m.StartShare())
        await viewer.wait_message(m.ShareState, where=lambda s: s.sharer == pid)
        await decodes_both(viewer, pid)
        await decodes_both(host, pid)

        assert await refusal(host, m.StartShare(id="second")) == "share_in_progress"
        assert viewer.counter.frames(screen(hid), "video") == 0  # the host's share never started

        revoked_at = time.monotonic()
        await host.send(m.RevokeShare(participant_id=pid))
        took = [await stopped_for(other, pid, revoked_at) for other in (viewer, host)]
        assert max(took) <= STOP_WITHIN, took
        state = await presenter.wait_message(
            m.ShareState, where=lambda s: s.sharer is None and pid not in s.allowed
        )
        assert state.allowed == ()
        assert await refusal(presenter, m.StartShare(id="revoked")) == "share_not_allowed"
    finally:
        for participant in (host, presenter, viewer):
            await participant.close()


async def test_a_waiting_client_can_neither_share_nor_be_allowed_to(live: LiveServer) -> None:
    dr = await ss.clinician(live)
    scope = await ss.room(live, dr)
    host = ss.participant(live, dr.principal, scope, dr.session, tracks=with_screen)
    waiting = ss.participant(live, await ss.invite(live, dr, scope, "Waiting"), scope, tracks=with_screen)
    try:
        await host.join()
        await waiting.join()
        await waiting.wait_message(m.Waiting)
        assert await refusal(waiting, m.StartShare(id="from-lobby")) == "not_in_room"
        assert await refusal(waiting, m.StopShare(id="from-lobby-stop")) == "not_in_room"
        allowed = m.AllowShare(participant_id=waiting.participant_id, id="allow-waiting")
        assert await refusal(host, allowed) == "not_in_room"
        assert await refusal(host, m.StartShare(id="no-screen-yet")) == "no_screen_track"  # no offer yet
        assert host.latest(m.ShareState) is None or host.latest(m.ShareState) == m.ShareState(
            sharer=None, allowed=()
        )
    finally:
        for participant in (host, waiting):
            await participant.close()
