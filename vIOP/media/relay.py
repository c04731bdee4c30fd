"""The media relay (SFU): one server-side peer connection per participant, encoded frames fanned out.

Independent of the WebSocket layer: the signaling layer calls the ``async`` methods with what clients
sent and delivers what :data:`SignalCallback` hands it (server offers). Every participant publishes audio
and video and receives every other participant's; nothing is decoded or re-encoded (encoded frames are
forwarded through the hooks in ``aiortc_internals``), so every leg negotiates VP8 + Opus only.

Ordering contract for the signaling layer:
- ``add_participant`` when admitted, then pass the client's ``offer`` to :meth:`MediaRelay.handle_offer`
  and send back the answer it returns. A later client offer replaces the connection (reconnect).
- :data:`SignalCallback` is called with server offers once the connection is up; pass the client's
  ``answer`` to :meth:`MediaRelay.handle_answer`. Trickled client candidates go to
  :meth:`MediaRelay.add_remote_candidate`; the server's candidates are always inside its SDP.

Simulcast: a publisher whose offer carries RID simulcast (``a=simulcast:send``, as a browser's
``sendEncodings`` make it) gets one :class:`Source` per layer (``participant.sources["video"]`` is the first
listed, the one subscribers receive by default); :meth:`MediaRelay.set_layer` picks, per subscriber and
publisher, ``"high"``, ``"low"`` or ``"paused"``. A publisher that sends one layer has one source, and every
choice but ``"paused"`` means that one.

Per subscriber, the relay keeps what it sends within the client's estimated downlink (see
``vIOP.media.peer`` and ``vIOP.media.budget``): audio always flows, video legs move to a publisher's lower
layer (below the one ``set_layer`` chose) or pause when they do not fit,
and :data:`AudioOnlyCallback` says when a client receives no video and why (its bandwidth, or its own
"save data" choice, :meth:`MediaRelay.set_save_data`). Which video is kept first is :data:`VideoPriority`
(a hook for active speaker; default: the publisher who joined first).

Remote candidates (in offers, answers and trickled) pass the egress policy of :mod:`vIOP.media.egress`
first: a refused one is dropped without an error (counted in ``viop_ice_remote_candidates_dropped_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Final

from vIOP.errors import BadRequest, Conflict, NotFound
from vIOP.ids import ParticipantId
from vIOP.media.aiortc_internals import check_internals
from vIOP.media.budget import AudioOnlyReason
from vIOP.media.egress import DropListener, DropReason, RemoteCandidates
from vIOP.media.fanout import Source
from vIOP.media.frames import AUDIO_CODEC, VIDEO_CODEC
from vIOP.media.ice import IceConfig
from vIOP.media.keyframes import DEFAULT_KEYFRAME_INTERVAL
from vIOP.media.link_memory import LinkMemory
from vIOP.media.peer import SCREEN, PeerSession, track_names
from vIOP.media.sdp import SdpSummary, summarize_sdp
from vIOP.media.simulcast import offered_layers
from vIOP.media.speaker import DominantSpeaker, SpeakerChange, video_rank
from vIOP.metrics import ICE_REMOTE_CANDIDATES_DROPPED
from vIOP.rooms.limits import MAX_CANDIDATE_CHARS, MAX_SDP_CHARS
from vIOP.rooms.share import NoScreenTrack

logger = logging.getLogger(__name__)

KINDS: Final = ("audio", "video")
TRACKS: Final = ("audio", "video", SCREEN)  # what a participant may publish: microphone, camera, screen
_PUBLISHING: Final = frozenset({"sendonly", "sendrecv"})
_DIRECTIONS: Final = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
_CODEC_FOR: Final = {"audio": AUDIO_CODEC.lower(), "video": VIDEO_CODEC.lower()}
LAYERS: Final = ("high", "low", "paused")
# The low layer serves a tile up to 4/3 of its height (stretched that little, it looks as sharp as the high
# layer scaled down); until its size is known it is taken to be 180 pixels (a 640x360 camera's half).
ASSUMED_LOW_HEIGHT: Final = 180


@dataclass(frozen=True, slots=True)
class RenegotiationOffer:
    """A server-initiated offer for one participant; answer it with :meth:`MediaRelay.handle_answer`."""

    sdp: str


SignalCallback = Callable[[ParticipantId, RenegotiationOffer], Awaitable[None]]
ConnectionStateCallback = Callable[[ParticipantId, str], None]
SpeakerCallback = Callable[[tuple[ParticipantId, ...], SpeakerChange[ParticipantId]], None]
"""(everyone with media in the room, the change): the room's dominant speaker moved. Called on the event
loop from the media path: it must not block (queue the message, do not await a socket)."""
AudioOnlyCallback = Callable[[ParticipantId, AudioOnlyReason | None], None]
"""(subscriber, why it now receives no video; None: video flows again). Called on changes only."""
VideoPriority = Callable[[ParticipantId, ParticipantId], float]
"""(subscriber, publisher) -> how much that video is worth keeping; higher first, ties: join order."""


@dataclass(frozen=True, slots=True)
class RelayStats:
    participants: int
    sources: int
    legs: int
    frames_in: int
    frames_out: int
    keyframe_requests: int


@dataclass(slots=True, eq=False)
class _Participant:
    pid: ParticipantId
    room: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: PeerSession | None = None
    sources: dict[str, Source] = field(default_factory=dict)
    # simulcast: RID -> source of each video layer, the primary (``sources["video"]``) included; else empty
    layers: dict[str, Source] = field(default_factory=dict)
    # what this participant, as a subscriber, asked for per publisher (set_subscriptions): the layer its
    # screen needs. A downlink allocator may give less (lower, or paused), never more.
    wanted_layers: dict[ParticipantId, str] = field(default_factory=dict)
    grid: dict[ParticipantId, tuple[int, int]] | None = None  # its last set_subscriptions (None: never sent)
    forwarding: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(KINDS, True))
    save_data: bool = False  # the client's own choice: audio only; outlives a reconnect
    sharing: bool = False  # their screen source goes to the room (set_sharing); outlives a reconnect
    # Issue 15: the media group within the room (None: the room's group; else a private breakout's key).
    # Media flows only between participants of the same room and group.
    group: str | None = None

    @property
    def scope(self) -> tuple[str | None, str | None]:
        return (self.room, self.group)


def published_kinds(summary: SdpSummary) -> set[str]:
    """Validate a client's offer (before anything changes) and return the tracks it sends (see
    :data:`TRACKS`: a second video section is the screen share)."""
    kinds = [m.kind for m in summary.media]
    if (
        not kinds
        or any(k not in KINDS for k in kinds)
        or kinds.count("audio") > 1
        or kinds.count("video") > 2
    ):
        raise BadRequest(
            "offer: needs at most one audio section and two video sections (camera, screen) and nothing else"
        )
    if not summary.has_credentials:
        raise BadRequest("offer: every section needs ICE credentials and a DTLS fingerprint")
    if any(m.direction not in _DIRECTIONS for m in summary.media):
        # aiortc cannot answer a section without one (its createAnswer fails on it).
        raise BadRequest("offer: every section needs a direction (sendrecv, sendonly, recvonly or inactive)")
    mids = [m.mid for m in summary.media]
    if None in mids or set(summary.bundle) != set(mids):
        raise BadRequest("offer: all sections must be bundled (max-bundle)")
    for m in summary.media:
        if _CODEC_FOR[m.kind] not in m.codecs:
            raise BadRequest(f"offer: {m.kind} must offer {_CODEC_FOR[m.kind]}")
    names = track_names(summary)
    for m, name in zip(summary.media, names, strict=True):
        if name == SCREEN and m.direction in _PUBLISHING and not m.ssrcs:
            # The share is told from the camera by its SSRCs (both use the VP8 payload type).
            raise BadRequest("offer: the screen-share section must declare its SSRCs (a=ssrc)")
    return {name for m, name in zip(summary.media, names, strict=True) if m.direction in _PUBLISHING}


class MediaRelay:
    def __init__(
        self,
        ice: IceConfig,
        *,
        on_signal: SignalCallback,
        on_connection_state: ConnectionStateCallback | None = None,
        keyframe_interval: float = DEFAULT_KEYFRAME_INTERVAL,
        direct_send: bool = True,
        on_active_speaker: SpeakerCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_audio_only: AudioOnlyCallback | None = None,
        video_priority: VideoPriority | None = None,
    ) -> None:
        """``direct_send=False`` keeps aiortc's own sender loop (slower; for comparison and fallback).
        ``on_active_speaker`` hears each room's dominant-speaker changes (``clock`` times them).
        ``video_priority``: which video a congested subscriber keeps first; default: the room's speaker,
        then its recent speakers, newest first (what the person is listening to)."""
        check_internals()
        self._on_audio_only = on_audio_only
        self._video_priority = video_priority or self._speaker_priority
        self._direct_send = direct_send
        self._ice = ice
        self._remote_policy = ice.remote_policy()
        self._on_signal = on_signal
        self._on_connection_state = on_connection_state
        self._keyframe_interval = keyframe_interval
        self._participants: dict[ParticipantId, _Participant] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._on_active_speaker = on_active_speaker
        self._clock = clock
        # by (room, group): a breakout's voices never move the group's speaker, nor the reverse
        self._speakers: dict[tuple[str | None, str | None], DominantSpeaker[ParticipantId]] = {}
        # what a participant's connection learned of a short downlink, for their next one (a reconnect)
        self.links = LinkMemory()

    # --- membership -------------------------------------------------------------------------------------

    async def add_participant(self, pid: ParticipantId, room: str | None = None) -> None:
        """``pid`` exchanges media only with participants added with the same ``room`` (one process
        relays many rooms: media must never cross them). ``None`` is one shared group, for a relay that
        serves a single room (tests, benchmarks)."""
        if pid in self._participants:
            raise Conflict("participant already has media")
        self._participants[pid] = _Participant(pid, room)

    async def remove_participant(self, pid: ParticipantId) -> None:
        """Stop every stream to and from ``pid`` at once, then close their peer connection."""
        participant = self._participants.pop(pid, None)
        if participant is None:
            raise NotFound("participant has no media")
        self._forget_speaker(participant)
        for layer in participant.layers.values():
            layer.close()
        for kind, source in participant.sources.items():
            source.close()
            for other in self._room_of(participant):
                if other.session is not None:
                    other.session.unwant((pid, kind))
        if participant.session is not None:
            participant.session.stop_media()
            await participant.session.close()

    def participants(self) -> tuple[ParticipantId, ...]:
        return tuple(self._participants)

    def connection_ended(self, pid: ParticipantId) -> bool:
        """``pid``'s peer connection has closed or failed (the client closed it: a drain's move is over for
        them), or they have none."""
        participant = self._participants.get(pid)
        if participant is None or participant.session is None:
            return True
        return participant.session.pc.connectionState in ("closed", "failed")

    # --- negotiation ------------------------------------------------------------------------------------

    async def handle_offer(self, pid: ParticipantId, sdp: str) -> str:
        """A client's offer opens (or replaces) its peer connection; returns the answer SDP."""
        participant = self._get(pid)
        if len(sdp) > MAX_SDP_CHARS:
            raise BadRequest("offer: too large")
        # The new connection's candidate budget starts here; aiortc never sees a candidate it refuses.
        remote_candidates = RemoteCandidates(self._remote_policy, self._drop_listener(pid))
        sdp = remote_candidates.filter_sdp(sdp)
        summary = summarize_sdp(sdp)
        publishes = published_kinds(summary)
        video_mid = next((m.mid for m in summary.media if m.kind == "video"), None)
        rids = offered_layers(sdp).get(video_mid or "", ()) if "video" in publishes else ()
        async with participant.lock:
            if self._participants.get(pid) is not participant:
                raise NotFound("participant has no media")
            session = PeerSession(
                pid,
                self._ice,
                self._sender_for(pid),
                self._state_listener(pid),
                direct_send=self._direct_send,
                remote_candidates=remote_candidates,
                on_audio_only=self._audio_only_listener(pid),
                video_rank=functools.partial(self._video_priority, pid),
                layers_of=self._layers_best_first,
                save_data=participant.save_data,
                links=self.links,
            )
            sources = {
                name: participant.sources.get(name)
                or Source(
                    pid,
                    "audio" if name == "audio" else "video",
                    keyframe_interval=self._keyframe_interval,
                    forwarding=participant.forwarding.get(name, True),  # a host mute is of the camera
                    on_level=functools.partial(self._heard, participant) if name == "audio" else None,
                    name=name,
                )
                for name in publishes
            }
            layers = self._layer_sources(participant, sources.get("video"), rids)
            try:
                answer = await session.accept_offer(sdp, summary, sources, layers)
            except BaseException:
                await session.close()
                raise
            if not session.simulcast:
                layers = {}
            self._replace_session(participant, session, sources)
            self._replace_layers(participant, session, layers)
            self._apply_grid(participant)  # the new connection receives what this screen shows
            for other in self._room_of(participant):  # and the others get this publisher as their tile needs
                if other is not participant:
                    self._apply_grid(other, (participant,))
            return answer

    def _layer_sources(
        self, participant: _Participant, primary: Source | None, rids: tuple[str, ...]
    ) -> dict[str, Source]:
        """One source per simulcast layer: the primary for the first RID, the others kept by RID."""
        if primary is None or len(rids) < 2:
            return {}
        layers = {rids[0]: primary}
        for rid in rids[1:]:
            existing = participant.layers.get(rid)
            layers[rid] = (
                existing
                if existing is not None and existing is not primary
                else Source(
                    participant.pid,
                    "video",
                    keyframe_interval=self._keyframe_interval,
                    forwarding=participant.forwarding["video"],
                    layer=rid,
                )
            )
        return layers

    def _replace_layers(
        self, participant: _Participant, session: PeerSession, layers: dict[str, Source]
    ) -> None:
        """Bind each layer to the new connection; legs on a layer no longer sent go back to the primary."""
        primary = participant.sources.get("video")
        kept = set(map(id, layers.values()))
        for old in participant.layers.values():
            if id(old) in kept or old is primary:
                continue
            for other in self._room_of(participant):
                if other.session is not None and other.session.layer_choice(participant.pid) is old:
                    other.session.choose_layer(participant.pid, primary)
            for leg in old.legs:
                leg.move_to(primary)
            old.close()
        participant.layers = layers
        for rid, layer in layers.items():
            layer.layer = rid
            layer.bind_upstream(functools.partial(session.request_layer_keyframe, rid))
        if primary is not None and not layers:
            primary.layer = None

    def _replace_session(
        self, participant: _Participant, session: PeerSession, sources: dict[str, Source]
    ) -> None:
        old = participant.session
        participant.session = session
        if old is not None:
            old.stop_media()
            self._close_later(old)
            if old.audio_only is not None and self._on_audio_only is not None:
                self._on_audio_only(participant.pid, None)  # the new connection starts with video
        pid = participant.pid
        room = [o for o in self._room_of(participant) if o.pid != pid]
        others = [o.session for o in room if o.session is not None]
        for kind in TRACKS:
            source = sources.get(kind)
            previous = participant.sources.get(kind)
            if source is None:
                if previous is not None:  # no longer published
                    del participant.sources[kind]
                    previous.close()
                    if kind == "audio":
                        self._forget_speaker(participant)
                    for other in others:
                        other.unwant((pid, kind))
                continue
            participant.sources[kind] = source
            source.bind_upstream(functools.partial(session.request_keyframe, kind))
            if previous is None and self._offered(participant, source):
                for other in others:
                    other.want(source)
        for other_participant in room:
            for source in other_participant.sources.values():
                if self._offered(other_participant, source):
                    session.want(source)

    @staticmethod
    def _offered(publisher: _Participant, source: Source) -> bool:
        """Whether the room receives ``source``: the camera and microphone always, the screen while shared."""
        return source.name != SCREEN or publisher.sharing

    async def handle_answer(self, pid: ParticipantId, sdp: str) -> None:
        if len(sdp) > MAX_SDP_CHARS:
            raise BadRequest("answer: too large")
        session = self._session(pid)
        await session.accept_answer(session.remote_candidates.filter_sdp(sdp))

    async def add_remote_candidate(self, pid: ParticipantId, candidate: Mapping[str, object] | None) -> None:
        """``candidate`` is a browser ``RTCIceCandidateInit`` dict; ``None`` or ``""`` ends the candidates."""
        session = self._session(pid)
        if candidate is None:
            await session.add_candidate(None, None)
            return
        line = candidate.get("candidate")
        mid = candidate.get("sdpMid", candidate.get("sdp_mid"))
        if not isinstance(line, str) or len(line) > MAX_CANDIDATE_CHARS:
            raise BadRequest("candidate: 'candidate' must be a string of at most 1024 characters")
        if mid is not None and not isinstance(mid, str):
            raise BadRequest("candidate: 'sdpMid' must be a string")
        await session.add_candidate(line or None, mid)

    # --- host controls ----------------------------------------------------------------------------------

    def set_forwarding(self, pid: ParticipantId, kind: str, enabled: bool) -> None:
        """Server-enforced: while off, nobody receives ``pid``'s ``kind`` (host mute)."""
        if kind not in KINDS:
            raise BadRequest("kind must be 'audio' or 'video'")
        participant = self._get(pid)
        participant.forwarding[kind] = enabled
        source = participant.sources.get(kind)
        if source is not None:
            source.set_forwarding(enabled)
        if kind == "video":
            for layer in participant.layers.values():
                layer.set_forwarding(enabled)
        if kind == "audio" and not enabled:
            self._forget_speaker(participant)  # nobody hears them: they cannot hold the floor

    def set_audio_forwarding(self, pid: ParticipantId, enabled: bool) -> None:
        self.set_forwarding(pid, "audio", enabled)

    # --- screen share -----------------------------------------------------------------------------------

    def set_sharing(self, pid: ParticipantId, on: bool) -> None:
        """Send ``pid``'s screen source to everyone else in the room (``on``), or stop it now (the m-lines
        go inactive in each subscriber's next offer). Who may share is the caller's rule
        (``vIOP.rooms.share``); starting needs a connection that publishes a screen section."""
        participant = self._get(pid)
        screen = participant.sources.get(SCREEN)
        if on and screen is None:
            raise NoScreenTrack("offer a screen-share section first (a second video section)")
        if on == participant.sharing:
            return
        participant.sharing = on
        if screen is None:
            return
        for other in self._room_of(participant):
            if other is participant or other.session is None:
                continue
            if on:
                other.session.want(screen)
            else:
                other.session.unwant((pid, SCREEN))

    def is_sharing(self, pid: ParticipantId) -> bool:
        participant = self._participants.get(pid)
        return participant is not None and participant.sharing

    # --- subscriber choices -------------------------------------------------------------------------------

    def set_save_data(self, pid: ParticipantId, on: bool) -> None:
        """The participant chose audio only (``on``) or video again; kept across reconnects."""
        participant = self._get(pid)
        participant.save_data = on
        if participant.session is not None:
            participant.session.set_save_data(on)

    def set_group(self, pid: ParticipantId, group: str | None) -> None:
        """Move ``pid`` into media group ``group`` of its room (see :meth:`set_groups`)."""
        self.set_groups({pid: group})

    def set_groups(self, groups: Mapping[ParticipantId, str | None]) -> None:
        """Move each participant named into its media group of its room (issue 15: a private breakout's
        key; None: back to the room's group), all at once and keeping their peer connections. Media with
        those they no longer share a group with stops at once both ways (the legs carry nothing from now;
        the m-lines go inactive in the next server offers); media with new group peers is negotiated in the
        next server offers, with keyframes asked for as for anyone new. Two who move together keep what
        flows between them. Participants the relay does not carry are ignored."""
        movers = [
            p
            for pid, group in groups.items()
            if (p := self._participants.get(pid)) is not None and p.group != group
        ]
        before = {p.pid: self._peers(p) for p in movers}
        for p in movers:
            self._forget_speaker(p)
        for p in movers:
            p.group = groups[p.pid]
        for p in movers:
            after = self._peers(p)
            for other in before[p.pid] - after:
                self._exchange(p, other, want=False)
            for other in after - before[p.pid]:
                self._exchange(p, other, want=True)
        for p in movers:
            self._apply_grid(p)
            for other in self._room_of(p):
                if other is not p:
                    self._apply_grid(other, (p,))

    def group_of(self, pid: ParticipantId) -> str | None:
        return self._get(pid).group

    def _peers(self, participant: _Participant) -> set[_Participant]:
        return {o for o in self._room_of(participant) if o is not participant}

    def _exchange(self, one: _Participant, other: _Participant, *, want: bool) -> None:
        """Subscribe ``one`` and ``other`` to each other's sources, or unsubscribe them."""
        for a, b in ((one, other), (other, one)):
            if b.session is None:
                continue
            for kind, source in a.sources.items():
                if want:
                    if self._offered(a, source):  # a screen only while shared
                        b.session.want(source)
                else:
                    b.session.unwant((a.pid, kind))

    def room_of(self, pid: ParticipantId) -> str | None:
        """The room ``pid``'s media belongs to (as given to :meth:`add_participant`); None if not carried."""
        participant = self._participants.get(pid)
        return None if participant is None else participant.room

    def audio_only(self, pid: ParticipantId) -> AudioOnlyReason | None:
        """Why ``pid`` receives no video now (None: it does, or it has no connection)."""
        session = self._get(pid).session
        return None if session is None else session.audio_only

    def is_forwarding(self, pid: ParticipantId, kind: str) -> bool:
        return self._get(pid).forwarding.get(kind, False)

    # --- per-subscriber layers --------------------------------------------------------------------------

    def set_layer(self, subscriber: ParticipantId, publisher: ParticipantId, layer: str) -> Source | None:
        """What ``subscriber`` receives of ``publisher``'s video: ``"high"``, ``"low"`` or ``"paused"``.

        The move happens at a keyframe of the target layer (asked for now); the subscriber's stream stays
        continuous (its leg re-times). Returns the source chosen (None: paused, or no video published yet:
        then the subscriber gets the default layer when it comes). A one-layer publisher's only layer is
        both high and low. Keyframe requests from the subscriber then go to the layer it receives.
        """
        if layer not in LAYERS:
            raise BadRequest("layer must be 'high', 'low' or 'paused'")
        viewer = self._get(subscriber)
        source = self._participants.get(publisher)
        if source is None or source is viewer or source.scope != viewer.scope:
            raise NotFound("no such publisher in this room")
        session = viewer.session
        if session is None:
            raise Conflict("send an offer first")
        target = None if layer == "paused" else self._layer(source, layer)
        if layer == "paused" or target is not None:
            session.choose_layer(publisher, target)
        return target

    def set_subscriptions(
        self,
        subscriber: ParticipantId,
        tiles: Mapping[ParticipantId, tuple[int, int]],
        *,
        not_started: Collection[ParticipantId] = (),
    ) -> None:
        """What ``subscriber`` shows: ``{publisher: (width, height)}`` of each visible video tile, in device
        pixels. Publishers not listed are paused for it; a tile the low layer fills gets the low layer.

        Every publisher named must share the subscriber's room (else :class:`NotFound`, and nothing
        changes), or be in ``not_started``: people the caller knows are in the room but have no media here
        yet. The grid is kept: whoever starts publishing later gets the layer their tile needs (paused
        without one), and so does every publisher after this subscriber reconnects. A tile of someone in
        another group of the room (a breakout) is kept for when they are back and applies nothing now.
        """
        viewer = self._get(subscriber)
        if viewer.session is None:
            raise Conflict("send an offer first")
        room = {p.pid for p in self._participants.values() if p.room == viewer.room and p is not viewer}
        if any(pid not in room and pid not in not_started for pid in tiles):
            raise NotFound("set_subscriptions names someone who is not in this room")
        viewer.grid = dict(tiles)
        self._apply_grid(viewer)

    def _apply_grid(self, viewer: _Participant, publishers: Collection[_Participant] | None = None) -> None:
        """Choose ``viewer``'s layer of each of ``publishers`` (default: everyone else in its room) from its
        grid (nothing before it sent one)."""
        grid = viewer.grid
        if grid is None or viewer.session is None:
            return
        for publisher in (
            [p for p in self._room_of(viewer) if p is not viewer] if publishers is None else publishers
        ):
            tile = grid.get(publisher.pid)
            layer = "paused" if tile is None else self._layer_for_tile(publisher, tile[1])
            viewer.wanted_layers[publisher.pid] = layer
            self.set_layer(viewer.pid, publisher.pid, layer)

    def _layer_for_tile(self, publisher: _Participant, height: int) -> str:
        """``"low"`` when the publisher's low layer is at least 3/4 of the tile's height, else ``"high"``."""
        low = self._layer(publisher, "low")
        low_height = ASSUMED_LOW_HEIGHT if low is None or low.frame_size is None else low.frame_size[1]
        return "low" if 4 * low_height >= 3 * height else "high"

    def _layer(self, participant: _Participant, layer: str) -> Source | None:
        """The highest or lowest of a publisher's layers (see :meth:`_layers_best_first`)."""
        layers = self._ordered_layers(participant)
        if not layers:
            return None
        return layers[0] if layer == "high" else layers[-1]

    def _ordered_layers(self, participant: _Participant) -> list[Source]:
        """A publisher's video layers, best first: by keyframe size once every layer has sent one, until
        then by the offer's order (first listed is the highest, as the web client sends them)."""
        primary = participant.sources.get("video")
        layers = list(participant.layers.values()) or ([primary] if primary is not None else [])
        sizes = [s.frame_size for s in layers]
        if len(layers) > 1 and all(size is not None for size in sizes):
            layers = sorted(layers, key=lambda s: -(s.frame_size[0] * s.frame_size[1]))  # type: ignore[index]
        return layers

    def _layers_best_first(self, publisher: ParticipantId) -> tuple[Source, ...]:
        """What a subscriber's budget may choose from for ``publisher`` (empty: unknown or no video)."""
        participant = self._participants.get(publisher)
        return () if participant is None else tuple(self._ordered_layers(participant))

    def received_layer(self, subscriber: ParticipantId, publisher: ParticipantId) -> Source | None:
        """The video source of ``publisher`` that ``subscriber`` receives now (or is moving to)."""
        session = self._get(subscriber).session
        return None if session is None else session.layer_of(publisher)

    # --- lifecycle and introspection ----------------------------------------------------------------------

    async def close(self) -> None:
        for pid in list(self._participants):
            with contextlib.suppress(NotFound):
                await self.remove_participant(pid)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def stats(self) -> RelayStats:
        sources = [s for p in self._participants.values() for s in p.sources.values()] + [
            s
            for p in self._participants.values()
            for s in p.layers.values()
            if s is not p.sources.get("video")
        ]
        sessions = [p.session for p in self._participants.values() if p.session is not None]
        legs = [slot.leg for s in sessions for slot in s.slots]
        return RelayStats(
            participants=len(self._participants),
            sources=len(sources),
            legs=sum(len(s.legs) for s in sources),
            frames_in=sum(s.frames_in for s in sources),
            frames_out=sum(leg.frames_out for leg in legs),
            keyframe_requests=sum(s.keyframe_requests_sent for s in sources),
        )

    def layer_changes(self) -> dict[ParticipantId, list[str]]:
        """Each subscriber's last layer changes and probe verdicts with their reasons (diagnostics: ids and
        rates only), oldest first."""
        return {
            pid: list(p.session.allocator.changes)
            for pid, p in self._participants.items()
            if p.session is not None
        }

    def video_legs(self) -> dict[ParticipantId, list[str]]:
        """Each subscriber's video legs now (see :meth:`PeerSession.describe_video`; diagnostics)."""
        return {
            pid: p.session.describe_video() for pid, p in self._participants.items() if p.session is not None
        }

    def session(self, pid: ParticipantId) -> PeerSession | None:
        """The participant's current peer session (tests and metrics)."""
        return self._get(pid).session

    def source(self, pid: ParticipantId, kind: str) -> Source | None:
        return self._get(pid).sources.get(kind)

    def active_speaker(
        self, room: str | None, group: str | None = None
    ) -> SpeakerChange[ParticipantId] | None:
        """The dominant speaker and recent speakers of the room's ``group`` now (None before anyone spoke)."""
        detector = self._speakers.get((room, group))
        if detector is None or (detector.speaker is None and not detector.recent):
            return None
        return SpeakerChange(detector.speaker, detector.recent)

    # --- active speaker ---------------------------------------------------------------------------------

    def _speaker_priority(self, subscriber: ParticipantId, publisher: ParticipantId) -> float:
        """The speaker first, then recent speakers newest first, then everyone else (ties: join order)."""
        participant = self._participants.get(subscriber)
        return (
            video_rank(self.active_speaker(*participant.scope), publisher) if participant is not None else 0.0
        )

    def _heard(self, participant: _Participant, level: int) -> None:
        """One audio packet's level from ``participant`` (the media path: no awaiting here)."""
        scope = participant.scope
        detector = self._speakers.get(scope)
        if detector is None:
            detector = self._speakers[scope] = DominantSpeaker(self._clock)
        change = detector.observe(participant.pid, level)
        if change is not None:
            self._announce(scope, change)

    def _forget_speaker(self, participant: _Participant) -> None:
        scope = participant.scope
        detector = self._speakers.get(scope)
        if detector is None:
            return
        change = detector.remove(participant.pid)
        if not any(p.scope == scope and p is not participant for p in self._participants.values()):
            del self._speakers[scope]  # the group's media ended
        elif change is not None:
            self._announce(scope, change)

    def _announce(self, scope: tuple[str | None, str | None], change: SpeakerChange[ParticipantId]) -> None:
        if self._on_active_speaker is None:
            return
        recipients = tuple(p.pid for p in self._participants.values() if p.scope == scope)
        try:
            self._on_active_speaker(recipients, change)
        except Exception:  # a delivery fault must not break the publisher's receive path
            logger.exception("active speaker delivery failed")

    # --- helpers ----------------------------------------------------------------------------------------

    def _room_of(self, participant: _Participant) -> list[_Participant]:
        """Everyone who shares media with ``participant`` (``participant`` included): the same room and
        the same group in it."""
        scope = participant.scope
        return [p for p in self._participants.values() if p.scope == scope]

    def _get(self, pid: ParticipantId) -> _Participant:
        participant = self._participants.get(pid)
        if participant is None:
            raise NotFound("participant has no media")
        return participant

    def _session(self, pid: ParticipantId) -> PeerSession:
        session = self._get(pid).session
        if session is None:
            raise Conflict("send an offer first")
        return session

    def _sender_for(self, pid: ParticipantId) -> Callable[[str], Awaitable[None]]:
        async def send(sdp: str) -> None:
            await self._on_signal(pid, RenegotiationOffer(sdp))

        return send

    def _drop_listener(self, pid: ParticipantId) -> DropListener:
        def dropped(reason: DropReason) -> None:
            ICE_REMOTE_CANDIDATES_DROPPED.labels(reason.value).inc()
            # The reason only: a candidate's address is the client's network address (PHI).
            logger.debug("remote ICE candidate of %s dropped: %s", pid, reason.value)

        return dropped

    def _audio_only_listener(self, pid: ParticipantId) -> Callable[[AudioOnlyReason | None], None]:
        def changed(reason: AudioOnlyReason | None) -> None:
            participant = self._participants.get(pid)
            if self._on_audio_only is not None and participant is not None:
                self._on_audio_only(pid, reason)

        return changed

    def _state_listener(self, pid: ParticipantId) -> Callable[[str], None]:
        def changed(state: str) -> None:
            if self._on_connection_state is not None:
                self._on_connection_state(pid, state)

        return changed

    def _close_later(self, session: PeerSession) -> None:
        task = asyncio.get_running_loop().create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
