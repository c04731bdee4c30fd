"""A real aiortc peer that publishes VP8 simulcast the way a browser does (tests only).

aiortc cannot send simulcast, so this client offers what Chromium offers for ``sendEncodings`` with two
RIDs (``a=rid:<id> send``, ``a=simulcast:send h;l``, the ``sdes:rtp-stream-id`` extension) and writes each
layer's RTP itself on its own SSRC through the connection's SRTP transport, every packet naming its RID.
Each layer is a real live VP8 encoder that sends a keyframe first and then only when a PLI/FIR for that
layer's SSRC asks (as a browser does): a relay that asks the wrong layer, or never asks, shows. NACKs are
answered with RTX on the layer's own RTX SSRC, naming the layer in ``sdes:repaired-rtp-stream-id`` (as
Chromium does, with no ``a=ssrc-group`` to tell the SSRCs apart); ``drop_every`` holds back every n-th
packet on its first sending, so the relay must NACK and use the retransmission.
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
from vIOP.media.simulcast import REPAIRED_RTP_STREAM_ID, RTP_STREAM_ID

LOOPBACK = ("127.0.0.1",)
MID_ID = 1  # aiortc's own id for sdes:mid on video
RID_ID = 10
REPAIRED_ID = 11


@dataclass
class Layer:
    rid: str
    width: int
    height: int
    bitrate: int
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    rtx_ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    history: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # seq -> (header, payload)
    held_back: int = 0
    retransmitted: int = 0
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
                out.append(f"a=extmap:{REPAIRED_ID} {REPAIRED_RTP_STREAM_ID}")
            out += [f"a=rid:{rid} send" for rid in rids]
            out.append("a=simulcast:send " + ";".join(rids))
    return "\r\n".join(line for line in out if line) + "\r\n"


class SimulcastPublisher:
    def __init__(
        self, layers: tuple[Layer, ...] | None = None, *, rid_extension: bool = True, drop_every: int = 0
    ) -> None:
        self.layers = layers or (Layer("h", 640, 360, 600_000), Layer("l", 320, 180, 150_000))
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.transceiver = self.pc.addTransceiver("video", direction="sendonly")
        restrict_codecs(self.transceiver)
        self._rid_extension = rid_extension
        self._drop_every = drop_every
        self._rtx_tasks: set[asyncio.Task[None]] = set()
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

        codecs = negotiated(self.transceiver)[0]
        payload_type = codecs[0].payloadType
        rtx_type = next(c.payloadType for c in codecs if c.mimeType.lower() == "video/rtx")
        mid = (self.transceiver.mid or "").encode()
        rid = layer.rid.encode()
        extension = self._extension(mid, RID_ID, rid)
        rtx_extension = self._extension(mid, REPAIRED_ID, rid)
        rtx_sequence = random.getrandbits(16)

        async def retransmit(lost: list[int]) -> None:
            nonlocal rtx_sequence
            for seq in lost:
                found = layer.history.get(seq)
                if found is None:
                    continue
                header, payload = found
                timestamp = struct.unpack_from("!I", header, 4)[0]
                marker = header[1] & 0x80
                rtx_header = struct.pack(
                    "!BBHII", 0x90, marker | rtx_type, rtx_sequence, timestamp, layer.rtx_ssrc
                )
                rtx_sequence = (rtx_sequence + 1) & 0xFFFF
                with contextlib.suppress(ConnectionError):
                    await send(rtx_header + rtx_extension + struct.pack("!H", seq) + payload)
                    layer.retransmitted += 1

        def nacked(ssrc: int, lost: list[int]) -> None:
            if ssrc == layer.ssrc:
                task = asyncio.get_running_loop().create_task(retransmit(lost))
                self._rtx_tasks.add(task)
                task.add_done_callback(self._rtx_tasks.discard)

        on_keyframe_request_for(sender, [layer.ssrc], keyframe_asked, nacked)
        sent = 0
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
                layer.history[sequence] = (header, payload)
                layer.history.pop((sequence - 512) & 0xFFFF, None)
                sequence = (sequence + 1) & 0xFFFF
                sent += 1
                if self._drop_every and sent % self._drop_every == 0 and not (i == 0 and frame.keyframe):
                    layer.held_back += 1
                    continue
                with contextlib.suppress(ConnectionError):
                    await send(header + extension + payload)
                    layer.packets += 1

    @staticmethod
    def _extension(mid: bytes, extension_id: int, value: bytes) -> bytes:
        elements = bytes([(MID_ID << 4) | (len(mid) - 1)]) + mid
        elements += bytes([(extension_id << 4) | (len(value) - 1)]) + value
        elements += b"\x00" * (-len(elements) % 4)
        return struct.pack("!HH", 0xBEDE, len(elements) // 4) + elements

    async def close(self) -> None:
        for task in [*self._tasks, *self._rtx_tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
