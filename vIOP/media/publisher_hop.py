"""Wires a publisher's aiortc receivers to the pure receive path (``vIOP.media.ingress``) on the event loop.

Audio: each packet straight to the source. Video: a :class:`~vIOP.media.ingress.Vp8Assembler` per stream
gets each packet with the loop's time, its NACKs go upstream as RTCP, its keyframe requests go through the
source's keyframe gate, and one loop timer per stream (armed only while a packet is missing) runs its
retries and ends its waits when no packet arrives to do it.

Simulcast (``layers`` given): every layer reaches the one video receiver (aiortc routes unknown SSRCs by
payload type); :class:`~vIOP.media.simulcast.LayerDemux` tells the layers apart by their RID header
extension, and each layer gets its own assembler and sink (its own :class:`~vIOP.media.fanout.Source`).
Retransmissions of a layer carry the RID they repair: :meth:`VideoIngress.observe_rtx` ties their SSRC to
the layer's so aiortc unwraps them. Without ``layers`` (one layer: old browsers, aiortc) all packets go to
one assembler, whatever their SSRC, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from aiortc import RTCRtpReceiver

from vIOP.media.aiortc_internals import (
    install_audio_ingress,
    install_video_ingress,
    learn_rtx_ssrc,
    send_nack,
    send_pli,
)
from vIOP.media.frames import FrameSink
from vIOP.media.ingress import AudioIngress, NackPolicy, RoundTrip, Vp8Assembler, vp8_frame_start
from vIOP.media.rtp import packet_ssrc, read_extension
from vIOP.media.simulcast import LayerDemux

logger = logging.getLogger(__name__)

KeyframeRequest = Callable[[], None]


class _Stream:
    """One stream's assembler and its retry timer."""

    __slots__ = ("_loop", "_timer", "_timer_at", "assembler", "ssrc")

    def __init__(
        self, assembler_for: Callable[[_Stream], Vp8Assembler], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.ssrc = 0
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.assembler = assembler_for(self)

    def packet(
        self, ssrc: int, seq: int, timestamp: int, marker: bool, payload: bytes, data: bytes, rid: str | None
    ) -> None:
        """A ``VideoPacketSink``: a single-layer receiver hands packets here directly (no extra hop)."""
        self.ssrc = ssrc
        assembler = self.assembler
        if assembler.add(seq, timestamp, marker, vp8_frame_start(payload), data, self._loop.time()):
            wake = assembler.next_wakeup()
            if wake is not None and (self._timer is None or wake < self._timer_at):
                self._arm(wake)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.assembler.tick(self._loop.time())
        wake = self.assembler.next_wakeup()
        if wake is not None:
            self._arm(wake)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class VideoIngress:
    """One publisher video receiver's packets -> complete frames, with RTT-paced NACKs and bounded waits."""

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        sink: FrameSink,
        request_keyframe: KeyframeRequest,
        rtt: RoundTrip,
        policy: NackPolicy | None = None,
        layers: Mapping[str, tuple[FrameSink, KeyframeRequest]] | None = None,
    ) -> None:
        """``sink``/``request_keyframe`` serve a single-layer publisher; ``layers`` (RID -> the same pair)
        a simulcast one."""
        self._receiver = receiver
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._rtt = rtt
        self._policy = policy
        self._layers = dict(layers or {})
        self.demux = LayerDemux(tuple(self._layers))
        self._streams: dict[str, _Stream] = {}  # by RID (simulcast)
        self.unknown_packets = 0  # simulcast packets naming no layer we receive
        self._keyframe_wanted: set[str] = set()  # layers asked for a keyframe before their first packet
        self._single = _Stream(lambda s: self._assembler(s, sink, request_keyframe), self._loop)
        install_video_ingress(receiver, self._single.packet if not self._layers else self._layer_packet)

    @property
    def assembler(self) -> Vp8Assembler:
        """The single-layer publisher's assembler."""
        return self._single.assembler

    def layer_assembler(self, rid: str) -> Vp8Assembler | None:
        stream = self._streams.get(rid)
        return None if stream is None else stream.assembler

    def _assembler(self, stream: _Stream, sink: FrameSink, request_keyframe: KeyframeRequest) -> Vp8Assembler:
        def nack(lost: list[int]) -> None:
            self._send_nack(stream.ssrc, lost)

        return Vp8Assembler(sink, nack, request_keyframe, self._rtt, self._policy)

    def _layer_packet(
        self, ssrc: int, seq: int, timestamp: int, marker: bool, payload: bytes, data: bytes, rid: str | None
    ) -> None:
        layer = self.demux.media(ssrc, rid)
        if layer is None:
            self.unknown_packets += 1
            return
        stream = self._streams.get(layer)
        if stream is None:
            sink, request_keyframe = self._layers[layer]
            stream = self._streams[layer] = _Stream(
                lambda s: self._assembler(s, sink, request_keyframe), self._loop
            )
        if stream.ssrc != ssrc and layer in self._keyframe_wanted:  # its first packet (or a new SSRC)
            self._keyframe_wanted.discard(layer)
            self._spawn(send_pli(self._receiver, ssrc))
        stream.packet(ssrc, seq, timestamp, marker, payload, data, rid)

    def observe_rtx(self, repaired_id: int) -> Callable[[bytes], None]:
        """An observer for the publisher's RTX packets (raw, before aiortc routes them): ties each RTX SSRC
        to the layer named by its ``repaired-rtp-stream-id`` element (extension id ``repaired_id``)."""
        known: set[int] = set()

        def observe(packet: bytes) -> None:
            ssrc = packet_ssrc(packet)
            if ssrc in known:
                return
            value = read_extension(packet, repaired_id)
            media = self.demux.repair(ssrc, value.decode("ascii", "replace") if value else None)
            if media is not None:
                known.add(ssrc)
                learn_rtx_ssrc(self._receiver, ssrc, media)

        return observe

    def request_layer_keyframe(self, rid: str) -> None:
        """PLI for one layer's SSRC; before its first packet, sent when that arrives (a subscriber may
        attach before the layer's first keyframe reached us, or with it lost)."""
        ssrc = self.demux.ssrc(rid)
        if ssrc is None:
            self._keyframe_wanted.add(rid)
        else:
            self._spawn(send_pli(self._receiver, ssrc))

    def _send_nack(self, ssrc: int, lost: list[int]) -> None:
        self._spawn(send_nack(self._receiver, ssrc, lost))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the connection went away meanwhile
            logger.debug("RTCP not sent: %r", task.exception())

    def close(self) -> None:
        self._single.close()
        for stream in self._streams.values():
            stream.close()


def audio_ingress(receiver: RTCRtpReceiver, sink: FrameSink) -> AudioIngress:
    """Forward ``receiver``'s Opus packets to ``sink`` one by one as they arrive."""
    ingress = AudioIngress(sink)
    install_audio_ingress(receiver, ingress.add)
    return ingress
