"""In-process rooms for media tests: a real MediaRelay and real aiortc clients on 127.0.0.1.

The harness plays the signaling layer: it carries SDP between each client's MediaPeer and the relay,
asynchronously (as a socket would), and nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import MediaStreamTrack

from vIOP.client.media import FrameCounter, MediaPeer, ReceiveMode, SyntheticVideoTrack, silent_audio_track
from vIOP.ids import ParticipantId, new_participant_id
from vIOP.media.aiortc_internals import DatagramTap
from vIOP.media.budget import AudioOnlyReason
from vIOP.media.ice import IceConfig
from vIOP.media.relay import MediaRelay, RenegotiationOffer
from vIOP.media.speaker import SpeakerChange

LOOPBACK = ("127.0.0.1",)


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str = "condition") -> float:
    """Bounded poll; returns the seconds it took. Fails the test with ``what`` on timeout."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return loop.time() - start


@dataclass
class Room:
    direct_send: bool = True  # False: aiortc's own sender loop reads the legs
    relay: MediaRelay = field(init=False)
    peers: dict[ParticipantId, MediaPeer] = field(default_factory=dict)
    offers: list[tuple[ParticipantId, str]] = field(default_factory=list)  # every server offer, in order
    # every active-speaker change: (loop time, recipients, change)
    speaker_changes: list[tuple[float, tuple[ParticipantId, ...], SpeakerChange[ParticipantId]]] = field(
        default_factory=list
    )
    # every audio-only change the relay reported, in order (what the signaling layer would send)
    audio_only: list[tuple[ParticipantId, AudioOnlyReason | None]] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.relay = MediaRelay(
            IceConfig.loopback(),
            on_signal=self._on_signal,
            direct_send=self.direct_send,
            on_active_speaker=self._on_speaker,
            on_audio_only=lambda pid, reason: self.audio_only.append((pid, reason)),
        )

    def _on_speaker(
        self, recipients: tuple[ParticipantId, ...], change: SpeakerChange[ParticipantId]
    ) -> None:
        self.speaker_changes.append((asyncio.get_running_loop().time(), recipients, change))

    async def _on_signal(self, pid: ParticipantId, offer: RenegotiationOffer) -> None:
        self.offers.append((pid, offer.sdp))
        task = asyncio.get_running_loop().create_task(self._deliver(pid, offer.sdp))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, pid: ParticipantId, sdp: str) -> None:
        peer = self.peers.get(pid)
        if peer is None:
            return
        answer = await peer.accept_offer(sdp)
        await self.relay.handle_answer(pid, answer)

    async def join(
        self,
        *tracks: MediaStreamTrack,
        receive: ReceiveMode = ReceiveMode.DECODE,
        pid: ParticipantId | None = None,
        tap: DatagramTap | None = None,
    ) -> tuple[ParticipantId, MediaPeer]:
        pid = pid or new_participant_id()
        if not tracks:
            tracks = (silent_audio_track(), SyntheticVideoTrack())
        await self.relay.add_participant(pid)
        peer = MediaPeer(host_addresses=LOOPBACK, receive=receive, counter=FrameCounter(), tap=tap)
        peer.publish(*tracks)
        self.peers[pid] = peer
        answer = await self.relay.handle_offer(pid, await peer.create_offer())
        await peer.accept_answer(answer)
        return pid, peer

    async def leave(self, pid: ParticipantId) -> MediaPeer:
        await self.relay.remove_participant(pid)
        peer = self.peers.pop(pid)
        await peer.close()
        return peer

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.relay.close()
        for peer in self.peers.values():
            await peer.close()

    def sees(self, viewer: ParticipantId, publisher: ParticipantId, kind: str, frames: int = 1) -> bool:
        return self.peers[viewer].counter.frames(publisher, kind) >= frames
