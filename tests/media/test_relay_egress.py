"""The relay applies its egress policy to every remote candidate: real MediaRelay, real aiortc peers on
127.0.0.1. What the server's ICE agent holds is read from aiortc (``getRemoteCandidates``); that no packet
leaves for a refused address is measured with sockets in tests/security/test_relay_egress.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from tests.media.harness import LOOPBACK, wait_until
from vIOP.app import _ice_config as ice_config
from vIOP.client.media import MediaPeer, SyntheticVideoTrack, silent_audio_track
from vIOP.ids import ParticipantId, new_participant_id
from vIOP.media.egress import DropReason
from vIOP.media.ice import IceConfig
from vIOP.media.relay import MediaRelay, RenegotiationOffer
from vIOP.settings import load_settings

CONNECT_TIMEOUT = 10.0
PRODUCTION_ON_LOOPBACK = IceConfig(host_addresses=LOOPBACK)  # the production default policy: no loopback


def dropped(reason: DropReason) -> float:
    return (
        REGISTRY.get_sample_value("viop_ice_remote_candidates_dropped_total", {"reason": reason.value}) or 0.0
    )


def remote_candidates(relay: MediaRelay, pid: ParticipantId) -> list[tuple[str, int]]:
    session = relay.session(pid)
    assert session is not None
    transport = session.pc.getTransceivers()[0].receiver.transport.transport
    return [(c.ip, c.port) for c in transport.getRemoteCandidates()]


async def _ignore(pid: ParticipantId, offer: RenegotiationOffer) -> None:
    pass


async def offer_of(peer: MediaPeer) -> str:
    peer.publish(silent_audio_track(), SyntheticVideoTrack())
    return await peer.create_offer()


def without_candidates(sdp: str) -> str:
    """A trickling browser's offer: no candidates yet, no end-of-candidates."""
    lines = sdp.splitlines(keepends=True)
    return "".join(ln for ln in lines if not ln.startswith(("a=candidate:", "a=end-of-candidates")))


def with_candidates(sdp: str, lines: list[str]) -> str:
    """Every m-line carries ``lines`` (as a browser's complete description does)."""
    block = "".join(f"a={ln}\r\n" for ln in lines)
    return re.sub(r"(a=mid:[^\r\n]*\r\n)", lambda m: m.group(1) + block, without_candidates(sdp))


def cand(host: str, port: int, priority: int = 100) -> str:
    return f"candidate:{port} 1 udp {priority} {host} {port} typ host"


@pytest.fixture
async def production_relay() -> AsyncIterator[MediaRelay]:
    relay = MediaRelay(PRODUCTION_ON_LOOPBACK, on_signal=_ignore)
    yield relay
    await relay.close()


async def test_loopback_peer_connects_and_its_candidates_are_used_when_loopback_is_allowed() -> None:
    relay = MediaRelay(IceConfig.loopback(), on_signal=_ignore)
    peer = MediaPeer(host_addresses=LOOPBACK)
    pid = new_participant_id()
    try:
        await relay.add_participant(pid)
        offer = await offer_of(peer)
        own = [(c.split()[4], int(c.split()[5])) for c in re.findall(r"a=(candidate:[^\r\n]+)", offer)]
        await peer.accept_answer(await relay.handle_offer(pid, offer))
        session = relay.session(pid)
        assert session is not None
        await wait_until(lambda: session.pc.connectionState == "connected", CONNECT_TIMEOUT, "connected")
        assert set(own) <= set(remote_candidates(relay, pid))  # signalled, not learnt from its checks
    finally:
        await relay.close()
        await peer.close()


async def test_offer_candidates_are_filtered_on_every_m_line_and_capped(production_relay: MediaRelay) -> None:
    """aiortc takes the BUNDLE transport's candidates from the LAST m-line: all of them are filtered."""
    pid = new_participant_id()
    await production_relay.add_participant(pid)
    peer = MediaPeer(host_addresses=LOOPBACK)
    try:
        sdp = await offer_of(peer)
    finally:
        await peer.close()
    denied = [
        cand(h, 40000 + i) for i, h in enumerate(["10.1.2.3", "169.254.169.254", "127.0.0.2", "fd00::5"])
    ]
    allowed = [cand("11.0.0.1", 20000 + i) for i in range(300)]
    before = dropped(DropReason.OVER_CAP), dropped(DropReason.PRIVATE), dropped(DropReason.LINK_LOCAL)
    await production_relay.handle_offer(pid, with_candidates(sdp, denied + allowed))
    held = remote_candidates(production_relay, pid)
    assert len(held) == 20
    assert all(ip == "11.0.0.1" for ip, _ in held)
    session = production_relay.session(pid)
    assert session is not None and session.remote_candidates.admitted == 20
    after = dropped(DropReason.OVER_CAP), dropped(DropReason.PRIVATE), dropped(DropReason.LINK_LOCAL)
    assert after[0] - before[0] == 2 * 280  # counted once per line, on both m-lines
    assert after[1] - before[1] == 2 * 2  # 10.1.2.3 and fd00::5
    assert after[2] - before[2] == 2
    # trickled: the cap is per connection, not per message
    await production_relay.add_remote_candidate(pid, {"candidate": cand("11.0.0.2", 30000), "sdpMid": "0"})
    assert len(remote_candidates(production_relay, pid)) == 20


async def test_trickled_denied_and_mdns_candidates_are_dropped_without_an_error(
    production_relay: MediaRelay,
) -> None:
    pid = new_participant_id()
    await production_relay.add_participant(pid)
    peer = MediaPeer(host_addresses=LOOPBACK)
    try:
        await production_relay.handle_offer(pid, without_candidates(await offer_of(peer)))
    finally:
        await peer.close()
    before = {r: dropped(r) for r in DropReason}
    trickled = {
        "9b36f1d2-55aa-4c3e-8f7e-0a1b2c3d4e5f.local": DropReason.MDNS,
        "printer.example.org": DropReason.HOSTNAME,
        "127.0.0.2": DropReason.LOOPBACK,
        "127.0.0.1": DropReason.OWN_ADDRESS,  # the host address this relay advertises
        "192.168.1.20": DropReason.PRIVATE,
        "100.64.0.9": DropReason.NOT_GLOBAL,
        "169.254.169.254": DropReason.LINK_LOCAL,
        "224.0.0.251": DropReason.MULTICAST,
    }
    for i, host in enumerate(trickled):
        await production_relay.add_remote_candidate(pid, {"candidate": cand(host, 50000 + i), "sdpMid": "0"})
    assert remote_candidates(production_relay, pid) == []
    for reason in set(trickled.values()):
        assert dropped(reason) - before[reason] == list(trickled.values()).count(reason)
    await production_relay.add_remote_candidate(pid, {"candidate": cand("11.0.0.1", 50100), "sdpMid": "0"})
    assert remote_candidates(production_relay, pid) == [("11.0.0.1", 50100)]
    await production_relay.add_remote_candidate(pid, {"candidate": "", "sdpMid": "0"})  # end of candidates


async def test_a_client_whose_candidates_are_all_dropped_still_connects(production_relay: MediaRelay) -> None:
    """The relay is the reachable end: the client's own checks reach it and it learns the client's address
    from them (peer-reflexive), so dropping a browser's mDNS or private candidates costs it nothing."""
    pid = new_participant_id()
    await production_relay.add_participant(pid)
    peer = MediaPeer(host_addresses=LOOPBACK)
    try:
        answer = await production_relay.handle_offer(pid, await offer_of(peer))
        await peer.accept_answer(answer)
        session = production_relay.session(pid)
        assert session is not None
        await wait_until(lambda: session.pc.connectionState == "connected", CONNECT_TIMEOUT, "connected")
        assert session.remote_candidates.admitted == 0
    finally:
        await peer.close()


def test_the_app_builds_the_relay_policy_from_settings() -> None:
    """Production refuses loopback unless told otherwise; the allow-list, the cap and the server's configured
    addresses reach the policy the relay uses."""
    base = load_settings({}).with_overrides(ice_host_addresses=("198.51.100.7",))
    production = ice_config(base.with_overrides(env="production")).remote_policy()
    assert production.refusal("127.0.0.2") is DropReason.LOOPBACK
    assert production.refusal("198.51.100.7") is DropReason.OWN_ADDRESS
    development = ice_config(base).remote_policy()
    assert development.refusal("127.0.0.2") is None
    configured = ice_config(
        base.with_overrides(
            env="production",
            ice_remote_allow=("10.20.0.0/16",),
            ice_max_remote_candidates=7,
            public_url="https://203.0.113.9",
        )
    ).remote_policy()
    assert configured.refusal("10.20.1.2") is None
    assert configured.refusal("10.21.1.2") is DropReason.PRIVATE
    assert configured.refusal("203.0.113.9") is DropReason.OWN_ADDRESS
    assert configured.max_candidates == 7
