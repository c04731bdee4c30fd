"""Each room's media controls in this process, and the one route from them into the media relay.

Per participant, one :class:`MediaControl`: what they said about their own microphone and camera, their
raised hand, and the host's audio and video mutes. The host's mutes are domain state
(``Participant.muted``/``video_muted``, kept in Redis so they outlive a reconnect, a return to the lobby
and a restart); the record holds them as this process's relay applies them, taken from the stored
participant when its media starts and from the room's ``muted`` events after that. Own flags and hands are
not domain records: they live only here, in the process that holds the room's media, set by the
participant's own messages and dropped when they leave or the room ends.

:meth:`MediaControls.apply` is the only place that turns controls into what the relay forwards.

Screen share (issue 15): each room's :class:`~vIOP.rooms.share.RoomShare` lives here too, with the media
it governs (who shares, which clients a host allowed); a share ends when its sharer's media stops.
:data:`ShareListener` hears every change, to tell the room.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from vIOP.errors import Conflict, NotFound
from vIOP.ids import ParticipantId, RoomId
from vIOP.media.relay import MediaRelay
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.breakout import group_of
from vIOP.rooms.events import MuteKind
from vIOP.rooms.participant import Participant
from vIOP.rooms.share import NoScreenTrack, RoomShare, ShareChange


@dataclass(slots=True)
class MediaControl:
    """One participant's media controls."""

    audio: bool = True  # their own microphone is on
    video: bool = True  # their own camera is on
    hand: bool = False
    muted: bool = False  # the host's audio mute
    video_muted: bool = False  # the host's video mute
    save_data: bool = False  # the participant asked for audio only (applies from their next offer too)
    audio_only: AudioOnlyReason | None = None  # why the relay sends them no video (None: video flows)
    group: str | None = None  # issue 15: their private breakout's key (None: the room's group)

    def host_muted(self, kind: MuteKind) -> bool:
        return self.muted if kind is MuteKind.AUDIO else self.video_muted

    def forwards(self, kind: MuteKind) -> bool:
        """Server-enforced: a host's mute stops forwarding. The participant's own flags do not (their
        browser stops sending; the flags only tell the room)."""
        return not self.host_muted(kind)


@dataclass(slots=True)
class RoomMediaControls:
    """The media controls of everyone in one room that this process knows of."""

    room_id: RoomId
    participants: dict[ParticipantId, MediaControl] = field(default_factory=dict)


class MediaHooks:
    """What the controls ask of the media relay; no-ops when the process runs without media."""

    def remove(self, pid: ParticipantId) -> None:
        """Stop every stream to and from ``pid`` (removed, left, returned to the lobby, room ended)."""

    def set_forwarding(self, pid: ParticipantId, kind: MuteKind, enabled: bool) -> None:
        """Forward ``pid``'s ``kind`` to the room or not."""

    def set_save_data(self, pid: ParticipantId, on: bool) -> None:
        """Send ``pid`` audio only (their own choice) or video again."""

    def remove_room(self, room_id: RoomId) -> None:
        """Stop every stream of the room (it ended), whichever node each participant's socket is on."""

    def set_groups(self, groups: Mapping[ParticipantId, str | None]) -> None:
        """Exchange each one's media only with their room's group (a breakout's key; None: the group),
        all moved at once."""

    def set_sharing(self, pid: ParticipantId, on: bool) -> None:
        """Send ``pid``'s screen to the room, or stop it (raises when starting is impossible)."""
        if on:
            raise Conflict("this server runs without media")


class RelayHooks(MediaHooks):
    """This process's relay (a participant it does not carry is ignored)."""

    def __init__(self, relay: MediaRelay, spawn: Callable[[Awaitable[None], str], object]) -> None:
        self.relay = relay
        self.spawn = spawn
        self._removing: set[ParticipantId] = set()  # a removal reaches the relay once, however announced

    def remove(self, pid: ParticipantId) -> None:
        if pid in self.relay.participants() and pid not in self._removing:
            self._removing.add(pid)

            async def remove() -> None:
                try:
                    with contextlib.suppress(NotFound):
                        await self.relay.remove_participant(pid)
                finally:
                    self._removing.discard(pid)

            self.spawn(remove(), "media-remove")

    def set_forwarding(self, pid: ParticipantId, kind: MuteKind, enabled: bool) -> None:
        if pid in self.relay.participants():
            self.relay.set_forwarding(pid, kind.value, enabled)

    def set_save_data(self, pid: ParticipantId, on: bool) -> None:
        if pid in self.relay.participants():
            self.relay.set_save_data(pid, on)

    def remove_room(self, room_id: RoomId) -> None:
        for pid in self.relay.participants():
            if self.relay.room_of(pid) == room_id:
                self.remove(pid)

    def set_groups(self, groups: Mapping[ParticipantId, str | None]) -> None:
        self.relay.set_groups(groups)  # those it does not carry are ignored

    def set_sharing(self, pid: ParticipantId, on: bool) -> None:
        if pid in self.relay.participants():
            self.relay.set_sharing(pid, on)
        elif on:
            raise NoScreenTrack("send an offer with a screen-share section first")


ShareListener = Callable[[RoomId, RoomShare], None]
"""Told after every change of a room's share state (the caller tells the room)."""

_UNSET = MediaControl()  # what a participant nobody said anything about has (never mutated)


class MediaControls:
    """The per-room records of this process and the one route from them into the relay."""

    def __init__(self, relay: MediaHooks) -> None:
        self.relay = relay
        self.rooms: dict[RoomId, RoomMediaControls] = {}
        self.shares: dict[RoomId, RoomShare] = {}
        self.on_share: ShareListener | None = None

    def of(self, room_id: RoomId, pid: ParticipantId) -> MediaControl:
        """``pid``'s controls (defaults when there are none yet; reading records nothing)."""
        room = self.rooms.get(room_id)
        control = room.participants.get(pid) if room is not None else None
        return control or _UNSET

    def _record(self, room_id: RoomId, pid: ParticipantId) -> MediaControl:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = RoomMediaControls(room_id)
        return room.participants.setdefault(pid, MediaControl())

    # --- the participant's own -------------------------------------------------------------------

    def set_own(
        self, room_id: RoomId, pid: ParticipantId, *, audio: bool | None = None, video: bool | None = None
    ) -> MediaControl:
        """What the participant says of their own microphone and camera (join, ``set_media``)."""
        control = self._record(room_id, pid)
        if audio is not None:
            control.audio = audio
        if video is not None:
            control.video = video
        return control

    def set_hand(self, room_id: RoomId, pid: ParticipantId, up: bool) -> MediaControl:
        control = self._record(room_id, pid)
        control.hand = up
        return control

    def set_save_data(self, room_id: RoomId, pid: ParticipantId, on: bool) -> None:
        """The participant chose audio only (or video again): applied now if the relay carries them, and
        from their next offer otherwise."""
        control = self._record(room_id, pid)
        control.save_data = on
        self.relay.set_save_data(pid, on)

    def set_audio_only(
        self, room_id: RoomId, pid: ParticipantId, reason: AudioOnlyReason | None
    ) -> AudioOnlyReason | None:
        """The relay stopped (``reason``) or resumed (None) video to ``pid``; returns the previous reason."""
        control = self._record(room_id, pid)
        previous, control.audio_only = control.audio_only, reason
        return previous

    def set_groups(self, room_id: RoomId, pids: Iterable[ParticipantId], group: str | None) -> None:
        """``pids`` (a breakout's two sides) went into a private breakout (``group``, its key) or back to
        the room's group (None), together: applied now if the relay carries them, and when their media
        starts otherwise."""
        moved = {}
        for pid in pids:
            if group is None and self.of(room_id, pid).group is None:
                continue  # nothing to undo (e.g. the side that left, whose controls are dropped already)
            self._record(room_id, pid).group = group
            moved[pid] = group
        self.relay.set_groups(moved)

    # --- the host's mutes ------------------------------------------------------------------------

    def media_started(self, participant: Participant) -> None:
        """The relay carries ``participant`` now: their host mutes, as stored, apply from the start."""
        control = self._record(participant.room_id, participant.id)
        control.muted = participant.muted
        control.video_muted = participant.video_muted
        control.group = group_of(participant)
        self.relay.set_groups({participant.id: control.group})  # before the offer: only its group's media
        self.apply(participant.room_id, participant.id, tuple(MuteKind))
        if control.save_data:
            self.relay.set_save_data(participant.id, True)

    def host_mute(self, room_id: RoomId, pid: ParticipantId, kind: MuteKind, muted: bool) -> None:
        """A host muted or unmuted ``pid`` (the room's ``muted`` event)."""
        control = self._record(room_id, pid)
        if kind is MuteKind.AUDIO:
            control.muted = muted
        else:
            control.video_muted = muted
        self.apply(room_id, pid, (kind,))

    def apply(self, room_id: RoomId, pid: ParticipantId, kinds: Iterable[MuteKind]) -> None:
        """The one route from the controls into the relay."""
        control = self.of(room_id, pid)
        for kind in kinds:
            self.relay.set_forwarding(pid, kind, control.forwards(kind))

    # --- screen share (issue 15) ----------------------------------------------------------------

    def share(self, room_id: RoomId) -> RoomShare:
        """The room's share state (an empty one, not recorded, when nothing was said yet)."""
        return self.shares.get(room_id) or RoomShare()

    def start_share(self, room_id: RoomId, pid: ParticipantId, *, is_host: bool) -> None:
        """``pid`` shares their screen: checked first (one share at a time, a client only while allowed),
        then the relay (their connection must carry a screen section); nothing changes on a refusal."""
        share = self.shares.get(room_id) or RoomShare()
        share.check_start(pid, is_host=is_host)
        self.relay.set_sharing(pid, True)
        self.shares[room_id] = share
        if share.start(pid, is_host=is_host).changed:
            self._share_changed(room_id, share)

    def stop_share(self, room_id: RoomId, pid: ParticipantId) -> None:
        share = self.shares.get(room_id) or RoomShare()
        share.stop(pid)  # NotSharing unless they share
        self.relay.set_sharing(pid, False)
        self._share_changed(room_id, share)

    def allow_share(self, room_id: RoomId, pid: ParticipantId) -> None:
        share = self.shares.setdefault(room_id, RoomShare())
        if share.allow(pid).changed:
            self._share_changed(room_id, share)

    def revoke_share(self, room_id: RoomId, pid: ParticipantId) -> None:
        share = self.shares.get(room_id)
        if share is not None:
            self._apply_share(room_id, share, share.revoke(pid))

    def _apply_share(self, room_id: RoomId, share: RoomShare, change: ShareChange) -> None:
        if change.stopped is not None:
            self.relay.set_sharing(change.stopped, False)
        if change.changed:
            self._share_changed(room_id, share)

    def _share_changed(self, room_id: RoomId, share: RoomShare) -> None:
        if self.on_share is not None:
            self.on_share(room_id, share)

    def _share_ends_with(self, pid: ParticipantId, room_id: RoomId | None = None) -> None:
        """``pid``'s media or seat ended: their share ends (and, with the seat, their permission)."""
        for rid, share in list(self.shares.items()):
            if room_id is not None and rid != room_id:
                continue
            change = share.left(pid) if room_id is not None else share.media_ended(pid)
            if change.changed:
                self._share_changed(rid, share)

    # --- leaving ---------------------------------------------------------------------------------

    def stop_media(self, pid: ParticipantId) -> None:
        """Stop ``pid``'s streams; their controls stay (returned to the lobby, or the room's event follows)."""
        self._share_ends_with(pid)
        self.relay.remove(pid)

    def drop(self, room_id: RoomId, pid: ParticipantId) -> None:
        """``pid`` is gone from the room (left, removed, denied): their streams and their controls."""
        self._share_ends_with(pid, room_id)
        self.relay.remove(pid)
        room = self.rooms.get(room_id)
        if room is not None:
            room.participants.pop(pid, None)
            if not room.participants:
                del self.rooms[room_id]

    def drop_room(self, room_id: RoomId, media_of: Iterable[ParticipantId]) -> None:
        """The room ended: the streams of ``media_of`` (those this process carries) and every control."""
        for pid in media_of:
            self.relay.remove(pid)
        self.relay.remove_room(room_id)
        self.rooms.pop(room_id, None)
        self.shares.pop(room_id, None)
