"""What every use case, HTTP route and WebSocket endpoint works with: the process's components.

``vIOP/app.py`` builds one :class:`Services` at start-up (the only place that picks concrete stores);
edges read it with ``vIOP.api.context.services_of``. What only exists while the app runs (event
delivery, the live sockets, the audit recorder) is the typed :class:`vIOP.session.live.Live` in ``live``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vIOP.auth.accounts import Authenticator
from vIOP.auth.invites import Invites, InviteStore
from vIOP.auth.revocation import Revocations
from vIOP.auth.room_records import RoomRecords
from vIOP.auth.tickets import SignalTickets
from vIOP.auth.tokens import AccessTokens
from vIOP.media.ice import IceConfig
from vIOP.rooms.ports import EventBus
from vIOP.rooms.service import RoomService
from vIOP.session.live import Live
from vIOP.settings import Settings
from vIOP.signaling.connections import ConnectionRegistry
from vIOP.signaling.resume import ResumeTokens
from vIOP.storage.audit_outbox import AuditOutbox
from vIOP.storage.bootstrap import Storage
from vIOP.storage.embedded_redis import EmbeddedRedis
from vIOP.storage.redis_client import RedisClient

if TYPE_CHECKING:
    from vIOP.media.relay import MediaRelay

log = logging.getLogger("vIOP.app")

DrainHook = Callable[[], Awaitable[None]]


@dataclass
class Services:
    """The process's components, opened in order at start-up and closed in reverse."""

    settings: Settings
    redis: RedisClient
    storage: Storage
    tokens: AccessTokens
    authenticator: Authenticator
    invites: Invites
    invite_store: InviteStore
    tickets: SignalTickets
    rooms: RoomService
    resume: ResumeTokens
    connections: ConnectionRegistry
    room_directory: RoomRecords  # the port; SqlRoomDirectory is chosen in vIOP/app.py
    bus: EventBus
    ice: IceConfig
    revocations: Revocations
    relay: MediaRelay | None = None
    embedded_redis: EmbeddedRedis | None = None
    live: Live = field(default_factory=Live)
    # Run before uvicorn closes connections: close WebSockets with 1001, peer connections, flush.
    drain_hooks: list[DrainHook] = field(default_factory=list)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    draining: bool = False

    @property
    def audit_outbox(self) -> AuditOutbox:
        """Audit rows of live sessions, written in the background and kept while the database is away
        (created on first use; flushed by the sweeper and once more when the app drains)."""
        outbox = self.live.audit_outbox
        if outbox is None:
            outbox = self.live.audit_outbox = AuditOutbox(self.storage.audit)
            self.drain_hooks.append(outbox.close)
        return outbox

    def spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        """A background task owned by the app: cancelled at close, failures logged (never silent)."""

        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task failed", extra={"kind": name})

        task = asyncio.create_task(run(), name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def drain(self) -> None:
        """Stop taking new sessions and close live ones politely (the SIGTERM path)."""
        if self.draining:
            return
        self.draining = True
        for hook in self.drain_hooks:
            try:
                await hook()
            except Exception:
                log.exception("drain hook failed")
