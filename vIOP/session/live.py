"""The process's live state: what exists only while the app runs, one typed field per kind of thing.

Filled by ``vIOP.app.start_live`` (delivery, the sign-out hook, the event listeners) and by the sockets
themselves (signaling sessions and presence streams register and unregister here).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from vIOP.auth.revocation import Revocation
from vIOP.auth.tickets import TicketGrant
from vIOP.errors import Unavailable
from vIOP.ids import RoomId
from vIOP.rooms.events import Event, Resync
from vIOP.storage.audit_outbox import AuditOutbox

if TYPE_CHECKING:
    from vIOP.session.delivery import RoomDelivery
    from vIOP.session.noshow import NoShowWatcher
    from vIOP.session.room_end import DirectorySync
    from vIOP.session.signal import SignalSession
    from vIOP.session.tracks import TrackScheduler
    from vIOP.session.webhooks import WebhookDelivery

EventListener = Callable[[Event | Resync], Awaitable[None]]
# Closes every signaling and presence socket of one user id in this process with 1000 "signed out".
CloseUserSockets = Callable[[str], Awaitable[None]]


class RevocableSocket(Protocol):
    """A signaling session or a presence stream: what it was opened with, and how to end it."""

    @property
    def grant(self) -> TicketGrant: ...

    def revoke(self, revocation: Revocation) -> None: ...


class PresenceSocket(RevocableSocket, Protocol):
    """A staff presence stream (``vIOP.session.presence``) as the live loops see it."""

    async def on_event(self, item: Event | Resync) -> None: ...

    def close(self, code: int, reason: str = "") -> None: ...

    def refresh(self, room_id: RoomId) -> None: ...


@dataclass
class Live:
    delivery: RoomDelivery | None = None  # set once the live loops start
    track_scheduler: TrackScheduler | None = None  # issue 16: opens occurrences' rooms (vIOP.session.tracks)
    no_show_watcher: NoShowWatcher | None = None  # issue 16: decides no-shows (vIOP.session.noshow)
    # subject -> that subject's signaling sessions in this process (revocation and sign-out close them)
    user_sockets: dict[str, set[RevocableSocket]] = field(default_factory=dict)
    close_user_sockets: CloseUserSockets | None = None
    presence_streams: set[PresenceSocket] = field(default_factory=set)
    event_listeners: list[EventListener] = field(default_factory=list)
    # Joined signaling sessions: their resume tokens and sign-ins are put back after a Redis data loss.
    signal_sessions: set[SignalSession] = field(default_factory=set)
    audit_outbox: AuditOutbox | None = None  # created on first use (``Services.audit_outbox``)
    # Room ends the SQL directory has not taken yet (``vIOP.session.room_end.directory_sync``).
    directory_sync: DirectorySync | None = None
    webhook_delivery: WebhookDelivery | None = None  # this process's webhook delivery loop (issue 16)

    def room_delivery(self) -> RoomDelivery:
        if self.delivery is None:
            raise Unavailable("the server is starting: retry shortly")
        return self.delivery
