"""One participant's server-side peer connection and its negotiation, serialised.

Who offers: the client opens every connection with its offer (publishing audio/video on m-lines the server
answers ``recvonly``). After that only the server offers: when publishers join or leave it adds or
recycles ``sendonly`` m-lines and sends a new offer. A new client offer always means a new connection (the
relay replaces this session), so offers never cross on one connection (no glare).

Serialisation: one lock per session around every SDP operation; at most one server offer is in flight;
changes made while it is in flight are batched into the next offer once the answer arrives. Server offers
start only when the connection is up: that proves the client applied our answer, so our offer can never
reach it before the answer.

Subscriber m-lines are recycled, not grown: a departed publisher's m-line goes ``inactive`` and, once the
client has confirmed that, carries the next publisher (``a=msid`` changes, so a browser fires ``ontrack``).

Budgets (``vIOP.media.budget``): every :data:`BUDGET_TICK` seconds the session estimates the client's
downlink from its RTCP feedback (``vIOP.media.downlink``), moves each video leg to the layer that fits (the
one the client wants, a lower one of the same publisher, or paused; audio always flows), sets its
retransmission budget, and reports audio-only changes.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpTransceiver, RTCSessionDescription

from vIOP.errors import BadRequest, Conflict
from vIOP.ids import ParticipantId
from vIOP.media.aiortc_internals import (
    accept_header_extensions,
    close_peer_connection,
    label_sender,
    negotiated,
    nominated_remote_host,
    observe_feedback,
    observe_rtp,
    offered_header_extensions,
    on_keyframe_request,
    request_keyframe,
    round_trip_time,
    route_by_ssrc_only,
)
from vIOP.media.budget import (
    FEEDBACK_GRACE,
    HEADROOM,
    PACKET_OVERHEAD_BYTES,
    RTX_SHARE,
    AudioOnlyReason,
    RateMeter,
    RtxBudget,
    VideoAllocator,
    VideoCandidate,
)
from vIOP.media.codec_plan import CodecPlan, restrict_codecs
from vIOP.media.direct_sender import DirectSender
from vIOP.media.downlink import DownlinkEstimator
from vIOP.media.egress import RemoteCandidates
from vIOP.media.fanout import Leg, Source
from vIOP.media.frames import EncodedFrame, FrameSink
from vIOP.media.ice import IceConfig
from vIOP.media.ice_gathering import advertising
from vIOP.media.ingress import AudioIngress
from vIOP.media.link_memory import KnownLink, LinkMemory
from vIOP.media.publisher_hop import VideoIngress, audio_ingress
from vIOP.media.rtp import PADDING_OCTETS
from vIOP.media.sdp import SdpSummary, parse_candidate, summarize_sdp
from vIOP.media.simulcast import REPAIRED_RTP_STREAM_ID, RTP_STREAM_ID, accept_layers
from vIOP.rooms.share import SCREEN_STREAM_SUFFIX

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT: Final = 3.0
SourceKey = tuple[ParticipantId, str]  # (publisher, track name: "audio", "video" or "screen")
SCREEN: Final = "screen"
"""A publisher's second video section is its screen share (docs/PROTOCOL.md, "Screen share")."""
SCREEN_PRIORITY: Final = float("inf")
"""The budget keeps a screen share before every camera (a workshop's slides matter more than faces)."""
SendOffer = Callable[[str], Awaitable[None]]
StateListener = Callable[[str], None]
AudioOnlyListener = Callable[[AudioOnlyReason | None], None]
"""Told when the client's video stops for a reason (``None``: video flows again)."""
VideoRank = Callable[[ParticipantId], float]
"""How much this client's view is worth keeping a publisher's video (higher first; ties: join order)."""
LayersOf = Callable[[ParticipantId], Sequence[Source]]
"""A publisher's video layers, best first (simulcast); one for a one-layer publisher."""
BUDGET_TICK: Final = 0.5
RESUMED_REPORTS: Final = 1.5
"""A resumed video leg's reports this long after the resume describe its packets from before the pause
(those the full link dropped are counted lost only once later ones arrive; measured: 40 % "loss" on a link
freed seconds before). Their loss is not the link's now: it is read as none (Chrome reports about once a
second)."""
PROBE_SLICE: Final = 0.02  # a bandwidth probe's padding goes out every 20 ms


def _join_order(publisher: ParticipantId) -> float:
    return 0.0


def track_names(summary: SdpSummary) -> list[str]:
    """The track each section of a (validated) client offer carries: ``"audio"``, ``"video"`` (the camera)
    or ``"screen"`` (a second video section: the screen share)."""
    names: list[str] = []
    for section in summary.media:
        names.append(SCREEN if section.kind == "video" and "video" in names else section.kind)
    return names


def _no_layers(publisher: ParticipantId) -> Sequence[Source]:
    return ()


class SlotState(enum.Enum):
    FREE = "free"  # negotiated inactive: may carry the next publisher of its kind
    ADDING = "adding"  # in the offer in flight: media starts when the answer arrives
    ACTIVE = "active"
    REMOVING = "removing"  # set inactive in the offer in flight


@dataclass(slots=True, eq=False)
class Slot:
    transceiver: RTCRtpTransceiver
    leg: Leg
    state: SlotState
    source: Source | None = None
    resumed_at: float | None = None  # when the budget last resumed its (video) leg

    @property
    def key(self) -> SourceKey | None:
        return None if self.source is None else (self.source.publisher, self.source.name)


def _layer_name(source: Source | None) -> str:
    return "-" if source is None else f"{source.name}/{source.layer or 'primary'}"


class PeerSession:
    def __init__(
        self,
        participant: ParticipantId,
        ice: IceConfig,
        send_offer: SendOffer,
        on_state: StateListener | None = None,
        *,
        direct_send: bool = True,
        remote_candidates: RemoteCandidates | None = None,
        on_audio_only: AudioOnlyListener | None = None,
        video_rank: VideoRank = _join_order,
        layers_of: LayersOf = _no_layers,
        save_data: bool = False,
        links: LinkMemory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``remote_candidates`` filters and caps what the client names (the relay's egress policy);
        default: the policy ``ice`` configures, counted by nobody. ``save_data``: the client asked for
        audio only. ``layers_of``: the layers a publisher's video may be lowered to when the client's
        budget is short (default: none, the chosen layer only). ``links``: where this participant's
        connections leave what they learned of a short downlink, and the next one starts from it."""
        self.participant = participant
        self.remote_candidates = (
            RemoteCandidates(ice.remote_policy()) if remote_candidates is None else remote_candidates
        )
        self.direct_send = direct_send
        self.pc = RTCPeerConnection(ice.server_configuration())
        self.receivers: dict[str, RTCRtpReceiver] = {}  # track name -> the participant's published track
        self.audio_ingress: AudioIngress | None = None
        self.video_ingress: VideoIngress | None = None
        self.screen_ingress: VideoIngress | None = None
        self.offers_sent = 0
        self._ice = ice
        self._send_offer = send_offer
        self._on_state = on_state
        self._lock = asyncio.Lock()
        self._plan: CodecPlan | None = None
        self._slots: list[Slot] = []
        self._wanted: dict[SourceKey, Source] = {}
        self._in_flight: dict[Slot, SlotState] | None = None
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[object]] = set()
        self._track_ids = itertools.count(1)
        self._simulcast: dict[str, tuple[str, ...]] = {}  # mid -> RIDs this participant publishes
        # publisher -> the video layer this participant wants (None: paused); absent: the primary one
        self._layer_choice: dict[ParticipantId, Source | None] = {}
        # publisher -> the layer the budget gives (the wanted one or lower; see apply_budget)
        self._budget_layer: dict[ParticipantId, Source] = {}
        self._layers_of = layers_of
        self._closed = False
        self._clock = clock
        self.downlink = DownlinkEstimator(clock=clock)
        self.rtx_budget = RtxBudget(RTX_SHARE * self.downlink.bitrate)
        self.allocator = VideoAllocator()
        self.save_data = save_data
        self.audio_only: AudioOnlyReason | None = None
        self._on_audio_only = on_audio_only
        self._video_rank = video_rank
        self._meters: dict[Source, RateMeter] = {}
        self._rtx_meter = RateMeter()
        self._probe_meter = RateMeter()
        self._probe_slices: list[asyncio.TimerHandle] = []  # a probe's padding still to go out
        self._started_at = clock()
        self._links = links
        self._link_tag: bytes | None = None  # keyed digest of the client's address (see link_memory)
        self.started_known: KnownLink | None = None  # what this connection started from, if remembered
        self._decided = False  # the budget made its first decision
        self._planned_bps = 0.0  # what the last decision keeps sending: audio, retransmissions, its video
        self._budget_task: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._connection_changed)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def slots(self) -> tuple[Slot, ...]:
        return tuple(self._slots)

    # --- client offer -----------------------------------------------------------------------------------

    async def accept_offer(
        self,
        sdp: str,
        summary: SdpSummary,
        sources: Mapping[str, Source],
        layers: Mapping[str, Source] | None = None,
    ) -> str:
        """Answer the client's (validated) offer; ``sources`` (by track name, see :func:`track_names`)
        receive the tracks it publishes; ``layers`` (RID -> source, the primary one included) the camera
        layers of a simulcast publisher."""
        async with self._lock:
            video: RTCRtpTransceiver | None = None
            video_mid: str | None = None
            for section, name in zip(summary.media, track_names(summary), strict=True):
                transceiver = self.pc.addTransceiver(section.kind, direction="recvonly")
                restrict_codecs(transceiver)
                source = sources.get(name)
                if source is not None:
                    self._receive_into(transceiver.receiver, name, source, layers)
                    self.receivers[name] = transceiver.receiver
                    if name == "video":
                        video, video_mid = transceiver, section.mid
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except Exception as exc:  # aiortc raises ValueError/OperationError/... on what it cannot use
                raise BadRequest("offer: cannot be applied (codecs or transport)") from exc
            if layers and video is not None and video_mid is not None:
                self._receive_layers(sdp, video, video_mid, tuple(layers))
            answer = await self.pc.createAnswer()
            with advertising(self._ice.host_addresses):
                await self.pc.setLocalDescription(answer)
            self._plan = CodecPlan.from_negotiated(self.pc)
            return accept_layers(str(self.pc.localDescription.sdp), self._simulcast)

    def _receive_layers(self, sdp: str, video: RTCRtpTransceiver, mid: str, rids: tuple[str, ...]) -> None:
        """Accept the publisher's simulcast: the RID extensions in the answer, its RTX tied to layers."""
        wanted = (RTP_STREAM_ID, REPAIRED_RTP_STREAM_ID)
        offered = [e for e in offered_header_extensions(sdp, mid) if e.uri in wanted]
        if not any(e.uri == RTP_STREAM_ID for e in offered):
            return  # no way to tell the layers apart: the answer declines simulcast (one layer comes)
        accept_header_extensions(video, offered)
        self._simulcast[mid] = rids
        codecs, _ = negotiated(video)
        rtx = next((c.payloadType for c in codecs if c.mimeType.lower() == "video/rtx"), None)
        repaired = next((e.id for e in offered if e.uri == REPAIRED_RTP_STREAM_ID), None)
        if rtx is not None and repaired is not None and self.video_ingress is not None:
            observe_rtp(video.receiver, rtx, self.video_ingress.observe_rtx(repaired))

    def _receive_into(
        self, receiver: RTCRtpReceiver, kind: str, source: Source, layers: Mapping[str, Source] | None
    ) -> None:
        """The publisher hop: packets from ``receiver`` become ``source``'s frames (``vIOP.media.ingress``)."""
        if kind == SCREEN:  # one layer; found by its SSRCs, so the camera's layers keep payload-type routing
            route_by_ssrc_only(receiver)
            self.screen_ingress = VideoIngress(
                receiver, self._guard(source.deliver), self._keyframe_of(source), self.round_trip_time
            )
            return
        if kind == "audio":
            self.audio_ingress = audio_ingress(receiver, self._guard(source.deliver))
            return

        keyframe_of = self._keyframe_of
        self.video_ingress = VideoIngress(
            receiver,
            self._guard(source.deliver),
            keyframe_of(source),
            self.round_trip_time,
            layers={rid: (self._guard(s.deliver), keyframe_of(s)) for rid, s in (layers or {}).items()},
        )

    def _keyframe_of(self, layer: Source) -> Callable[[], None]:
        """The publisher hop's keyframe request for ``layer`` (a lost frame), through its source's gate."""

        def request_keyframe() -> None:
            if not self._closed:
                layer.request_keyframe()

        return request_keyframe

    @property
    def simulcast(self) -> bool:
        """This participant publishes simulcast video (and the relay accepted it)."""
        return bool(self._simulcast)

    def round_trip_time(self) -> float | None:
        """RTT to this participant (seconds) as RTCP measured it on the streams we send it; None if unknown."""
        rtts = [rtt for slot in self._slots if (rtt := round_trip_time(slot.transceiver.sender)) is not None]
        return sum(rtts) / len(rtts) if rtts else None

    def _guard(self, sink: FrameSink) -> FrameSink:
        """Frames from a replaced connection must not reach a source the new one feeds."""

        def guarded(frame: EncodedFrame) -> None:
            if not self._closed:
                sink(frame)

        return guarded

    def request_layer_keyframe(self, rid: str) -> None:
        """Send a PLI upstream for one of this participant's simulcast layers (fire and forget)."""
        if self.video_ingress is not None and not self._closed:
            self.video_ingress.request_layer_keyframe(rid)

    def request_keyframe(self, kind: str) -> None:
        """Send a PLI upstream on this participant's ``kind`` receiver (a track name; fire and forget)."""
        receiver = self.receivers.get(kind)
        if receiver is None or self._closed:
            return
        self._spawn(request_keyframe(receiver))

    # --- subscriptions ----------------------------------------------------------------------------------

    def want(self, source: Source) -> None:
        """Subscribe this participant to ``source`` (negotiated in the next server offer). Wanted again
        before an :meth:`unwant` was negotiated, the m-line still carrying it resumes at once."""
        self._wanted[(source.publisher, source.name)] = source
        for slot in self._slots:
            if slot.state is SlotState.ACTIVE and slot.source is source:
                self._carry(slot, source)
        self.kick()

    def _carry(self, slot: Slot, source: Source) -> None:
        """``slot``'s leg carries ``source`` (for video: the layer chosen, within the budget)."""
        chosen = (
            self._budgeted(source.publisher, self._layer_choice.get(source.publisher, source))
            if source.name == "video"  # a camera (a screen share has one layer)
            else source
        )
        if slot.leg.kind == "video" and self._link_short:
            # Into a link known to be short, new video waits for the next budget decision rather than going
            # out at full rate until then (up to BUDGET_TICK).
            slot.leg.set_paused(True)
        slot.leg.move_to(chosen)

    def unwant(self, key: SourceKey) -> None:
        """Stop ``key``'s media to this participant now; the m-line goes inactive in the next offer."""
        self._wanted.pop(key, None)
        for slot in self._slots:
            if slot.key == key:
                slot.leg.move_to(None)
        self.kick()

    def choose_layer(self, publisher: ParticipantId, layer: Source | None) -> None:
        """Receive ``layer`` (one of ``publisher``'s video sources; None: pause their video) from now on,
        or a lower one of ``publisher``'s layers while the budget is short (see :meth:`apply_budget`).

        The switch happens at a keyframe of ``layer`` (see :meth:`Leg.move_to`); a slot not active yet
        starts with ``layer`` when it becomes active.
        """
        self._layer_choice[publisher] = layer
        for slot in self._slots:
            if slot.state is SlotState.ACTIVE and slot.key == (publisher, "video"):
                slot.leg.move_to(self._budgeted(publisher, layer))

    def layer_choice(self, publisher: ParticipantId) -> Source | None:
        """The layer chosen for ``publisher`` (None: paused or never chosen)."""
        return self._layer_choice.get(publisher)

    def _ladder(self, publisher: ParticipantId, wanted: Source) -> list[Source]:
        """The layers the budget may give for ``publisher``: the wanted one, then each lower one."""
        layers = list(self._layers_of(publisher))
        return layers[layers.index(wanted) :] if wanted in layers else [wanted]

    def _budgeted(self, publisher: ParticipantId, wanted: Source | None) -> Source | None:
        """What ``publisher``'s leg carries when the client wants ``wanted``: the layer the budget last
        gave if it is not above ``wanted``, else ``wanted``."""
        if wanted is None:
            return None
        given = self._budget_layer.get(publisher)
        return given if given is not None and given in self._ladder(publisher, wanted) else wanted

    def layer_of(self, publisher: ParticipantId) -> Source | None:
        """The video source of ``publisher`` this participant receives now (or is moving to)."""
        for slot in self._slots:
            if slot.state is SlotState.ACTIVE and slot.key == (publisher, "video"):
                return slot.leg.pending or slot.leg.source
        return None

    def describe_video(self) -> list[str]:
        """One line per video slot: whose layer it carries or waits for, paused or not, frames out, keyframe
        requests (diagnostics for a failed media test: ids, layer names and counters only, no PHI)."""
        lines = []
        for slot in self._slots:
            if slot.leg.kind != "video" or slot.source is None:
                continue
            leg = slot.leg
            chosen = self._layer_choice.get(slot.source.publisher, slot.source)
            lines.append(
                f"{slot.source.publisher} {slot.state.value}: on {_layer_name(leg.source)}, pending "
                f"{_layer_name(leg.pending)}, chosen {_layer_name(chosen)}, paused {leg.paused}, frames out "
                f"{leg.frames_out}, keyframe requests {leg.keyframe_requests_in} in / "
                f"{leg.keyframe_requests_passed} passed, source frames in "
                f"{leg.source.frames_in if leg.source is not None else '-'}"
            )
        return lines

    def kick(self) -> None:
        self._dirty = True
        if not self._closed and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._negotiate())

    async def _negotiate(self) -> None:
        while self._dirty and not self._closed:
            self._dirty = False
            async with self._lock:
                ready = (
                    self.pc.connectionState == "connected"
                    and self.pc.signalingState == "stable"
                    and self._in_flight is None
                    and self._plan is not None
                )
                if not ready:
                    return  # kicked again on connect / answer
                changes = self._reconcile()
                if not changes:
                    continue
                assert self._plan is not None
                offer = self._plan.apply(self.pc, await self.pc.createOffer())
                with advertising(self._ice.host_addresses):
                    await self.pc.setLocalDescription(offer)
                self._in_flight = changes
                # A server offer without the simulcast lines would make the browser stop all but one layer.
                sdp = accept_layers(str(self.pc.localDescription.sdp), self._simulcast)
            self.offers_sent += 1
            try:
                await self._send_offer(sdp)
            except Exception as exc:  # the socket is gone: the client reconnects with a new offer
                logger.info("server offer for %s not delivered: %s", self.participant, type(exc).__name__)
                return

    def _reconcile(self) -> dict[Slot, SlotState]:
        changes: dict[Slot, SlotState] = {}
        for slot in self._slots:
            if slot.state in (SlotState.ADDING, SlotState.ACTIVE) and (
                slot.key not in self._wanted or self._wanted[slot.key] is not slot.source
            ):
                slot.leg.move_to(None)
                slot.source = None
                slot.transceiver.direction = "inactive"
                slot.state = changes[slot] = SlotState.REMOVING
        carried = {slot.key for slot in self._slots if slot.state in (SlotState.ADDING, SlotState.ACTIVE)}
        for key, source in self._wanted.items():
            if key in carried:
                continue
            slot = self._free_slot(source.kind)
            slot.source = source
            slot.transceiver.direction = "sendonly"
            stream = source.publisher + (SCREEN_STREAM_SUFFIX if source.name == SCREEN else "")
            label_sender(slot.transceiver.sender, stream, f"{stream}-{next(self._track_ids)}")
            slot.state = changes[slot] = SlotState.ADDING
        return changes

    def _free_slot(self, kind: str) -> Slot:
        for slot in self._slots:
            if slot.state is SlotState.FREE and slot.leg.kind == kind:
                return slot
        leg = Leg(kind)
        transceiver = self.pc.addTransceiver(leg, direction="sendonly")
        if self.direct_send:
            leg.direct = DirectSender(transceiver.sender, kind, self.rtx_budget, self._clock)
        restrict_codecs(transceiver)
        on_keyframe_request(transceiver.sender, leg.request_keyframe)
        slot = Slot(transceiver, leg, SlotState.FREE)
        observe_feedback(transceiver.sender, self._report_listener(slot), self.downlink.on_remb)
        self._slots.append(slot)
        return slot

    def _report_listener(self, slot: Slot) -> Callable[[int, int, int], None]:
        def on_report(ssrc: int, fraction_lost: int, highest_sequence: int) -> None:
            resumed = slot.resumed_at
            if resumed is not None and self._clock() - resumed <= RESUMED_REPORTS:
                fraction_lost = 0  # see RESUMED_REPORTS
            self.downlink.on_report(ssrc, fraction_lost, highest_sequence)

        return on_report

    # --- client answer and candidates -------------------------------------------------------------------

    async def accept_answer(self, sdp: str) -> None:
        async with self._lock:
            if self._in_flight is None or self.pc.signalingState != "have-local-offer":
                raise Conflict("answer: no server offer is waiting for an answer")
            summary = summarize_sdp(sdp)
            offered = summarize_sdp(self.pc.localDescription.sdp)
            if [m.mid for m in summary.media] != [m.mid for m in offered.media]:
                raise BadRequest("answer: its m-lines do not match the offer")
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            except Exception as exc:
                raise BadRequest("answer: cannot be applied") from exc
            for slot, change in self._in_flight.items():
                if change is SlotState.ADDING and slot.state is SlotState.ADDING:
                    slot.state = SlotState.ACTIVE
                    if slot.leg.direct is not None:
                        slot.leg.direct.configure(slot.transceiver)
                    source = slot.source
                    if source is not None and self._wanted.get((source.publisher, source.name)) is source:
                        self._carry(slot, source)
                elif change is SlotState.REMOVING and slot.state is SlotState.REMOVING:
                    slot.state = SlotState.FREE
            self._in_flight = None
        self.kick()

    async def add_candidate(self, line: str | None, sdp_mid: str | None) -> None:
        async with self._lock:
            if self.pc.remoteDescription is None:
                raise Conflict("candidate: send an offer first")
            if line is None:
                if self.remote_candidates.may_end:
                    await self.pc.addIceCandidate(None)
                return
            candidate = parse_candidate(line, sdp_mid)
            if not self.remote_candidates.admit_line(line):
                return  # dropped silently: a browser must not fail over a candidate the server ignores
            # BUNDLE: aiortc only feeds candidates addressed to the first m-line's transport.
            transceivers = self.pc.getTransceivers()
            candidate.sdpMid = transceivers[0].mid if transceivers else sdp_mid
            candidate.sdpMLineIndex = 0
            await self.pc.addIceCandidate(candidate)

    # --- lifecycle --------------------------------------------------------------------------------------

    # --- budgets ----------------------------------------------------------------------------------------

    def set_save_data(self, on: bool) -> None:
        """The client chose audio only (or video again); applied at once."""
        self.save_data = on
        if not self._closed:
            self.apply_budget()

    def apply_budget(self) -> None:
        """One budget decision: each video leg's layer (or pause), the RTX rate, audio-only changes."""
        now = self._clock()
        # A video leg follows the client's choice (set_subscriptions): the layer it wants, or a lower one of
        # the same publisher when the budget is short; a leg on none (paused by the client's own grid)
        # costs nothing and is not the allocator's to resume. Every layer's cost is measured at its source
        # (the relay receives them all), so the allocator can price a layer before moving a leg to it.
        audio: list[tuple[Slot, Source]] = []
        video: list[tuple[Slot, list[Source]]] = []
        for slot in self._slots:
            if slot.state is not SlotState.ACTIVE or slot.source is None:
                continue
            if slot.leg.kind == "audio":
                audio.append((slot, slot.source))
                continue
            if slot.source.name == SCREEN:  # one layer, never in the client's grid: always wanted
                if (slot.leg.pending or slot.leg.source) is not None:
                    video.append((slot, [slot.source]))
                continue
            wanted = self._layer_choice.get(slot.source.publisher, slot.source)
            if wanted is not None and (slot.leg.pending or slot.leg.source) is not None:
                video.append((slot, self._ladder(slot.source.publisher, wanted)))
        rate: dict[Source, float] = {}
        for source in [s for _, s in audio] + [s for _, ladder in video for s in ladder]:
            if source not in rate:
                meter = self._meters.get(source)
                if meter is None:
                    meter = self._meters[source] = RateMeter()
                rate[source] = meter.update(now, source.octets_in, source.packets_in)
        for gone in [k for k in self._meters if k not in rate]:
            del self._meters[gone]
        video.sort(key=lambda entry: -self._rank(entry[1][0]))
        audio_bps = sum(rate[s] for _, s in audio)
        rtx_octets = sum(s.leg.direct.rtx_octets_sent for s in self._slots if s.leg.direct is not None)
        rtx_bps = self._rtx_meter.update(now, rtx_octets, 0)
        probe_octets = sum(s.leg.direct.probe_octets_sent for s in self._slots if s.leg.direct is not None)
        # (whole padding packets: their headers count as the link sees them)
        padding_bps = self._probe_meter.update(now, probe_octets, probe_octets // PADDING_OCTETS)
        rtx_bps += padding_bps  # padding loads the link like RTX
        forwarded = sum(
            rate.get(slot.leg.source, 0.0)
            for slot, _ in video
            if slot.leg.source is not None and not slot.leg.paused
        )
        self.downlink.on_sent(audio_bps + forwarded + rtx_bps, padding_bps=padding_bps)
        link = self.downlink.link_view(
            audio_bps=audio_bps,
            rtx_bps=rtx_bps,
            grace_over=now - self._started_at >= FEEDBACK_GRACE,
            # A paced probe pads up to a whole rate: the padding of the last one (still in the smoothed
            # meter) must not count as what is sent, or the next one would send less than it tries.
            sent_bps=audio_bps + forwarded + rtx_bps - padding_bps,
        )
        candidates = [
            VideoCandidate(slot.key, rate[ladder[0]], tuple(rate[s] for s in ladder[1:]))
            for slot, ladder in video
            if slot.key is not None
        ]
        self.allocator.retain({s.key for s in self._slots if s.source is not None and s.leg.kind == "video"})
        allocation = self.allocator.decide(now, link, candidates, save_data=self.save_data)
        self._decided = True
        # (Video on trial is not carried yet: a step up a probe allowed may fail within seconds.)
        self._planned_bps = audio_bps + rtx_bps - padding_bps
        for candidate in candidates:
            level = allocation.level(candidate.key)
            if level is not None and not self.allocator.on_trial(candidate.key):
                self._planned_bps += candidate.cost(level)
        publishers = {s.source.publisher for s in self._slots if s.source is not None}
        for left in [pid for pid in self._budget_layer if pid not in publishers]:
            del self._budget_layer[left]
        for slot, ladder in video:
            level = allocation.level(slot.key)
            if level is None:
                slot.leg.set_paused(True)
                continue
            target = ladder[min(level, len(ladder) - 1)]
            if target.name == "video":
                self._budget_layer[target.publisher] = target
            if slot.leg.paused and slot.leg.source is not target:
                slot.leg.move_to(None)  # resumed on another layer: start on it, at its keyframe
                slot.leg.move_to(target)
            elif (slot.leg.pending or slot.leg.source) is not target:
                slot.leg.move_to(target)  # at a keyframe of the target; the picture never stops
            if slot.leg.paused:
                slot.resumed_at = now
            slot.leg.set_paused(False)
        if allocation.probe_stop:
            self._stop_probe()
        if allocation.probe_octets > 0:
            self._probe(allocation.probe_key, allocation.probe_octets, allocation.probe_bps)
        self.rtx_budget.set_rate(RTX_SHARE * link.estimate_bps)
        if allocation.reason != self.audio_only:
            self.audio_only = allocation.reason
            if self._on_audio_only is not None:
                self._on_audio_only(allocation.reason)

    @property
    def _link_short(self) -> bool:
        """The link cannot carry all video: on audio only for bandwidth, or started from a short link."""
        return self.audio_only is AudioOnlyReason.BANDWIDTH or (
            self.started_known is not None and not self._decided
        )

    def learned_link(self) -> KnownLink | None:
        """What this connection found its link to carry, when it found it short (None: not short, no
        feedback to go by, or on "save data", whose audio only is the person's choice, not the link's)."""
        short = self.allocator.ceiling is not None or self.audio_only is AudioOnlyReason.BANDWIDTH
        known = self.downlink.informed or self.downlink.known
        if not short or not known or self.save_data or self._planned_bps <= 0:
            return None
        # At most what the last decision keeps (or a paced probe proved), with the headroom the budget keeps
        # (so that much video fits again): after a cut the loss-based estimate stays well above what a short
        # link carries (measured: 402 kbit/s on audio only behind a 250 kbit/s cap), and what is sent lags.
        carried = max(self._planned_bps, self.allocator.proven)
        estimate = int(min(self.downlink.bitrate, carried / HEADROOM))
        ceiling = self.allocator.ceiling
        return KnownLink(estimate, ceiling if ceiling is not None else carried)

    def _start_from_memory(self) -> None:
        """Connected: a connection of this participant from the same address that found the link short
        leaves its lesson; this one starts from it, with every video leg waiting for the first decision."""
        if self._links is None:
            return
        host = nominated_remote_host(self.pc)
        if host is None:
            return
        self._link_tag = self._links.tag(host)
        known = self._links.recall(self.participant, self._link_tag)
        if known is None:
            return
        self.started_known = known
        self.downlink.start_known(known.estimate_bps)
        self.allocator.start_known(known.ceiling_bps)
        self.rtx_budget.set_rate(RTX_SHARE * known.estimate_bps)
        for slot in self._slots:
            if slot.leg.kind == "video":
                slot.leg.set_paused(True)

    def _rank(self, source: Source) -> float:
        """Which video the budget keeps first: a screen share, then the caller's order of cameras."""
        return SCREEN_PRIORITY if source.name == SCREEN else self._video_rank(source.publisher)

    def _probe(self, key: Hashable, octets: int, bps: float) -> None:
        """Pad the link with ``octets`` at ``bps``, paced in 20 ms slices (the allocator's bandwidth probe)."""
        slot = next((s for s in self._slots if s.key == key and s.leg.direct is not None), None)
        if slot is None or slot.leg.direct is None:
            return
        direct, loop = slot.leg.direct, asyncio.get_running_loop()
        # A slice carries at least one whole padding packet: a slow (paced) probe goes out less often
        # rather than one packet per 20 ms, which would send several times the rate asked for (measured:
        # 22 kbit/s asked, ~120 kbit/s sent).
        # The allocator counts what the link carries: each padding packet's headers are part of it.
        payload_share = PADDING_OCTETS / (PADDING_OCTETS + PACKET_OVERHEAD_BYTES)
        bps, octets = bps * payload_share, int(octets * payload_share)
        seconds = max(PROBE_SLICE, 8 * PADDING_OCTETS / bps) if bps > 0 else PROBE_SLICE
        per_slice = max(PADDING_OCTETS, int(bps * seconds / 8))
        self._stop_probe()
        self._probe_slices = [
            loop.call_later(i * seconds, direct.pad, min(per_slice, octets - i * per_slice))
            for i in range(max(1, -(-octets // per_slice)))
        ]

    def _stop_probe(self) -> None:
        """Padding of a probe still to go out is not sent (it failed early, or a new one starts)."""
        for handle in self._probe_slices:
            handle.cancel()
        self._probe_slices = []

    async def _run_budget(self) -> None:
        while not self._closed:
            await asyncio.sleep(BUDGET_TICK)
            try:
                self.apply_budget()
            except Exception:  # a bug here must not stop media: log it, keep the last decision
                logger.exception("media budget tick failed")

    def _connection_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.kick()
            if self._budget_task is None and not self._closed:
                self._started_at = self._clock()  # the grace for feedback runs from the connection
                try:
                    self._start_from_memory()
                except Exception:  # a lesson is an optimisation: never let it stop the connection's media
                    logger.exception("starting from a remembered link failed")
                self._budget_task = asyncio.get_running_loop().create_task(self._run_budget())
        if self._on_state is not None and not self._closed:
            self._on_state(state)

    def _spawn(self, coro: Awaitable[object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_done)

    def _side_done(self, task: asyncio.Task[object]) -> None:
        self._side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("media side task failed: %r", task.exception())

    def stop_media(self) -> None:
        """Cut every stream to and from this participant now (synchronous)."""
        if not self._closed and self._links is not None and self._link_tag is not None:
            learned = self.learned_link()
            if learned is not None:
                self._links.remember(self.participant, self._link_tag, learned)
        self._closed = True
        self._stop_probe()
        for slot in self._slots:
            slot.leg.move_to(None)
        self._wanted.clear()
        for ingress in (self.video_ingress, self.screen_ingress):
            if ingress is not None:
                ingress.close()

    async def close(self) -> None:
        self.stop_media()
        current = asyncio.current_task()
        for task in [self._task, self._budget_task, *self._side_tasks]:
            if task is not None and task is not current and not task.done():
                task.cancel()
        for slot in self._slots:
            slot.leg.stop()
        await close_peer_connection(self.pc, CLOSE_TIMEOUT)
