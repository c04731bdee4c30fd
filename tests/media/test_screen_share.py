"""Screen share in the relay (issue 15), with real aiortc peers on 127.0.0.1.

A publisher's second video section is its screen share: a second video source, forwarded pass-through with
its own legs and keyframe requests, offered to the room only while ``set_sharing`` is on. Receivers count
frames by ``a=msid`` stream id: the share arrives as ``<publisher>.screen``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.media.harness import LOOPBACK, Room, wait_until
from tests.media.test_simulcast import HIGH, LOW
from vIOP.client.media import (
    FrameCounter,
    KeyframeOnRequestVideoTrack,
    MediaPeer,
    SyntheticVideoTrack,
    silent_audio_track,
)
from vIOP.client.simulcast import SimulcastLayer
from vIOP.errors import BadRequest
from vIOP.ids import ParticipantId, new_participant_id
from vIOP.media.peer import SCREEN
from vIOP.media.sdp import summarize_sdp
from vIOP.rooms.share import SCREEN_STREAM_SUFFIX, NoScreenTrack

FLOW_TIMEOUT = 20.0  # generous: two busy cores shared with other suites


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    room = Room()
    yield room
    await room.close()


def screen_of(pid: ParticipantId) -> str:
    return pid + SCREEN_STREAM_SUFFIX


def screen_frames(room: Room, viewer: ParticipantId, sharer: ParticipantId) -> int:
    return room.peers[viewer].counter.frames(screen_of(sharer), "video")


def last_offer_sends_screen(room: Room, viewer: ParticipantId, sharer: ParticipantId) -> bool | None:
    """Whether the last server offer to ``viewer`` sends ``sharer``'s screen (None: no offer yet)."""
    offers = [sdp for pid, sdp in room.offers if pid == viewer]
    if not offers:
        return None
    return any(
        m.stream_id == screen_of(sharer) and m.direction in ("sendonly", "sendrecv")
        for m in summarize_sdp(offers[-1]).media
    )


async def join_with_screen(room: Room) -> ParticipantId:
    """A host with microphone, camera and a screen track (its third section)."""
    return (await room.join(silent_audio_track(), SyntheticVideoTrack(), SyntheticVideoTrack(320, 180)))[0]


async def test_a_share_reaches_two_receivers_beside_the_camera_and_stops_for_both_within_a_second(
    room: Room,
) -> None:
    host = await join_with_screen(room)
    viewers = [(await room.join())[0] for _ in range(2)]
    await wait_until(
        lambda: all(room.sees(v, host, "video", 5) for v in viewers), FLOW_TIMEOUT, "the host's camera"
    )
    assert all(screen_frames(room, v, host) == 0 for v in viewers)  # published, not shared: not sent
    screen = room.relay.source(host, SCREEN)
    assert screen is not None and screen.legs == ()

    room.relay.set_sharing(host, True)
    assert room.relay.is_sharing(host)
    await wait_until(
        lambda: all(screen_frames(room, v, host) >= 10 for v in viewers), FLOW_TIMEOUT, "the share decoded"
    )
    camera = {v: room.peers[v].counter.frames(host, "video") for v in viewers}
    shared = {v: screen_frames(room, v, host) for v in viewers}
    await wait_until(
        lambda: all(
            room.peers[v].counter.frames(host, "video") >= camera[v] + 10
            and screen_frames(room, v, host) >= shared[v] + 10
            for v in viewers
        ),
        FLOW_TIMEOUT,
        "camera and share both still decoded",
    )
    assert len(screen.legs) == 2  # one leg per receiver, its own source
    assert screen.keyframe_requests_sent >= 1  # asked of the publisher for the new receivers

    loop = asyncio.get_running_loop()
    stopped_at = loop.time()
    room.relay.set_sharing(host, False)
    assert screen.legs == ()  # nobody is sent another frame of it
    took = await wait_until(
        lambda: all(last_offer_sends_screen(room, v, host) is False for v in viewers),
        FLOW_TIMEOUT,
        "the share's m-line inactive for every receiver",
    )
    assert loop.time() - stopped_at <= 1.0, f"share stopped for all after {took:.2f} s"
    ended = {v: screen_frames(room, v, host) for v in viewers}
    camera = {v: room.peers[v].counter.frames(host, "video") for v in viewers}
    await wait_until(
        lambda: all(room.peers[v].counter.frames(host, "video") >= camera[v] + 10 for v in viewers),
        FLOW_TIMEOUT,
        "the camera goes on",
    )
    assert {v: screen_frames(room, v, host) for v in viewers} == ended


async def test_a_receiver_joining_during_a_share_gets_it_and_one_stopping_does_not_get_it(room: Room) -> None:
    host = await join_with_screen(room)
    room.relay.set_sharing(host, True)
    late, _ = await room.join()
    await wait_until(
        lambda: screen_frames(room, late, host) >= 5, FLOW_TIMEOUT, "the share for a late joiner"
    )
    room.relay.set_sharing(host, False)
    later, _ = await room.join()
    await wait_until(lambda: room.sees(later, host, "video", 10), FLOW_TIMEOUT, "camera for a later joiner")
    assert screen_frames(room, later, host) == 0


async def test_sharing_needs_a_screen_section_and_a_screen_section_needs_ssrcs(room: Room) -> None:
    camera_only = (await room.join())[0]
    with pytest.raises(NoScreenTrack):
        room.relay.set_sharing(camera_only, True)
    assert not room.relay.is_sharing(camera_only)

    pid = new_participant_id()
    await room.relay.add_participant(pid)
    peer = MediaPeer(host_addresses=LOOPBACK, counter=FrameCounter())
    try:
        peer.publish(silent_audio_track(), SyntheticVideoTrack(), SyntheticVideoTrack())
        offer = await peer.create_offer()
        without_ssrcs = "\r\n".join(line for line in offer.split("\r\n") if not line.startswith("a=ssrc"))
        with pytest.raises(BadRequest, match="SSRC"):
            await room.relay.handle_offer(pid, without_ssrcs)
        three_videos = offer + offer[offer.index("m=video") :]
        with pytest.raises(BadRequest):
            await room.relay.handle_offer(pid, three_videos)
        assert room.relay.session(pid) is None  # nothing changed
    finally:
        await peer.close()


async def test_a_simulcast_camera_and_a_share_on_one_connection_both_reach_receivers(room: Room) -> None:
    """The share is routed by its SSRCs; the camera's RID layers (no SSRCs in the offer) by payload type,
    which a second video receiver on the same connection would otherwise make ambiguous."""
    publisher = MediaPeer(host_addresses=LOOPBACK)
    publisher.pc.addTransceiver(silent_audio_track(), direction="sendonly")
    publisher.publish_simulcast(
        (
            SimulcastLayer("h", KeyframeOnRequestVideoTrack(*HIGH, fps=15, bitrate=600_000)),
            SimulcastLayer("l", KeyframeOnRequestVideoTrack(*LOW, fps=15, bitrate=150_000)),
        )
    )
    publisher.publish(SyntheticVideoTrack(320, 180))
    try:
        pid = new_participant_id()
        await room.relay.add_participant(pid)
        answer = await room.relay.handle_offer(pid, await publisher.create_offer())
        await publisher.accept_answer(answer)
        room.relay.set_sharing(pid, True)
        viewer, _ = await room.join(silent_audio_track())
        await wait_until(
            lambda: room.sees(viewer, pid, "video", 10) and screen_frames(room, viewer, pid) >= 10,
            FLOW_TIMEOUT,
            "camera (simulcast) and share decoded",
        )
    finally:
        await publisher.close()
