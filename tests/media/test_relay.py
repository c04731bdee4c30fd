"""The relay with real aiortc peers on 127.0.0.1, all in one process.

Clients decode what they receive (ReceiveMode.DECODE), so "sees" means "decoded frames from".
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from itertools import permutations

import pytest

from tests.media.harness import Room, wait_until
from vIOP.client.media import KeyframeOnRequestVideoTrack, MediaPeer, ReceiveMode, silent_audio_track
from vIOP.errors import BadRequest, Conflict, NotFound
from vIOP.ids import ParticipantId, new_participant_id
from vIOP.media.peer import SlotState
from vIOP.media.sdp import summarize_sdp

FLOW_TIMEOUT = 8.0  # generous: two busy cores shared with other suites


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    room = Room()
    yield room
    await room.close()


def all_see_all(room: Room, pids: list[ParticipantId], frames: int = 3) -> bool:
    return all(room.sees(v, p, kind, frames) for v, p in permutations(pids, 2) for kind in ("audio", "video"))


def snapshot(room: Room, publisher: ParticipantId, kind: str) -> dict[ParticipantId, int]:
    return {v: peer.counter.frames(publisher, kind) for v, peer in room.peers.items() if v != publisher}


async def test_group_everyone_decodes_everyone_then_a_late_joiner_then_a_leaver(room: Room) -> None:
    clinician, _ = await room.join()
    clients = [(await room.join())[0] for _ in range(3)]
    group = [clinician, *clients]
    await wait_until(lambda: all_see_all(room, group), FLOW_TIMEOUT, "all-to-all media in a group of 4")

    late, _ = await room.join()
    group.append(late)
    await wait_until(lambda: all_see_all(room, group), FLOW_TIMEOUT, "the late joiner seen by and seeing all")

    leaver = clients[0]
    await room.leave(leaver)
    group.remove(leaver)
    before = {(v, p): room.peers[v].counter.frames(p, "video") for v, p in permutations(group, 2)}
    await wait_until(
        lambda: all(room.peers[v].counter.frames(p, "video") >= n + 5 for (v, p), n in before.items()),
        FLOW_TIMEOUT,
        "everyone else still flowing after one left",
    )
    # every leg negotiated VP8 + Opus only (RTX is VP8's retransmission format)
    for _, sdp in room.offers:
        for media in summarize_sdp(sdp).media:
            assert set(media.codecs) <= {"video/vp8", "video/rtx", "audio/opus"}, media


async def test_one_to_one_room(room: Room) -> None:
    a, _ = await room.join()
    b, _ = await room.join()
    await wait_until(lambda: all_see_all(room, [a, b], frames=10), FLOW_TIMEOUT, "both directions of a 1:1")
    assert room.relay.stats().legs == 4  # two kinds each way, nothing else


@pytest.mark.parametrize(("muted_kind", "other_kind"), [("audio", "video"), ("video", "audio")])
async def test_host_mute_stops_that_media_at_every_receiver_and_unmute_restores_it(
    room: Room, muted_kind: str, other_kind: str
) -> None:
    host, muted = (await room.join())[0], (await room.join())[0]
    other, _ = await room.join()
    pids = [host, muted, other]
    await wait_until(lambda: all_see_all(room, pids), FLOW_TIMEOUT, "media before the mute")

    if muted_kind == "audio":
        room.relay.set_audio_forwarding(muted, False)
    else:
        room.relay.set_forwarding(muted, "video", False)
    assert not room.relay.is_forwarding(muted, muted_kind)
    await asyncio.sleep(0.3)  # frames already on the wire may still land
    at_mute = snapshot(room, muted, muted_kind)
    other_at_mute = snapshot(room, muted, other_kind)
    await wait_until(
        lambda: all(n > other_at_mute[v] + 5 for v, n in snapshot(room, muted, other_kind).items()),
        FLOW_TIMEOUT,
        f"{other_kind} still flowing while {muted_kind} is muted",
    )
    assert snapshot(room, muted, muted_kind) == at_mute  # not one frame at any receiver
    assert all(room.sees(muted, p, muted_kind, 1) for p in (host, other))  # the muted one still receives

    room.relay.set_forwarding(muted, muted_kind, True)
    await wait_until(
        lambda: all(n > at_mute[v] + 5 for v, n in snapshot(room, muted, muted_kind).items()),
        FLOW_TIMEOUT,
        f"{muted_kind} back after unmute",
    )


async def test_removal_stops_all_their_media_within_one_second_and_closes_their_connection(
    room: Room,
) -> None:
    staying = [(await room.join())[0] for _ in range(2)]
    removed, removed_peer = await room.join()
    await wait_until(lambda: all_see_all(room, [*staying, removed]), FLOW_TIMEOUT, "media before removal")
    session = room.relay.session(removed)
    assert session is not None
    loop = asyncio.get_running_loop()

    clock = room.peers[staying[0]].counter.clock  # the clock the frame counters stamp with
    started, started_loop = clock(), loop.time()
    await room.relay.remove_participant(removed)
    call_took = loop.time() - started_loop

    def window_passed() -> bool:
        # The others' audio (50 frames/s) stamped past the window proves the window really elapsed.
        first, second = staying
        count = room.peers[first].counter.streams.get((second, "audio"))
        return count is not None and count.last_at is not None and count.last_at > started + 1.2

    await wait_until(window_passed, FLOW_TIMEOUT, "the others' audio after the removal window")

    assert call_took < 1.0
    assert session.pc.connectionState == "closed"
    cutoff = started + 1.0
    for viewer in staying:
        for kind in ("audio", "video"):
            last = room.peers[viewer].counter.streams[(removed, kind)].last_at
            assert last is not None and last < cutoff, f"{kind} from the removed participant after 1 s"
    for publisher in staying:
        for kind in ("audio", "video"):
            last = removed_peer.counter.streams[(publisher, kind)].last_at
            assert last is not None and last < cutoff, f"the removed participant still received {kind}"
    with pytest.raises(NotFound):
        await room.relay.remove_participant(removed)
    room.peers.pop(removed)
    await removed_peer.close()


async def test_publisher_that_only_sends_keyframes_on_request_reaches_a_late_subscriber_within_one_second(
    room: Room,
) -> None:
    track = KeyframeOnRequestVideoTrack(160, 120, fps=15)
    publisher, _ = await room.join(silent_audio_track(), track)
    await wait_until(lambda: room.relay.stats().frames_in > 20, FLOW_TIMEOUT, "the publisher streaming")
    assert track.keyframes_sent == 1  # only the very first frame so far: nobody asked

    loop = asyncio.get_running_loop()
    joined = loop.time()
    subscriber, _ = await room.join()
    session = room.relay.session(subscriber)
    assert session is not None
    await wait_until(
        lambda: session.pc.connectionState == "connected", FLOW_TIMEOUT, "the subscriber connected"
    )
    connected = loop.time()
    await wait_until(lambda: room.sees(subscriber, publisher, "video"), FLOW_TIMEOUT, "first decoded frame")
    decoded = loop.time()

    # Measured from the connection being up: renegotiation, the keyframe request upstream, the keyframe
    # itself and its decoding. ICE+DTLS setup before that is aiortc's and varies with machine load.
    assert decoded - connected < 1.0, (
        f"first decoded frame {decoded - connected:.2f}s after connecting ({decoded - joined:.2f}s after joining)"
    )
    assert track.keyframe_requests >= 1 and track.keyframes_sent >= 2
    assert track.keyframes_sent <= 1 + track.keyframe_requests  # every keyframe after the first was asked for
    await wait_until(
        lambda: room.sees(subscriber, publisher, "video", 10), FLOW_TIMEOUT, "frames keep decoding"
    )


def with_payload_types(sdp: str, mapping: dict[int, int]) -> str:
    """Renumber payload types the way a browser might have chosen them (Opus 111, VP8 100, RTX 101)."""

    def fix_m_line(match: re.Match[str]) -> str:
        return match.group(1) + " ".join(str(mapping.get(int(pt), int(pt))) for pt in match.group(2).split())

    sdp = re.sub(r"(?m)^(m=\S+ \S+ \S+ )([\d ]+)$", fix_m_line, sdp)
    sdp = re.sub(
        r"(?m)^a=(rtpmap|fmtp|rtcp-fb):(\d+)", lambda m: f"a={m[1]}:{mapping.get(int(m[2]), m[2])}", sdp
    )
    return re.sub(r"apt=(\d+)", lambda m: f"apt={mapping.get(int(m[1]), m[1])}", sdp)


async def test_server_offers_keep_the_payload_types_the_client_chose(room: Room) -> None:
    first, _ = await room.join()
    pid = new_participant_id()
    await room.relay.add_participant(pid)
    peer = MediaPeer(host_addresses=("127.0.0.1",), receive=ReceiveMode.DECODE)
    peer.publish(silent_audio_track(), KeyframeOnRequestVideoTrack(160, 120))
    room.peers[pid] = peer
    browserish = with_payload_types(await peer.create_offer(), {96: 111, 97: 100, 98: 101})
    await peer.accept_answer(await room.relay.handle_offer(pid, browserish))

    await wait_until(lambda: all_see_all(room, [first, pid]), FLOW_TIMEOUT, "media both ways")
    offers = [sdp for target, sdp in room.offers if target == pid]
    assert offers
    for media in summarize_sdp(offers[-1]).media:
        expected = {"audio": (111,), "video": (100, 101)}[media.kind]
        assert media.payload_types == expected, media  # no collision inside the BUNDLE


async def test_a_leaver_s_m_lines_are_recycled_for_the_next_joiner(room: Room) -> None:
    host, _ = await room.join()
    gone, _ = await room.join()
    await wait_until(lambda: all_see_all(room, [host, gone]), FLOW_TIMEOUT, "media before leaving")
    host_session = room.relay.session(host)
    assert host_session is not None
    await room.leave(gone)
    await wait_until(
        lambda: all(s.state is SlotState.FREE for s in host_session.slots), FLOW_TIMEOUT, "slots released"
    )
    newcomer, _ = await room.join()
    await wait_until(lambda: all_see_all(room, [host, newcomer]), FLOW_TIMEOUT, "newcomer on a recycled slot")
    assert len(host_session.slots) == 2  # audio + video, reused: the SDP does not grow with churn
    assert room.peers[host].counter.frames(gone, "video") > 0


async def test_a_new_client_offer_replaces_the_connection_and_peers_keep_seeing_them(room: Room) -> None:
    stay, _ = await room.join()
    mover, old_peer = await room.join()
    await wait_until(lambda: all_see_all(room, [stay, mover]), FLOW_TIMEOUT, "media before reconnect")
    old_session = room.relay.session(mover)
    await old_peer.close()

    new_peer = MediaPeer(host_addresses=("127.0.0.1",), receive=ReceiveMode.DECODE)
    from vIOP.client.media import SyntheticVideoTrack

    new_peer.publish(silent_audio_track(), SyntheticVideoTrack())
    room.peers[mover] = new_peer
    await new_peer.accept_answer(await room.relay.handle_offer(mover, await new_peer.create_offer()))
    seen_before = room.peers[stay].counter.frames(mover, "video")
    await wait_until(
        lambda: (
            room.peers[stay].counter.frames(mover, "video") > seen_before + 5
            and room.sees(mover, stay, "video")
        ),
        FLOW_TIMEOUT,
        "media again over the new connection",
    )
    assert old_session is not None and old_session.closed and room.relay.session(mover) is not old_session


async def test_bad_input_gets_typed_errors_and_changes_nothing(room: Room) -> None:
    pid = new_participant_id()
    with pytest.raises(NotFound):
        await room.relay.handle_offer(pid, "v=0")
    await room.relay.add_participant(pid)
    with pytest.raises(Conflict):
        await room.relay.add_participant(pid)
    with pytest.raises(Conflict):
        await room.relay.handle_answer(pid, "v=0")  # no connection yet
    with pytest.raises(Conflict):
        await room.relay.add_remote_candidate(pid, {"candidate": "", "sdpMid": "0"})
    peer = MediaPeer(host_addresses=("127.0.0.1",))
    peer.publish(silent_audio_track())
    good = await peer.create_offer()
    for bad in [
        "garbage",
        "v=0\r\nm=audio x y z\r\n",
        good.replace("a=group:BUNDLE", "a=group:NOPE"),
        re.sub(r"(?m)^a=rtpmap:\d+ opus/48000/2\r\n", "", good),
        good + good[good.index("m=audio") :],  # two audio sections
        "x" * (70 * 1024),
    ]:
        with pytest.raises(BadRequest):
            await room.relay.handle_offer(pid, bad)
        assert room.relay.session(pid) is None  # nothing changed
    with pytest.raises(BadRequest):
        room.relay.set_forwarding(pid, "screen", False)

    await peer.accept_answer(await room.relay.handle_offer(pid, good))
    with pytest.raises(Conflict):
        await room.relay.handle_answer(pid, good)  # no server offer is waiting
    for bad_candidate in [
        {"candidate": 5},
        {"candidate": "candidate:1 1 udp"},
        {"candidate": "x", "sdpMid": 3},
    ]:
        with pytest.raises(BadRequest):
            await room.relay.add_remote_candidate(pid, bad_candidate)
    await room.relay.add_remote_candidate(
        pid, {"candidate": "candidate:9 1 udp 2130706431 127.0.0.1 9 typ host", "sdpMid": "1"}
    )
    await room.relay.add_remote_candidate(pid, None)
    await peer.close()
