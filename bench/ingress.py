"""Benchmark: CPU per received packet on the publisher hop, aiortc's jitter buffers vs vIOP's receive path.

    PYTHONPATH=$PWD .venv/bin/python bench/ingress.py [--seconds 20] [--rounds 5]

In one process, no network: the same RTP packets (640x360 30 fps VP8 at ~500 kbit/s and 20 ms Opus,
encoded once, packetized by ``RtpWriter``, parsed by aiortc's ``RtpPacket.parse`` and depayloaded as
aiortc's receiver does before its jitter buffer) go through

- ``aiortc``: what the relay did before: aiortc's ``JitterBuffer`` (512 packets for video, 16 with a
  prefetch of 4 for audio), then an ``EncodedFrame`` per complete frame (``install_encoded_output``);
- ``vIOP``: what ``install_video_ingress`` / ``install_audio_ingress`` hand each packet to now:
  ``Vp8Assembler.add`` (with ``vp8_frame_start``) and ``AudioIngress.add``.

Both end in a sink that drops the frame. Lossless input: the steady state the relay spends its time in.
Rounds alternate between the two; the figure is the median round, in microseconds per packet.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from aiortc.codecs import depayload
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from vIOP.client.media import encode_opus_clip, encode_video_clip
from vIOP.media.frames import EncodedFrame, is_vp8_keyframe, time_base
from vIOP.media.ingress import AudioIngress, Vp8Assembler, vp8_frame_start
from vIOP.media.rtp import RtpWriter

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


def packets(kind: str, seconds: float) -> list[RtpPacket]:
    video = kind == "video"
    clip = encode_video_clip(640, 360, 30, 4.0) if video else encode_opus_clip(4.0)
    writer = RtpWriter(
        video=video, ssrc=1, rtx_ssrc=2, sequence=1, rtx_sequence=1, timestamp_origin=0, picture_id=1
    )
    writer.configure(payload_type=96, rtx_payload_type=None, mid=None, mid_id=None, abs_send_time_id=None)
    out = []
    frames = round(seconds / clip.interval)
    for n in range(frames):
        raws, _, _ = writer.frame(clip.frames[n % len(clip.frames)], n * clip.pts_step, 0)
        for raw in raws:
            packet = RtpPacket.parse(raw)
            packet._data = depayload(VP8 if video else OPUS, packet.payload)  # type: ignore[attr-defined]
            out.append(packet)
    return out


def aiortc_path(kind: str) -> Callable[[RtpPacket], None]:
    video = kind == "video"
    buffer = JitterBuffer(capacity=512, is_video=True) if video else JitterBuffer(capacity=16, prefetch=4)
    base = time_base(90000 if video else 48000)

    def add(packet: RtpPacket) -> None:
        _, frame = buffer.add(packet)
        if frame is not None:
            data: bytes = frame.data
            EncodedFrame(data, frame.timestamp, base, is_vp8_keyframe(data) if video else True)

    return add


def viop_path(kind: str) -> Callable[[RtpPacket], None]:
    def drop(frame: EncodedFrame) -> None:
        pass

    if kind == "audio":
        ingress = AudioIngress(drop)
        return lambda p: ingress.add(p.sequence_number, p.timestamp, p._data)  # type: ignore[attr-defined]
    assembler = Vp8Assembler(drop, lambda lost: None, lambda: None, lambda: 0.01)
    clock = time.monotonic
    return lambda p: assembler.add(
        p.sequence_number,
        p.timestamp,
        p.marker,
        vp8_frame_start(p.payload),
        p._data,  # type: ignore[attr-defined]
        clock(),
    )


def per_packet_us(path: Callable[[RtpPacket], None], stream: list[RtpPacket]) -> float:
    start = time.process_time()
    for packet in stream:
        path(packet)
    return 1e6 * (time.process_time() - start) / len(stream)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="media per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"command: .venv/bin/python bench/ingress.py --seconds {args.seconds:g} --rounds {args.rounds}")
    for kind in ("video", "audio"):
        stream = packets(kind, args.seconds)
        results: dict[str, list[float]] = {"aiortc": [], "vIOP": []}
        for _ in range(args.rounds):
            results["aiortc"].append(per_packet_us(aiortc_path(kind), stream))
            results["vIOP"].append(per_packet_us(viop_path(kind), stream))
        line = ", ".join(f"{name} {statistics.median(v):.2f} us/packet" for name, v in results.items())
        print(f"{kind}: {len(stream)} packets per round, median of {args.rounds} rounds: {line}")


if __name__ == "__main__":
    main()
