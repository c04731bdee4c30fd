"""Wires a publisher's aiortc receivers to the pure receive path (``vIOP.media.ingress``) on the event loop.

Audio: each packet straight to the source. Video: the :class:`~vIOP.media.ingress.Vp8Assembler` gets
each packet with the loop's time, its NACKs go upstream as RTCP, its keyframe requests go through the
source's keyframe gate, and one loop timer (armed only while a packet is missing) runs its retries and
ends its waits when no packet arrives to do it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCRtpReceiver

from vIOP.media.aiortc_internals import install_audio_ingress, install_video_ingress, send_nack
from vIOP.media.frames import FrameSink
from vIOP.media.ingress import AudioIngress, NackPolicy, RoundTrip, Vp8Assembler, vp8_frame_start

logger = logging.getLogger(__name__)


class VideoIngress:
    """One publisher video receiver's packets -> complete frames, with RTT-paced NACKs and bounded waits."""

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        sink: FrameSink,
        request_keyframe: Callable[[], None],
        rtt: RoundTrip,
        policy: NackPolicy | None = None,
    ) -> None:
        self._receiver = receiver
        self._ssrc = 0
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self.assembler = Vp8Assembler(sink, self._send_nack, request_keyframe, rtt, policy)
        install_video_ingress(receiver, self._packet)

    def _packet(self, ssrc: int, seq: int, timestamp: int, marker: bool, payload: bytes, data: bytes) -> None:
        self._ssrc = ssrc
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

    def _send_nack(self, lost: list[int]) -> None:
        task = self._loop.create_task(send_nack(self._receiver, self._ssrc, lost))
        self._tasks.add(task)
        task.add_done_callback(self._nack_done)

    def _nack_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the connection went away meanwhile
            logger.debug("NACK not sent: %r", task.exception())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def audio_ingress(receiver: RTCRtpReceiver, sink: FrameSink) -> AudioIngress:
    """Forward ``receiver``'s Opus packets to ``sink`` one by one as they arrive."""
    ingress = AudioIngress(sink)
    install_audio_ingress(receiver, ingress.add)
    return ingress
