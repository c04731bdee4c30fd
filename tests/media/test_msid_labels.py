"""What the ``a=msid`` lines of a server offer say (docs/MEDIA.md, "Which m-line is whose"): a client written
from the docs tells its own m-lines from the ones carrying other participants by these rules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.media.harness import Room, wait_until

FLOW_TIMEOUT = 20.0


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    r = Room()
    yield r
    await r.close()


_DIRECTIONS = ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")


def _sections(sdp: str) -> list[tuple[str, str, str]]:
    """(direction, msid stream id, msid track id) of each m-line, in order."""
    out = []
    for section in sdp.split("\r\nm=")[1:]:
        lines = section.split("\r\n")
        direction = next(line for line in lines if line in _DIRECTIONS).removeprefix("a=")
        msid = next(line for line in lines if line.startswith("a=msid:")).removeprefix("a=msid:")
        stream_id, track_id = msid.split()
        out.append((direction, stream_id, track_id))
    return out


async def test_own_m_lines_carry_the_connections_stream_id_and_others_their_participant_id(
    room: Room,
) -> None:
    a, peer_a = await room.join()
    answer = _sections(peer_a.pc.remoteDescription.sdp)  # the server's answer to a's offer
    b, _ = await room.join()
    await wait_until(lambda: any(pid == a for pid, _ in room.offers), FLOW_TIMEOUT, "a server offer to a")
    offer = next(sdp for pid, sdp in room.offers if pid == a)
    own_stream_ids = {stream_id for _, stream_id, _ in _sections(peer_a.pc.localDescription.sdp)}
    sections = _sections(offer)
    # a's own audio and video: recvonly, one stream id for both, neither a participant id nor a's own msid.
    (own_audio, own_video), others = sections[:2], sections[2:]
    assert own_audio[0] == own_video[0] == "recvonly"
    assert own_audio[1] == own_video[1]
    assert not own_audio[1].startswith("pt_")
    assert [(d, stream_id) for d, stream_id, _ in answer] == [("recvonly", own_audio[1])] * 2
    assert own_audio[1] not in own_stream_ids
    # b's audio and video: sendonly, stream id = b's participant id, track ids b-1 and b-2.
    assert others == [("sendonly", b, f"{b}-1"), ("sendonly", b, f"{b}-2")]

    sent = len(room.offers)
    await room.leave(b)
    await wait_until(lambda: len(room.offers) > sent, FLOW_TIMEOUT, "the offer after b left")
    pid, after = room.offers[-1]
    assert pid == a
    # b's m-lines go inactive and keep b's label until reused: a stale name, not a present participant.
    assert [(d, s) for d, s, _ in _sections(after)[2:]] == [("inactive", b), ("inactive", b)]
