"""Benchmark: one receiver capped at 250 kbit/s in a five-person group (issue 13, "Done when", first item).

    .venv/bin/python bench/capped_receiver.py [--cap 250000] [--settle 8] [--seconds 20]

Four publishers replay pre-encoded 640x360 VP8 at 15 fps (~350 kbit/s) and Opus at 16 kbit/s; a fifth
participant publishes audio and receives everything through a token-bucket cap with tail drop in its own UDP
path (``bench.scenarios.impairment``). After ``--settle`` seconds it reports, over ``--seconds``: what the
relay offered the capped receiver (bytes reaching its link, before the cap), the audio it missed compared
with a clean receiver, the video frame rates of both, the keyframe requests the relay sent each publisher,
and the audio-only changes the relay reported. Everything runs in this process on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.scenarios.impairment import ImpairedLink, Impairment, Shape
from vIOP.client.media import (
    FrameCounter,
    MediaPeer,
    PreEncodedTrack,
    ReceiveMode,
    encode_opus_clip,
    encode_video_clip,
)
from vIOP.ids import ParticipantId, new_participant_id
from vIOP.media.budget import AudioOnlyReason
from vIOP.media.ice import IceConfig
from vIOP.media.relay import MediaRelay, RenegotiationOffer


async def run(cap: int, settle: float, seconds: float) -> None:
    video = encode_video_clip(640, 360, 15, 2.0, bitrate=500_000)
    audio = encode_opus_clip(1.0, bitrate=16_000)
    peers: dict[ParticipantId, MediaPeer] = {}
    changes: list[tuple[float, AudioOnlyReason | None]] = []
    tasks: set[asyncio.Task[None]] = set()
    started = time.monotonic()

    async def deliver(pid: ParticipantId, sdp: str) -> None:
        await relay.handle_answer(pid, await peers[pid].accept_offer(sdp))

    async def on_signal(pid: ParticipantId, offer: RenegotiationOffer) -> None:
        task = asyncio.get_running_loop().create_task(deliver(pid, offer.sdp))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    relay = MediaRelay(
        IceConfig.loopback(),
        on_signal=on_signal,
        on_audio_only=lambda pid, reason: changes.append((time.monotonic() - started, reason)),
    )

    async def join(
        *tracks: PreEncodedTrack, mode: ReceiveMode, link: ImpairedLink | None = None
    ) -> ParticipantId:
        pid = new_participant_id()
        await relay.add_participant(pid)
        peer = peers[pid] = MediaPeer(
            host_addresses=("127.0.0.1",), receive=mode, counter=FrameCounter(), tap=link
        )
        peer.publish(*tracks)
        await peer.accept_answer(await relay.handle_offer(pid, await peer.create_offer()))
        return pid

    publishers = [
        await join(PreEncodedTrack(audio), PreEncodedTrack(video), mode=ReceiveMode.PACKETS) for _ in range(4)
    ]
    link = ImpairedLink(Impairment(down=Shape(rate_bps=cap)), seed=1)
    capped = await join(PreEncodedTrack(audio), mode=ReceiveMode.ENCODED, link=link)
    clean, others = publishers[0], publishers[1:]
    await asyncio.sleep(settle)

    def counts(kind: str) -> dict[tuple[ParticipantId, ParticipantId], int]:
        return {(v, p): peers[v].counter.frames(p, kind) for v in (clean, capped) for p in others}

    offered0, audio0, video0 = link.down.stats.offered_bytes, counts("audio"), counts("video")
    keyframes0 = {p: relay.source(p, "video").keyframe_requests_sent for p in publishers}  # type: ignore[union-attr]
    await asyncio.sleep(seconds)
    offered = 8 * (link.down.stats.offered_bytes - offered0) / seconds
    audio1, video1 = counts("audio"), counts("video")
    missing = [
        1 - (audio1[(capped, p)] - audio0[(capped, p)]) / max(1, audio1[(clean, p)] - audio0[(clean, p)])
        for p in others
    ]
    print(f"cap {cap / 1000:.0f} kbit/s; settle {settle:.0f} s; window {seconds:.0f} s")
    print(f"relay offered the capped receiver: {offered / 1000:.0f} kbit/s ({offered / cap:.2f}x the cap)")
    print("audio missing at the capped receiver (vs a clean one): " + ", ".join(f"{m:.1%}" for m in missing))
    for name, viewer in (("clean", clean), ("capped", capped)):
        fps = [(video1[(viewer, p)] - video0[(viewer, p)]) / seconds for p in others]
        print(f"{name} receiver video fps per publisher: " + ", ".join(f"{f:.1f}" for f in fps))
    per_second = [
        (relay.source(p, "video").keyframe_requests_sent - keyframes0[p]) / seconds  # type: ignore[union-attr]
        for p in publishers
    ]
    print("keyframe requests to each publisher per second: " + ", ".join(f"{k:.2f}" for k in per_second))
    print("audio-only changes (s since start, reason): " + ", ".join(f"{t:.1f} {r}" for t, r in changes))
    for task in list(tasks):
        task.cancel()
    await relay.close()
    for peer in peers.values():
        await peer.close()
    link.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cap", type=int, default=250_000, help="the receiver's downlink, bits per second")
    parser.add_argument("--settle", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.cap, arguments.settle, arguments.seconds))
