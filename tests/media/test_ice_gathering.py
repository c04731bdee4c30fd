"""ICE gathering: advertised host addresses only inside the block, and never an implicit STUN server."""

from __future__ import annotations

from aiortc import RTCPeerConnection

from tests.media.harness import LOOPBACK
from vIOP.media.ice_gathering import advertising, peer_configuration


async def test_advertising_controls_host_candidates_only_inside_the_block() -> None:
    async def candidates(hosts: tuple[str, ...]) -> list[str]:
        pc = RTCPeerConnection(peer_configuration([]))
        pc.addTransceiver("audio")
        try:
            with advertising(hosts):
                await pc.setLocalDescription(await pc.createOffer())
            sdp = pc.localDescription.sdp
            return [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]
        finally:
            await pc.close()

    assert set(await candidates(LOOPBACK)) == {"127.0.0.1"}
    assert "127.0.0.1" not in await candidates(())  # aioice's default skips loopback
    assert not any(c.startswith("stun") for c in await candidates(LOOPBACK))


async def test_no_stun_server_unless_configured() -> None:
    config = peer_configuration([])
    assert config.iceServers == []
    pc = RTCPeerConnection(config)
    transceiver = pc.addTransceiver("audio")
    connection = transceiver.receiver.transport.transport.iceGatherer._connection
    assert connection.stun_server is None and connection.turn_server is None
    await pc.close()
