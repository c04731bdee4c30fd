"""The RFC 6464 audio level through the relay: negotiated on both legs, read from each publisher's packets,
forwarded to subscribers, and turned into the room's dominant speaker (real aiortc peers on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.media.harness import Room, wait_until
from vIOP.client.media import MediaPeer, ToneAudioTrack
from vIOP.ids import ParticipantId
from vIOP.media.aiortc_internals import negotiated, observe_rtp
from vIOP.media.direct_sender import AUDIO_LEVEL
from vIOP.media.rtp import LEVEL_MASK, read_audio_level
from vIOP.media.speaker import SpeakerChange

FLOW_TIMEOUT = 10.0
AUDIO_LEVEL_LINE = f" {AUDIO_LEVEL}"


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    room = Room()
    yield room
    await room.close()


def audio_sections(sdp: str) -> list[str]:
    return [s for s in sdp.split("\nm=")[1:] if s.startswith("audio")]


def record_levels(peer: MediaPeer) -> dict[str, list[int]]:
    """Every RFC 6464 level the subscriber receives, per publisher (read off its own transport)."""
    heard: dict[str, list[int]] = {}
    for transceiver in peer.pc.getTransceivers():
        if transceiver.kind != "audio" or transceiver.direction != "recvonly":
            continue
        codecs, extensions = negotiated(transceiver)
        level_id = next(e.id for e in extensions if e.uri == AUDIO_LEVEL)
        publisher = peer.publisher_of(transceiver.mid)

        def observe(packet: bytes, level_id: int = level_id, publisher: str = publisher) -> None:
            found = read_audio_level(packet, level_id)
            if found is not None:
                heard.setdefault(publisher, []).append(found[1] & LEVEL_MASK)

        assert codecs[0].payloadType is not None
        observe_rtp(transceiver.receiver, codecs[0].payloadType, observe)
    return heard


async def test_the_level_is_negotiated_on_both_legs_and_forwarded_to_subscribers(room: Room) -> None:
    tone = ToneAudioTrack()
    speaker, _ = await room.join(tone)
    listener, listener_peer = await room.join(ToneAudioTrack())
    await wait_until(lambda: room.sees(listener, speaker, "audio", 10), FLOW_TIMEOUT, "audio flowing")
    # Publisher leg: the relay's answer accepts the extension; subscriber leg: the server's offer carries it.
    answer = room.relay.session(speaker).pc.localDescription.sdp  # type: ignore[union-attr]
    assert all(AUDIO_LEVEL_LINE in section for section in audio_sections(answer))
    offers = [sdp for pid, sdp in room.offers if pid == listener]
    assert offers and all(AUDIO_LEVEL_LINE in section for section in audio_sections(offers[-1]))

    heard = record_levels(listener_peer)
    await wait_until(lambda: len(heard.get(speaker, [])) >= 10, FLOW_TIMEOUT, "silent levels forwarded")
    assert set(heard[speaker]) == {127}  # aiortc's silence is digital silence
    tone.speaking = True
    await wait_until(
        lambda: heard[speaker].count(15) >= 10, FLOW_TIMEOUT, "the tone's level (-15 dBov) forwarded"
    )


async def test_the_relay_names_each_speaker_and_a_host_mute_takes_the_floor_away(room: Room) -> None:
    tracks = [ToneAudioTrack() for _ in range(3)]
    pids: list[ParticipantId] = [(await room.join(track))[0] for track in tracks]
    for viewer in pids:
        for publisher in pids:
            if viewer != publisher:
                await wait_until(
                    lambda v=viewer, p=publisher: room.sees(v, p, "audio", 10), FLOW_TIMEOUT, "audio flowing"
                )
    for turn in (1, 0, 2):
        for i, track in enumerate(tracks):
            track.speaking = i == turn
        before = len(room.speaker_changes)
        await wait_until(
            lambda before=before: len(room.speaker_changes) > before,
            FLOW_TIMEOUT,
            f"participant {turn} named",
        )
        _, recipients, change = room.speaker_changes[-1]
        assert change.speaker == pids[turn] and change.recent[0] == pids[turn]
        assert sorted(recipients) == sorted(pids)  # everyone with media in the room hears it
    room.relay.set_audio_forwarding(pids[2], False)  # nobody hears them: they cannot hold the floor
    _, _, change = room.speaker_changes[-1]
    assert change == SpeakerChange(None, (pids[0], pids[1]))
    assert room.relay.active_speaker(None) == change
