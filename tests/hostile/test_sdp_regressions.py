"""Offers the live fuzz (test_signal_fuzz_live.py) found answered with ``internal`` instead of a typed
refusal. Each is now refused with ``BadRequest`` and leaves the participant's media usable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.hostile.frames import real_offer_sdp
from vIOP.errors import BadRequest
from vIOP.ids import ParticipantId
from vIOP.media.ice import IceConfig
from vIOP.media.relay import MediaRelay, RenegotiationOffer

PID = ParticipantId("pt_fuzzfinding0001")


@pytest.fixture
async def relay() -> AsyncIterator[MediaRelay]:
    async def on_signal(pid: ParticipantId, offer: RenegotiationOffer) -> None:
        pass

    relay = MediaRelay(IceConfig.loopback(), on_signal=on_signal)
    await relay.add_participant(PID)
    yield relay
    await relay.close()


def section_without_direction(sdp: str) -> str:
    """The video section's ``a=sendonly`` mangled: aiortc parses it, then its createAnswer failed."""
    head, video = sdp.split("m=video", 1)
    return head + "m=video" + video.replace("a=sendonly\r\n", "a=sendonly\u00e9\r\n", 1)


def unwritable_address(sdp: str) -> str:
    """``a=rtcp`` with an address aiortc parses but cannot write back: the offer was accepted, and the
    next read of ``pc.remoteDescription`` (any later candidate) failed with ValueError."""
    return sdp.replace("a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0\u00e9", 1)


@pytest.mark.parametrize("mangle", [section_without_direction, unwritable_address])
async def test_mangled_offer_is_refused_and_media_still_works(relay: MediaRelay, mangle) -> None:
    offer = await real_offer_sdp()
    mangled = mangle(offer)
    assert mangled != offer
    with pytest.raises(BadRequest):
        await relay.handle_offer(PID, mangled)
    assert relay.session(PID) is None  # nothing changed
    answer = await relay.handle_offer(PID, offer)
    assert answer.startswith("v=0")
    line = next(ln for ln in offer.split("\r\n") if ln.startswith("a=candidate:"))
    await relay.add_remote_candidate(PID, {"candidate": line[2:], "sdpMid": "0"})
    await relay.add_remote_candidate(PID, {"candidate": "", "sdpMid": "0"})  # end of candidates


async def test_after_an_accepted_offer_a_mangled_one_leaves_the_working_connection(relay: MediaRelay) -> None:
    offer = await real_offer_sdp()
    await relay.handle_offer(PID, offer)
    working = relay.session(PID)
    for mangle in (section_without_direction, unwritable_address):
        with pytest.raises(BadRequest):
            await relay.handle_offer(PID, mangle(await real_offer_sdp()))
        assert relay.session(PID) is working
    await relay.add_remote_candidate(PID, {"candidate": "", "sdpMid": "0"})


def _with_port(candidate_line: str, port: str) -> str:
    fields = candidate_line.split()
    fields[5] = port
    return " ".join(fields)


@pytest.mark.parametrize("port", ["65536", "236981128", "0", "-1"])
async def test_candidate_with_an_impossible_port_is_refused(relay: MediaRelay, port: str) -> None:
    """Found by the live fuzz (seed 236981128): a port above 65535 reached aioice's ``sendto``, which raised
    OverflowError inside asyncio's transport ("Fatal write error on datagram transport") and killed the
    connection's ICE. Now refused before anything changes, in an offer or as a trickled candidate."""
    offer = await real_offer_sdp()
    line = next(ln for ln in offer.split("\r\n") if ln.startswith("a=candidate:"))
    with pytest.raises(BadRequest):
        await relay.handle_offer(PID, offer.replace(line, _with_port(line, port), 1))
    assert relay.session(PID) is None
    await relay.handle_offer(PID, offer)
    with pytest.raises(BadRequest):
        await relay.add_remote_candidate(PID, {"candidate": _with_port(line[2:], port), "sdpMid": "0"})
    await relay.add_remote_candidate(PID, {"candidate": line[2:], "sdpMid": "0"})  # a good one still works
