"""A real aiortc peer that publishes VP8 simulcast the way a browser does (tests only).

aiortc cannot send simulcast, so this client offers what Chromium offers for ``sendEncodings`` with two
RIDs (``a=rid:<id> send``, ``a=simulcast:send h;l``, the ``sdes:rtp-stream-id`` extension) and writes each
layer's RTP itself on its own SSRC through the connection's SRTP transport, every packet naming its RID.
Each layer is a real live VP8 encoder that sends a keyframe first and then only when a PLI/FIR for that
layer's SSRC asks (as a browser does): a relay that asks the wrong layer, or never asks, shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from vIOP.client.media import KeyframeOnRequestVideoTrack
from vIOP.media.aiortc_internals import negotiated, on_keyframe_request_for, rtp_output
from vIOP.media.codec_plan import restrict_codecs
from vIOP.media.ice_gathering import advertising
from vIOP.media.rtp import vp8_payloads
from vIOP.media.simulcast import RTP_STREAM_ID

LOOPBACK = ("127.0.0.1",)
MID_ID = 1  # aiortc's own id for sdes:mid on video
RID_ID = 10


@dataclass
class Layer:
    rid: str
    width: int
    height: int
    bitrate: int
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    track: KeyframeOnRequestVideoTrack = field(init=False)
    keyframe_requests: int = 0
    packets: int = 0

    def __post_init__(self) -> None:
        self.track = KeyframeOnRequestVideoTrack(self.width, self.height, fps=15, bitrate=self.bitrate)


def with_simulcast(sdp: str, rids: list[str], *, rid_extension: bool = True) -> str:
    """Chromium's simulcast lines added to the (only) video m-line of an aiortc offer."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    in_video = False
    for line in lines:
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        out.append(line)
        if in_video and line.startswith("a=mid:"):
            if rid_extension:
                out.append(f"a=extmap:{RID_ID} {RTP_STREAM_ID}")
            out += [f"a=rid:{rid} send" for rid in rids]
            out.append("a=simulcast:send " + ";".join(rids))
    return "\r\n".join(line for line in out if line) + "\r\n"


class SimulcastPublisher:
    def __init__(self, layers: tuple[Layer, ...] | None = None, *, rid_extension: bool = True) -> None:
        self.layers = layers or (Layer("h", 640, 360, 600_000), Layer("l", 320, 180, 150_000))
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.transceiver = self.pc.addTransceiver("video", direction="sendonly")
        restrict_codecs(self.transceiver)
        self._rid_extension = rid_extension
        self._tasks: list[asyncio.Task[None]] = []
        self.offer = ""

    async def create_offer(self) -> str:
        offer = await self.pc.createOffer()
        with advertising(LOOPBACK):
            await self.pc.setLocalDescription(offer)
        self.offer = with_simulcast(
            self.pc.localDescription.sdp,
            [layer.rid for layer in self.layers],
            rid_extension=self._rid_extension,
        )
        return self.offer

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self._tasks = [asyncio.get_running_loop().create_task(self._pump(layer)) for layer in self.layers]

    async def _pump(self, layer: Layer) -> None:
        while self.pc.connectionState != "connected":
            await asyncio.sleep(0.01)  # bounded by the test's own timeouts
        sender = self.transceiver.sender
        send = rtp_output(sender)

        def keyframe_asked(ssrc: int) -> None:
            for each in self.layers:
                if each.ssrc == ssrc:
                    each.keyframe_requests += 1
                    each.track.request_keyframe()

        on_keyframe_request_for(sender, [layer.ssrc], keyframe_asked)
        payload_type = negotiated(self.transceiver)[0][0].payloadType
        mid = (self.transceiver.mid or "").encode()
        rid = layer.rid.encode()
        elements = bytes([(MID_ID << 4) | (len(mid) - 1)]) + mid
        if self._rid_extension:
            elements += bytes([(RID_ID << 4) | (len(rid) - 1)]) + rid
        elements += b"\x00" * (-len(elements) % 4)
        extension = struct.pack("!HH", 0xBEDE, len(elements) // 4) + elements
        sequence = random.getrandbits(16)
        origin = random.getrandbits(32)
        picture_id = random.getrandbits(15)
        while True:
            frame = await layer.track.recv()
            payloads = vp8_payloads(frame.data, picture_id)
            picture_id = (picture_id + 1) & 0x7FFF
            timestamp = (origin + frame.pts) & 0xFFFFFFFF
            for i, payload in enumerate(payloads):
                marker = 0x80 if i == len(payloads) - 1 else 0
                header = struct.pack("!BBHII", 0x90, marker | payload_type, sequence, timestamp, layer.ssrc)
                sequence = (sequence + 1) & 0xFFFF
                with contextlib.suppress(ConnectionError):
                    await send(header + extension + payload)
                    layer.packets += 1

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
