"""The server half of ``bench/relay.py``: one relay in its own process, driven over a unix socket.

    python bench/relay_server.py {viop|viop-queued|stock} SOCKET_PATH

Modes: ``viop`` is vIOP's encoded pass-through :class:`~vIOP.media.relay.MediaRelay`; ``viop-queued`` the
same with aiortc's own sender loop instead of the direct RTP writer (``direct_send=False``); ``stock`` is the
baseline, aiortc's own ``contrib.media.MediaRelay`` (decode once, re-encode per subscriber), wired the way
aiortc's examples do. The protocol is JSON lines, each with ``op`` and ``pid``:
join (offer in, answer out), answer, stats, profile_start, profile_stop (writes a pstats file), quit.
Loopback only: the socket is a file, media goes over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay as StockRelay

from vIOP.ids import ParticipantId
from vIOP.media.aiortc_internals import label_sender
from vIOP.media.ice import IceConfig
from vIOP.media.ice_gathering import advertising, peer_configuration
from vIOP.media.relay import MediaRelay, RenegotiationOffer

LOOPBACK = ("127.0.0.1",)
Send = Any  # callable(dict) -> None


class ViopServer:
    def __init__(self, send: Send, *, direct_send: bool = True) -> None:
        self._send = send
        self.relay = MediaRelay(
            IceConfig.loopback(),
            on_signal=self._offer,
            direct_send=direct_send,
            # what the signaling layer would tell the person (bench/impaired.py records it)
            on_audio_only=lambda pid, reason: send({"op": "audio_only", "pid": pid, "reason": reason}),
        )

    async def _offer(self, pid: ParticipantId, offer: RenegotiationOffer) -> None:
        self._send({"op": "offer", "pid": pid, "sdp": offer.sdp})

    async def join(self, pid: str, sdp: str) -> str:
        """A new participant's first offer, or a participant's new connection (a reconnect)."""
        if ParticipantId(pid) not in self.relay.participants():
            await self.relay.add_participant(ParticipantId(pid))
        return await self.relay.handle_offer(ParticipantId(pid), sdp)

    async def answer(self, pid: str, sdp: str) -> None:
        await self.relay.handle_answer(ParticipantId(pid), sdp)

    def connections(self) -> list[RTCPeerConnection]:
        sessions = [self.relay.session(p) for p in self.relay.participants()]
        return [s.pc for s in sessions if s is not None]

    def video_frames_sent(self) -> tuple[int, int]:
        """(video frames the relay sent, video legs carrying a publisher): the relay's side of delivery."""
        sessions = [self.relay.session(p) for p in self.relay.participants()]
        legs = [slot.leg for s in sessions if s is not None for slot in s.slots if slot.leg.kind == "video"]
        return sum(leg.frames_out for leg in legs), sum(1 for leg in legs if leg.source is not None)

    def video_frames_received(self) -> tuple[int, int]:
        """(complete video frames out of the publishers' jitter buffers, video publishers)."""
        sources = [self.relay.source(p, "video") for p in self.relay.participants()]
        return sum(s.frames_in for s in sources if s is not None), sum(1 for s in sources if s is not None)

    async def close(self) -> None:
        await self.relay.close()


class StockServer:
    """aiortc's documented relay pattern: publisher tracks decoded once, ``relay.subscribe()`` per viewer."""

    def __init__(self, send: Send) -> None:
        self._relay = StockRelay()
        self._pcs: dict[str, RTCPeerConnection] = {}
        self._published: dict[str, tuple[str, MediaStreamTrack]] = {}  # kind -> (publisher, track)

    async def join(self, pid: str, sdp: str) -> str:
        pc = RTCPeerConnection(peer_configuration([]))
        self._pcs[pid] = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._published[track.kind] = (pid, track)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for transceiver in pc.getTransceivers():
            if transceiver.direction == "recvonly" and transceiver.kind in self._published:
                publisher, track = self._published[transceiver.kind]
                if publisher != pid:
                    sender = pc.addTrack(self._relay.subscribe(track))
                    label_sender(sender, publisher, f"{publisher}-{track.kind}")
        with advertising(LOOPBACK):
            await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def answer(self, pid: str, sdp: str) -> None:
        raise RuntimeError("the stock server never offers")

    def connections(self) -> list[RTCPeerConnection]:
        return list(self._pcs.values())

    def video_frames_sent(self) -> tuple[int, int]:
        return 0, 0  # not observable in aiortc's relay without instrumenting it

    def video_frames_received(self) -> tuple[int, int]:
        return 0, 0

    async def close(self) -> None:
        for pc in self._pcs.values():
            await pc.close()


async def packets_sent(pcs: list[RTCPeerConnection]) -> int:
    total = 0
    for pc in pcs:
        for sender in pc.getSenders():
            if sender.track is None:
                continue
            for stat in (await sender.getStats()).values():
                if getattr(stat, "type", "") == "outbound-rtp":
                    total += int(stat.packetsSent)
    return total


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def serve(mode: str, socket_path: str) -> None:
    done = asyncio.Event()
    profiler = cProfile.Profile(time.thread_time)  # CPU of the event-loop thread, not wall time

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(message: dict[str, Any]) -> None:
            writer.write(json.dumps(message).encode() + b"\n")

        server: ViopServer | StockServer = (
            StockServer(send) if mode == "stock" else ViopServer(send, direct_send=mode == "viop")
        )
        try:
            while line := await reader.readline():
                message = json.loads(line)
                op, pid = message["op"], message.get("pid", "")
                if op == "join":
                    send({"op": "answer", "pid": pid, "sdp": await server.join(pid, message["sdp"])})
                elif op == "answer":
                    await server.answer(pid, message["sdp"])
                elif op == "stats":
                    pcs = server.connections()
                    frames, legs = server.video_frames_sent()
                    frames_in, publishers = server.video_frames_received()
                    send(
                        {
                            "op": "stats",
                            "video_frames_in": frames_in,
                            "video_publishers": publishers,
                            "video_frames_sent": frames,
                            "video_legs": legs,
                            "packets_sent": await packets_sent(pcs),
                            "rss_kb": rss_kb(),
                            "threads": threading.active_count(),
                        }
                    )
                elif op == "layer_changes":  # the allocators' recent decisions with reasons (ids only)
                    relay = getattr(server, "relay", None)
                    changes = relay.layer_changes() if relay is not None else {}
                    send({"op": "layer_changes", "changes": {str(k): v for k, v in changes.items()}})
                elif op == "profile_start":
                    profiler.enable()
                    send({"op": "profiling"})
                elif op == "profile_stop":
                    profiler.disable()
                    profiler.dump_stats(message["path"])
                    send({"op": "profiled"})
                elif op == "quit":
                    break
                await writer.drain()
        finally:
            await server.close()
            writer.close()
            done.set()

    unix = await asyncio.start_unix_server(handle, socket_path, limit=1 << 22)
    async with unix:
        await done.wait()


def main() -> None:
    mode, socket_path = sys.argv[1], sys.argv[2]
    if mode not in ("viop", "viop-queued", "stock"):
        raise SystemExit("mode must be viop, viop-queued or stock")
    asyncio.run(serve(mode, socket_path))
    os._exit(0)  # aiortc leaves decoder/encoder threads behind in stock mode; do not wait for them


if __name__ == "__main__":
    main()
