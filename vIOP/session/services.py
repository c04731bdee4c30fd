"""What every use case, HTTP route and WebSocket endpoint works with: the process's components.

``vIOP/app.py`` builds one :class:`Services` at start-up (the only place that picks concrete stores);
edges read it with ``vIOP.api.context.services_of``. What only exists while the app runs (event
delivery, the live sockets, the audit recorder) is the typed :class:`vIOP.session.live.Live` in ``live``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vIOP.auth.accounts import Authenticator
from vIOP.auth.invites import Invites, InviteStore
from vIOP.auth.revocation import Revocations
from vIOP.auth.room_records import RoomRecords
from vIOP.auth.ticket_rate import TicketRateLimit
from vIOP.auth.tickets import SignalTickets
from vIOP.auth.tokens import AccessTokens
from vIOP.cluster.membership import NodeMembership
from vIOP.media.ice import IceConfig
from vIOP.program.ports import TrackStore
from vIOP.rooms.clock import Clock, system_clock
from vIOP.rooms.occurrences import OccurrenceLookup
from vIOP.rooms.ports import ChatBus, EventBus
from vIOP.rooms.service import RoomService
from vIOP.session.live import Live
from vIOP.settings import Settings
from vIOP.signaling.connections import ConnectionRegistry
from vIOP.signaling.resume import ResumeTokens
from vIOP.storage.audit_outbox import AuditOutbox
from vIOP.storage.bootstrap import Storage
from vIOP.storage.chat_transcripts_sql import SqlChatTranscripts
from vIOP.storage.embedded_redis import EmbeddedRedis
from vIOP.storage.redis_client import RedisClient
from vIOP.storage.webhooks_sql import SqlWebhookStore
from vIOP.webhooks.events import WebhookEvents

if TYPE_CHECKING:
    from vIOP.media.relay import MediaRelay
    from vIOP.session.media_route import MediaRouter

log = logging.getLogger("vIOP.app")

DrainHook = Callable[[], Awaitable[None]]
# How long shutdown waits for a loop to finish the round it is in, and then for cancelled tasks to end.
STOP_GRACE_SECONDS = 5.0


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
    ticket_rate: TicketRateLimit  # how often one credential may get tickets (a Redis counter behind it)
    rooms: RoomService
    resume: ResumeTokens
    connections: ConnectionRegistry
    room_directory: RoomRecords  # the port; SqlRoomDirectory is chosen in vIOP/app.py
    bus: EventBus
    ice: IceConfig
    revocations: Revocations
    chat: ChatBus  # chat lines between processes, sealed; the room's record while it is live (issue 15)
    chat_transcripts: SqlChatTranscripts  # transcripts a host saved to the session record (issue 15)
    tracks: TrackStore  # issue 16: tracks, occurrences' rooms, enrollments, calendar feeds
    # Epoch seconds for the program layer (lobbies, enrollment links, feeds): open_services' clock.
    clock: Clock = system_clock
    relay: MediaRelay | None = None
    # Which track occurrence a room was opened for (attendance titles); None until tracks are wired in.
    occurrences: OccurrenceLookup | None = None
    webhooks: SqlWebhookStore | None = None  # subscriptions and the outbox of signed events (issue 16)
    node: NodeMembership | None = None  # this process as a cluster node (vIOP.session.node)
    # Signaling on any node: media messages to and from the room's media node (vIOP.session.media_route)
    media_router: MediaRouter | None = None
    embedded_redis: EmbeddedRedis | None = None
    live: Live = field(default_factory=Live)
    # Run before uvicorn closes connections: close WebSockets with 1001, peer connections, flush.
    drain_hooks: list[DrainHook] = field(default_factory=list)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    draining: bool = False
    # Set at shutdown: loops spawned with ``stops_between_rounds`` end after the round they are in.
    stopping: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _stops_between_rounds: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    @property
    def audit_outbox(self) -> AuditOutbox:
        """Audit rows of live sessions, written in the background and kept while the database is away
        (created on first use; flushed by the sweeper and once more when the app drains)."""
        outbox = self.live.audit_outbox
        if outbox is None:
            outbox = self.live.audit_outbox = AuditOutbox(self.storage.audit)
            self.drain_hooks.append(outbox.close)
        return outbox

    @property
    def webhook_events(self) -> WebhookEvents:
        """The port use cases emit webhook events through (e.g. a no-show): outbox rows written now,
        delivered by this process's loop (woken at once) or any other's."""
        from vIOP.session.webhooks import OutboxEvents

        if self.webhooks is None:
            raise RuntimeError("webhooks are not wired (vIOP/app.py open_services)")
        delivery = self.live.webhook_delivery
        return OutboxEvents(
            self.webhooks, clock=self.rooms.clock, wake=delivery.wake if delivery is not None else None
        )

    def spawn(
        self, coro: Awaitable[None], name: str, *, stops_between_rounds: bool = False
    ) -> asyncio.Task[None]:
        """A background task owned by the app, failures logged (never silent). At close it is cancelled,
        or, with ``stops_between_rounds`` (a loop that watches :attr:`stopping`), left to end after the
        round it is in (see :meth:`stop_background`)."""

        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task failed", extra={"kind": name})

        task = asyncio.create_task(run(), name=name)
        if isinstance(coro, Coroutine):
            unstarted = coro

            def close_if_never_started(_: asyncio.Task[None]) -> None:
                # Cancelled before it ran (a shutdown right after start): no "never awaited" warning.
                if inspect.getcoroutinestate(unstarted) == inspect.CORO_CREATED:
                    unstarted.close()

            task.add_done_callback(close_if_never_started)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        if stops_between_rounds:
            self._stops_between_rounds.add(task)
            task.add_done_callback(self._stops_between_rounds.discard)
        return task

    async def stop_background(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """End every background task, in bounded time. Loops that stop between rounds are asked to
        (:attr:`stopping`) and get ``grace`` to finish their round: a cancel landing inside a store call
        (a Redis transaction, a sweep) cuts the round short, and a cancel swallowed inside a library call
        left a loop running for ever. The others (stream reads that block in Redis) are cancelled at
        once, and so is a round that outlives ``grace``; what still runs ``grace`` after that is logged
        and left behind rather than hanging shutdown."""
        self.stopping.set()
        between_rounds = set(self._stops_between_rounds)
        for task in self.background - between_rounds:
            task.cancel()
        if between_rounds:
            _, late = await asyncio.wait(between_rounds, timeout=grace)
            for task in late:
                task.cancel()
        pending = {task for task in self.background if not task.done()}
        if pending:
            _, stuck = await asyncio.wait(pending, timeout=grace)
            if stuck:
                log.warning(
                    "background tasks did not stop",
                    extra={"kind": ",".join(sorted(task.get_name() for task in stuck))},
                )

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
