"""DirectSender: the relay's fast path writes RTP itself; aiortc still owns RTCP, NACK and keyframes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.media.harness import Room, wait_until
from vIOP.client.media import KeyframeOnRequestVideoTrack, silent_audio_track
from vIOP.ids import ParticipantId
from vIOP.media.peer import PeerSession, Slot

FLOW_TIMEOUT = 8.0


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    room = Room()
    yield room
    await room.close()


def video_slot(session: PeerSession) -> Slot:
    return next(s for s in session.slots if s.leg.kind == "video" and s.source is not None)


class DropEveryNth:
    """Stands in for aioice's UDP transport on one pair: loses every n-th RTP packet of one payload type."""

    def __init__(self, inner: Any, payload_type: int, n: int) -> None:
        self.inner, self.payload_type, self.n = inner, payload_type, n
        self.seen = self.dropped = 0

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > 12 and 128 <= data[0] < 192 and data[1] & 0x7F == self.payload_type:
            self.seen += 1
            if self.seen % self.n == 0:
                self.dropped += 1
                return
        self.inner.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_sender_reports_and_stats_see_what_the_direct_path_sent(room: Room) -> None:
    publisher, _ = await room.join()
    viewer, _ = await room.join()
    await wait_until(lambda: room.sees(viewer, publisher, "video", 10), FLOW_TIMEOUT, "video flowing")
    session = room.relay.session(viewer)
    assert session is not None
    slot = video_slot(session)
    assert slot.leg.direct is not None and slot.leg.direct.packets > 0
    stats = await slot.transceiver.sender.getStats()
    sent = [s for s in stats.values() if s.type == "outbound-rtp"]
    assert sent and sent[0].packetsSent >= slot.leg.direct.packets > 0  # RTCP sender reports carry these


async def test_lost_packets_are_repaired_from_the_relay_history_without_new_keyframes(room: Room) -> None:
    track = KeyframeOnRequestVideoTrack(320, 180, fps=15, bitrate=600_000)  # several packets per frame
    publisher, _ = await room.join(silent_audio_track(), track)
    viewer, viewer_peer = await room.join()
    await wait_until(lambda: room.sees(viewer, publisher, "video", 5), FLOW_TIMEOUT, "video flowing")
    session = room.relay.session(viewer)
    assert session is not None
    slot = video_slot(session)
    direct = slot.leg.direct
    assert direct is not None
    pair = session.pc.getTransceivers()[0].receiver.transport.transport._connection._nominated[1]
    lossy = DropEveryNth(pair.protocol.transport, payload_type=slot.transceiver._codecs[0].payloadType, n=15)
    pair.protocol.transport = lossy
    requests_before = track.keyframe_requests
    decoded_before = viewer_peer.counter.frames(publisher, "video")

    await wait_until(lambda: lossy.dropped >= 6, FLOW_TIMEOUT, "some video packets lost on the way")
    await wait_until(
        lambda: viewer_peer.counter.frames(publisher, "video") >= decoded_before + 30,
        FLOW_TIMEOUT,
        "decoding to continue through the losses",
    )
    receiver = next(t.receiver for t in viewer_peer.pc.getTransceivers() if t.mid == slot.transceiver.mid)
    sources = {s.source for s in receiver.getSynchronizationSources()}
    assert slot.transceiver.sender._rtx_ssrc in sources  # retransmissions arrived, as RTX
    assert track.keyframe_requests - requests_before <= 1  # repaired by NACK, not by new keyframes


async def test_the_queued_aiortc_sender_path_still_works() -> None:
    room = Room(direct_send=False)  # the fallback path: aiortc's own sender loop reads the legs
    try:
        await _both_ways(room)
    finally:
        await room.close()


async def _both_ways(room: Room) -> None:
    a, _ = await room.join()
    b, _ = await room.join()
    await wait_until(
        lambda: all(room.sees(v, p, k, 5) for v, p in ((a, b), (b, a)) for k in ("audio", "video")),
        FLOW_TIMEOUT,
        "media both ways through aiortc's sender loop",
    )
    session = room.relay.session(ParticipantId(a))
    assert session is not None and all(s.leg.direct is None for s in session.slots)
