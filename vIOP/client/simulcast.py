"""Simulcast publishing for the Python client, the way Chromium does it for ``sendEncodings`` (tests and
benchmarks: aiortc cannot send simulcast itself).

The offer's video m-line gets Chromium's lines (``a=rid:<id> send``, ``a=simulcast:send h;l`` and the
``sdes:rtp-stream-id`` / ``sdes:repaired-rtp-stream-id`` extensions); once connected, each layer's frames are
packetized here and written on the layer's own SSRC through the connection's SRTP transport, every packet
naming its RID. A PLI/FIR for a layer's SSRC asks that layer's track for a keyframe; NACKs are answered with
RTX on the layer's own RTX SSRC, naming the layer it repairs. A layer's ``drop_every`` holds back every n-th
packet on its first sending (never a keyframe's first), so the receiver must NACK and use the retransmission.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpTransceiver

from vIOP.media.aiortc_internals import negotiated, on_keyframe_request_for, rtp_output
from vIOP.media.frames import EncodedFrame
from vIOP.media.rtp import vp8_payloads
from vIOP.media.simulcast import REPAIRED_RTP_STREAM_ID, RTP_STREAM_ID

MID_ID: Final = 1  # aiortc's own id for sdes:mid on video
RID_ID: Final = 10
REPAIRED_ID: Final = 11
HISTORY: Final = 512  # packets kept per layer for NACKs


@dataclass
class SimulcastLayer:
    """One encoding: its RID and a track of encoded VP8 frames (``request_keyframe()`` if it has one).

    ``drop_every``: hold back every n-th packet on its first sending (0: none), to test NACK and RTX repair.
    """

    rid: str
    track: MediaStreamTrack
    drop_every: int = 0
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    rtx_ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    packets: int = 0
    retransmitted: int = 0
    keyframe_requests: int = 0
    held_back: int = 0
    history: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # seq -> (header, payload)


def with_simulcast(sdp: str, rids: Sequence[str]) -> str:
    """Chromium's simulcast lines added to the (only) video m-line of an aiortc offer."""
    out: list[str] = []
    in_video = False
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        out.append(line)
        if in_video and line.startswith("a=mid:"):
            out.append(f"a=extmap:{RID_ID} {RTP_STREAM_ID}")
            out.append(f"a=extmap:{REPAIRED_ID} {REPAIRED_RTP_STREAM_ID}")
            out += [f"a=rid:{rid} send" for rid in rids]
            out.append("a=simulcast:send " + ";".join(rids))
    return "\r\n".join(line for line in out if line) + "\r\n"


def _extension(mid: bytes, extension_id: int, value: bytes) -> bytes:
    elements = bytes([(MID_ID << 4) | (len(mid) - 1)]) + mid
    elements += bytes([(extension_id << 4) | (len(value) - 1)]) + value
    elements += b"\x00" * (-len(elements) % 4)
    return struct.pack("!HH", 0xBEDE, len(elements) // 4) + elements


class SimulcastSender:
    """Sends ``layers`` on ``transceiver`` (a ``sendonly`` video transceiver without a track) of ``pc``."""

    def __init__(
        self, pc: RTCPeerConnection, transceiver: RTCRtpTransceiver, layers: Sequence[SimulcastLayer]
    ) -> None:
        self.layers = tuple(layers)
        self._pc = pc
        self._transceiver = transceiver
        self._tasks: list[asyncio.Task[None]] = []
        self._rtx_tasks: set[asyncio.Task[None]] = set()

    @property
    def rids(self) -> tuple[str, ...]:
        return tuple(layer.rid for layer in self.layers)

    def start(self) -> None:
        """After the answer is applied: each layer's pump starts once the connection is up."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._pump(layer)) for layer in self.layers]

    async def _pump(self, layer: SimulcastLayer) -> None:
        while self._pc.connectionState != "connected":
            if self._pc.connectionState in ("failed", "closed"):
                return
            await asyncio.sleep(0.02)  # bounded by the connection's own ICE timeouts
        sender = self._transceiver.sender
        send = rtp_output(sender)
        codecs = negotiated(self._transceiver)[0]
        payload_type = codecs[0].payloadType
        rtx_type = next(c.payloadType for c in codecs if c.mimeType.lower() == "video/rtx")
        assert payload_type is not None and rtx_type is not None  # negotiated codecs have them
        mid = (self._transceiver.mid or "").encode()
        extension = _extension(mid, RID_ID, layer.rid.encode())
        rtx_extension = _extension(mid, REPAIRED_ID, layer.rid.encode())
        rtx_sequence = random.getrandbits(16)

        async def retransmit(lost: list[int]) -> None:
            nonlocal rtx_sequence
            for seq in lost:
                found = layer.history.get(seq)
                if found is None:
                    continue
                header, payload = found
                timestamp = struct.unpack_from("!I", header, 4)[0]
                rtx_header = struct.pack(
                    "!BBHII", 0x90, (header[1] & 0x80) | rtx_type, rtx_sequence, timestamp, layer.rtx_ssrc
                )
                rtx_sequence = (rtx_sequence + 1) & 0xFFFF
                with contextlib.suppress(ConnectionError):
                    await send(rtx_header + rtx_extension + struct.pack("!H", seq) + payload)
                    layer.retransmitted += 1

        def keyframe_asked(ssrc: int) -> None:
            for each in self.layers:
                request = getattr(each.track, "request_keyframe", None)
                if each.ssrc == ssrc and callable(request):
                    each.keyframe_requests += 1
                    request()

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
            assert isinstance(frame, EncodedFrame)
            payloads = vp8_payloads(frame.data, picture_id)
            picture_id = (picture_id + 1) & 0x7FFF
            timestamp = (origin + frame.pts) & 0xFFFFFFFF
            for i, payload in enumerate(payloads):
                marker = 0x80 if i == len(payloads) - 1 else 0
                header = struct.pack("!BBHII", 0x90, marker | payload_type, sequence, timestamp, layer.ssrc)
                layer.history[sequence] = (header, payload)
                layer.history.pop((sequence - HISTORY) & 0xFFFF, None)
                sequence = (sequence + 1) & 0xFFFF
                sent += 1
                if layer.drop_every and sent % layer.drop_every == 0 and not (i == 0 and frame.keyframe):
                    layer.held_back += 1
                    continue
                with contextlib.suppress(ConnectionError):
                    await send(header + extension + payload)
                    layer.packets += 1

    async def close(self) -> None:
        for task in [*self._tasks, *self._rtx_tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._rtx_tasks, return_exceptions=True)
        for layer in self.layers:
            layer.track.stop()
