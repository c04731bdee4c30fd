"""The impairment harness (``bench/scenarios/impairment.py``): loss, cap and delay do what they say."""

from __future__ import annotations

import asyncio
import struct

import pytest
from aiortc import RTCPeerConnection

from bench.scenarios.impairment import ImpairedLink, Impairment, Shape, ShapedPath, is_media, rtp_id
from tests.media.harness import LOOPBACK, wait_until
from vIOP.client.media import KeyframeOnRequestVideoTrack
from vIOP.media.aiortc_internals import tap_datagrams
from vIOP.media.ice_gathering import advertising, peer_configuration


def rtp(sequence: int, ssrc: int = 0x1234, size: int = 1000) -> bytes:
    header = struct.pack("!BBHII", 0x80, 96, sequence & 0xFFFF, 0, ssrc)
    return header + bytes(size - len(header))


def test_loss_is_the_asked_fraction_and_repeats_with_the_seed() -> None:
    def dropped(seed: int) -> list[tuple[int, int]]:
        path = ShapedPath(Shape(loss=0.03), seed)
        for n in range(20_000):
            assert (path.admit(1000, n * 0.001, (1, n)) is None) == ((1, n) in path.stats.dropped_rtp)
        assert path.stats.lost == len(path.stats.dropped_rtp)
        assert path.stats.delivered == 20_000 - path.stats.lost
        return path.stats.dropped_rtp

    first = dropped(7)
    assert 0.025 * 20_000 <= len(first) <= 0.035 * 20_000
    assert dropped(7) == first  # a fixed seed drops the same packets
    assert dropped(8) != first
    link = ImpairedLink(Impairment(down=Shape(loss=0.5), up=Shape(loss=0.5)), seed=3)
    down = [link.down.admit(100, 0.0) is None for _ in range(64)]
    up = [link.up.admit(100, 0.0) is None for _ in range(64)]
    assert down != up  # each direction has its own generator


def test_the_cap_delivers_at_most_its_rate_and_drops_what_waits_too_long() -> None:
    cap = Shape(rate_bps=250_000, burst_bytes=6_000, queue_seconds=0.2)
    path = ShapedPath(cap, seed=0)
    departures = []
    for n in range(1_250):  # 1000-byte packets at 1 Mbit/s for 10 s: four times the cap
        now = n * 0.008
        leaves = path.admit(1000, now)
        if leaves is not None:
            assert 0 <= leaves - now <= 0.2 + 1e-9  # never queued beyond queue_seconds
            departures.append(leaves)
    assert departures == sorted(departures)  # FIFO
    per_second = path.stats.bytes_per_second()
    assert len(per_second) == 10  # the queue drains 0.2 s after the last offer
    assert max(per_second) <= 250_000 / 8 + 6_000
    assert min(per_second[1:]) >= 0.95 * 250_000 / 8  # and it is a cap, not a block
    assert path.stats.overflowed > 0.7 * 1_250
    assert path.stats.delivered + path.stats.overflowed == 1_250

    under = ShapedPath(cap, seed=0)
    assert all(under.admit(1000, n * 0.05) == n * 0.05 for n in range(200))  # 160 kbit/s: untouched


def test_delay_is_added_to_every_datagram_in_order() -> None:
    path = ShapedPath(Shape(delay=0.08), seed=0)
    assert [path.admit(200, t) for t in (1.0, 1.5, 1.5)] == [1.08, 1.58, 1.58]
    with pytest.raises(ValueError):
        Shape(loss=1.0)
    with pytest.raises(ValueError):
        Shape(rate_bps=0)


def test_only_srtp_and_srtcp_are_impaired() -> None:
    stun = b"\x00\x01" + bytes(30)
    dtls = b"\x16\xfe\xfd" + bytes(30)
    assert not is_media(stun) and not is_media(dtls) and is_media(rtp(1))
    assert rtp_id(rtp(513, ssrc=99)) == (99, 513)
    assert rtp_id(b"\x80\xc9" + bytes(30)) is None  # RTCP receiver report


async def test_the_link_delivers_after_the_delay_and_passes_set_up_traffic_at_once() -> None:
    loop = asyncio.get_running_loop()
    link = ImpairedLink(Impairment(down=Shape(delay=0.05, loss=0.9)), seed=1)
    arrived: list[tuple[bytes, float]] = []

    def deliver(data: bytes) -> None:
        arrived.append((data, loop.time()))

    sent_at = loop.time()
    link.incoming(b"\x00\x01" + bytes(30), deliver)  # STUN: no loss, no delay
    assert len(arrived) == 1
    for n in range(40):
        link.incoming(rtp(n), deliver)
    kept = 40 - link.down.stats.lost
    assert 0 < kept < 40
    await wait_until(lambda: len(arrived) == 1 + kept, 2, "the delayed datagrams")
    assert all(at - sent_at >= 0.05 for _data, at in arrived[1:])
    assert [rtp_id(d) for d, _at in arrived[1:]] == [
        (0x1234, n) for n in range(40) if (0x1234, n) not in link.down.stats.dropped_rtp
    ]


async def test_a_tapped_peer_connection_loses_media_on_the_wire() -> None:
    """Real aiortc peers: the tap sits in the subscriber's UDP path, ICE and DTLS still connect."""
    publisher = RTCPeerConnection(peer_configuration([]))
    subscriber = RTCPeerConnection(peer_configuration([]))
    link = ImpairedLink(Impairment(down=Shape(loss=0.2), up=Shape(rate_bps=100_000)), seed=5)
    publisher.addTransceiver(KeyframeOnRequestVideoTrack(160, 120, fps=20), direction="sendonly")
    try:
        with advertising(LOOPBACK):
            await publisher.setLocalDescription(await publisher.createOffer())
        await subscriber.setRemoteDescription(publisher.localDescription)
        with advertising(LOOPBACK):
            await subscriber.setLocalDescription(await subscriber.createAnswer())
        assert tap_datagrams(subscriber, link) == 1
        assert tap_datagrams(subscriber, link) == 0  # idempotent
        await publisher.setRemoteDescription(subscriber.localDescription)
        await wait_until(lambda: link.down.stats.lost >= 5, 10, "media lost on the subscriber's link")
        assert link.down.stats.delivered > link.down.stats.lost
        assert link.up.stats.delivered > 0  # its RTCP (receiver reports, NACKs) goes through the up path
    finally:
        await publisher.close()
        await subscriber.close()
        link.close()
