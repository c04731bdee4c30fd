"""Screen share in one room (issue 15): who shares now, and which clients a host allowed to.

Pure rules, no I/O. One share at a time per room; a host may always share; a client only while a host
allows it. Revoking a client's permission ends their share at once. The state lives with the room's media
(the process whose relay carries the room, like raised hands): a share is media, and ends with it.

Every refusal is typed and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from vIOP.errors import Conflict, Forbidden
from vIOP.ids import ParticipantId

SCREEN_STREAM_SUFFIX: Final = ".screen"
"""A forwarded screen share's ``a=msid`` stream id is the sharer's participant id plus this (their camera's
stream id is the participant id alone); see docs/PROTOCOL.md, "Screen share"."""


class ShareInProgress(Conflict):
    """Someone else shares already (one share at a time per room)."""

    code = "share_in_progress"


class ShareNotAllowed(Forbidden):
    """A client may share only while a host allows it."""

    code = "share_not_allowed"


class NotSharing(Conflict):
    """``stop_share`` from someone who does not share."""

    code = "not_sharing"


class NoScreenTrack(Conflict):
    """The sharer's peer connection carries no screen-share section (see docs/PROTOCOL.md)."""

    code = "no_screen_track"


@dataclass(frozen=True, slots=True)
class ShareChange:
    """What a call changed: ``stopped`` is whose share ended (None: none did)."""

    changed: bool
    stopped: ParticipantId | None = None


@dataclass(slots=True)
class RoomShare:
    """One room's share state."""

    sharer: ParticipantId | None = None
    allowed: set[ParticipantId] = field(default_factory=set)

    def may_share(self, pid: ParticipantId, *, is_host: bool) -> bool:
        return is_host or pid in self.allowed

    def check_start(self, pid: ParticipantId, *, is_host: bool) -> None:
        """Raise unless ``pid`` may start sharing now (nothing changes either way)."""
        if not self.may_share(pid, is_host=is_host):
            raise ShareNotAllowed("a host has not allowed you to share your screen")
        if self.sharer is not None and self.sharer != pid:
            raise ShareInProgress("someone else is sharing their screen; one share at a time")

    def start(self, pid: ParticipantId, *, is_host: bool) -> ShareChange:
        self.check_start(pid, is_host=is_host)
        if self.sharer == pid:
            return ShareChange(False)
        self.sharer = pid
        return ShareChange(True)

    def stop(self, pid: ParticipantId) -> ShareChange:
        if self.sharer != pid:
            raise NotSharing("you are not sharing your screen")
        self.sharer = None
        return ShareChange(True, pid)

    def allow(self, pid: ParticipantId) -> ShareChange:
        if pid in self.allowed:
            return ShareChange(False)
        self.allowed.add(pid)
        return ShareChange(True)

    def revoke(self, pid: ParticipantId) -> ShareChange:
        """Take back a client's permission; their share, if any, ends with it."""
        if pid not in self.allowed and self.sharer != pid:
            return ShareChange(False)
        self.allowed.discard(pid)
        if self.sharer == pid:
            self.sharer = None
            return ShareChange(True, pid)
        return ShareChange(True)

    def media_ended(self, pid: ParticipantId) -> ShareChange:
        """``pid``'s media stopped (returned to the lobby): their share ends, a permission stays."""
        if self.sharer != pid:
            return ShareChange(False)
        self.sharer = None
        return ShareChange(True, pid)

    def left(self, pid: ParticipantId) -> ShareChange:
        """``pid`` has no media any more (left, removed, returned to the lobby, reconnecting without a
        screen): their share ends; a permission ends with their seat."""
        stopped = pid if self.sharer == pid else None
        if stopped is not None:
            self.sharer = None
        changed = stopped is not None or pid in self.allowed
        self.allowed.discard(pid)
        return ShareChange(changed, stopped)
