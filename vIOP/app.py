"""The one place that wires concrete stores, relay and routes together: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route, WebSocketRoute

from vIOP import web
from vIOP.api import (
    health,
    http_account,
    http_attendance,
    http_auth,
    http_chat_transcript,
    http_cohosts,
    http_compliance,
    http_presence,
    http_rooms,
    http_tickets,
    http_tracks,
    http_turn,
    http_webhooks,
)
from vIOP.api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from vIOP.api.openapi import Operation, Reply, documented_route, openapi_endpoint
from vIOP.api.responses import EXCEPTION_HANDLERS
from vIOP.api.ws_presence import presence_endpoint
from vIOP.api.ws_signal import signal_endpoint
from vIOP.auth.accounts import Authenticator, LoginEvent, LoginOutcome
from vIOP.auth.invites import Invites
from vIOP.auth.passwords import PasswordHasher
from vIOP.auth.revocation import Revocations
from vIOP.auth.throttle import LoginThrottle, ThrottlePolicy
from vIOP.auth.ticket_rate import TicketRateLimit
from vIOP.auth.tickets import MAC_KEY_PURPOSE, SignalTickets
from vIOP.auth.tokens import SESSION_KEY_PURPOSE, AccessTokens, TokenKeys, TokenPolicy
from vIOP.auth.totp_replay import TotpReplayGuard
from vIOP.cluster.membership import ClusterPolicy, NodeMembership
from vIOP.cluster.nodes import NodeState
from vIOP.ids import new_id
from vIOP.media.ice import IceConfig
from vIOP.media.relay import MediaRelay
from vIOP.rooms.service import RoomPolicy, RoomService
from vIOP.session.chat import run_chat_loop
from vIOP.session.delivery import RoomDelivery
from vIOP.session.loops import (
    relay_audio_only_notifier,
    relay_signal_sender,
    relay_speaker_sender,
    run_event_loop,
    run_sweeper,
)
from vIOP.session.media_controls import MediaHooks, RelayHooks
from vIOP.session.media_moves import MediaNodeWatch, move_rooms_away
from vIOP.session.media_route import MediaRouter
from vIOP.session.node import NodeHeartbeat, leave_cluster
from vIOP.session.noshow import NoShowWatcher
from vIOP.session.presence import presence_listener
from vIOP.session.revocation import close_user_sockets, run_revocation_listener
from vIOP.session.room_end import directory_sync
from vIOP.session.services import Services
from vIOP.session.tracks import TrackOccurrences, TrackScheduler
from vIOP.session.webhooks import DeliveryPolicy, HttpSender, WebhookDelivery
from vIOP.settings import Settings
from vIOP.signaling.connections import ConnectionLimits, ConnectionRegistry
from vIOP.signaling.messages import CloseCode
from vIOP.signaling.ratelimit import MessageRateLimit
from vIOP.signaling.resume import ResumeTokens
from vIOP.storage.accounts_sql import SqlAccountStore
from vIOP.storage.attendance_sql import SqlAttendanceStore
from vIOP.storage.audit import AuditEvent, Outcome
from vIOP.storage.bootstrap import open_storage
from vIOP.storage.chat_transcripts_sql import SqlChatTranscripts
from vIOP.storage.embedded_redis import EmbeddedRedis
from vIOP.storage.invites_sql import SqlInviteStore
from vIOP.storage.redis_auth import (
    RedisRevocationLog,
    RedisSessionStore,
    RedisThrottleCounters,
    RedisTicketRateCounter,
    RedisTicketStore,
    RedisTotpSteps,
)
from vIOP.storage.redis_bus import EventStream, RedisEventBus
from vIOP.storage.redis_chat import RedisChatBus
from vIOP.storage.redis_client import RedisClient, redis_client
from vIOP.storage.redis_cluster import RedisNodeRegistry, RedisRoomLeases
from vIOP.storage.redis_media_signal import RedisMediaSignalChannel
from vIOP.storage.redis_resume_tokens import RedisResumeTokenStore
from vIOP.storage.redis_rooms import RedisKeys, RedisPresenceStore, RedisRoomStore
from vIOP.storage.retention import policy_from, run_daily
from vIOP.storage.rooms_sql import SqlRoomDirectory
from vIOP.storage.tracks_sql import SqlTrackStore
from vIOP.storage.webhooks_sql import SqlWebhookStore

log = logging.getLogger("vIOP.app")

MAX_BODY_BYTES = 64 * 1024
# docs/API.md: a wrong password is a failure; a throttled or locked account is a denial.
_LOGIN_OUTCOME = {
    LoginOutcome.SUCCEEDED: Outcome.SUCCESS,
    LoginOutcome.FAILED: Outcome.FAILURE,
    LoginOutcome.THROTTLED: Outcome.DENIED,
    LoginOutcome.LOCKED: Outcome.DENIED,
}


def _ice_config(settings: Settings) -> IceConfig:
    return IceConfig(
        host_addresses=settings.ice_host_addresses,
        server_urls=settings.ice_servers,
        turn_secret=settings.turn_secret,
        turn_ttl_seconds=settings.turn_ttl_seconds,
        remote_allow=settings.ice_remote_allow,
        allow_loopback_candidates=settings.effective_ice_allow_loopback,
        max_remote_candidates=settings.ice_max_remote_candidates,
        public_addresses=settings.own_ip_addresses,
    )


def node_membership(settings: Settings, redis: RedisClient, clock: Callable[[], float]) -> NodeMembership:
    """This process as a cluster node: its id (``VIOP_NODE_ID``, else a random one per start) and the
    address its media is on (the first ICE host address, else the address it listens on)."""
    policy = ClusterPolicy(
        heartbeat=float(settings.node_heartbeat_seconds),
        node_ttl=float(settings.node_ttl_seconds),
        lease_ttl=float(settings.room_lease_seconds),
        capacity=settings.node_capacity,
    )
    media_address = settings.ice_host_addresses[0] if settings.ice_host_addresses else settings.host
    return NodeMembership(
        settings.node_id or new_id("nd"),
        media_address,
        policy,
        RedisNodeRegistry(redis),
        RedisRoomLeases(redis),
        clock,
    )


async def open_services(settings: Settings, *, clock: Callable[[], float] = time.time) -> Services:
    """Start the embedded Redis when none is configured, open the store, and build every component.
    ``clock`` (epoch seconds) times sign-ins, tickets, revocations and session ends: tests inject one."""
    embedded: EmbeddedRedis | None = None
    if settings.embedded_redis:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        # Started from the event loop's thread on purpose: it is a child of this process.
        embedded.start()
    try:
        storage = await open_storage(settings, checkpoint_path=settings.audit_checkpoint_file)
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    redis = redis_client(settings, embedded.url if embedded is not None else None)
    ring, db = storage.keys, storage.db
    sealer = ring.redis_sealer()
    room_directory = SqlRoomDirectory(db, ring)
    webhooks = SqlWebhookStore(db, ring)
    invite_store = SqlInviteStore(db, ring)

    from vIOP.api.audit_trail import login_user_agent

    async def audit_login(event: LoginEvent) -> None:
        # Through the one recorder (services.audit_outbox, bound once the services exist below).
        locked = event.outcome is LoginOutcome.LOCKED
        await services.audit_outbox.write(
            event.user_id,
            event.role.value if event.role else "anonymous",
            AuditEvent.ACCOUNT_LOCKED if locked else AuditEvent.LOGIN,
            "user" if event.user_id else None,
            event.user_id,
            _LOGIN_OUTCOME[event.outcome],
            event.address,
            login_user_agent.get(),
        )

    tokens = AccessTokens(
        TokenKeys("v1", ring.derive_key("access-token/ed25519/v1")),
        RedisSessionStore(redis),
        TokenPolicy(
            idle_seconds=settings.token_idle_seconds, lifetime_seconds=settings.token_lifetime_seconds
        ),
        clock=clock,
        session_key=ring.derive_key(SESSION_KEY_PURPOSE),
    )
    revocations = Revocations(RedisRevocationLog(redis), clock=clock)
    authenticator = Authenticator(
        SqlAccountStore(db, ring),
        lambda username: ring.blind_index("username", username),
        lambda address: ring.blind_index("login-address", address),
        PasswordHasher(),
        LoginThrottle(RedisThrottleCounters(redis), ThrottlePolicy(max_failures=settings.login_max_failures)),
        TotpReplayGuard(RedisTotpSteps(redis)),
        require_totp=settings.env == "production",
        events=audit_login,
    )
    rooms = RoomService(
        RedisRoomStore(redis, sealer),
        RedisPresenceStore(redis),
        attendance=SqlAttendanceStore(db, webhooks=webhooks),
        policy=RoomPolicy(
            heartbeat_expiry=float(settings.presence_expiry_seconds),
            reconnect_grace=float(settings.reconnect_grace_seconds),
            attendance_grace=float(settings.reconnect_grace_seconds),
        ),
    )
    connections = ConnectionRegistry(
        ConnectionLimits(
            heartbeat_seconds=float(settings.heartbeat_seconds),
            heartbeat_timeout_seconds=float(settings.presence_expiry_seconds),
            inbound=MessageRateLimit(per_second=settings.signal_rate_per_second),
        )
    )
    node = node_membership(settings, redis, clock)
    services = Services(
        settings=settings,
        redis=redis,
        storage=storage,
        tokens=tokens,
        authenticator=authenticator,
        invites=Invites(invite_store, room_directory, clock=clock),
        invite_store=invite_store,
        tickets=SignalTickets(
            RedisTicketStore(redis), ring.derive_key(MAC_KEY_PURPOSE), clock=clock, revocations=revocations
        ),
        ticket_rate=TicketRateLimit(RedisTicketRateCounter(redis)),
        rooms=rooms,
        resume=ResumeTokens(
            RedisResumeTokenStore(redis, sealer),
            grace_seconds=float(settings.reconnect_grace_seconds),
            heartbeat_seconds=float(settings.heartbeat_seconds),
        ),
        connections=connections,
        room_directory=room_directory,
        bus=RedisEventBus(redis, EventStream(RedisKeys().events, sealer)),
        ice=_ice_config(settings),
        revocations=revocations,
        chat=RedisChatBus(redis, sealer),
        chat_transcripts=SqlChatTranscripts(db, ring),
        webhooks=webhooks,
        tracks=(tracks := SqlTrackStore(db, ring)),
        occurrences=TrackOccurrences(tracks),
        clock=clock,
        node=node,
        embedded_redis=embedded,
    )
    router = services.media_router = MediaRouter(
        services, RedisMediaSignalChannel(redis, sealer, node.node_id)
    )
    services.relay = MediaRelay(
        services.ice,
        on_signal=relay_signal_sender(router.send),
        on_active_speaker=relay_speaker_sender(router),
        on_audio_only=relay_audio_only_notifier(services),
    )
    return services


def start_live(services: Services) -> None:
    """Start the process's live loops (needs the running event loop). Idempotent."""
    live = services.live
    if live.delivery is not None:
        return
    relay = services.relay
    hooks = RelayHooks(relay, services.spawn) if relay is not None else MediaHooks()
    router = services.media_router
    delivery = live.delivery = RoomDelivery(
        services.rooms, services.connections, hooks, send=router.send if router is not None else None
    )

    async def close_own_sockets(user_id: str) -> None:
        await close_user_sockets(services, user_id)

    live.close_user_sockets = close_own_sockets
    services.spawn(run_revocation_listener(services), "revocations")
    listeners = live.event_listeners
    listeners.append(presence_listener(services))
    services.spawn(run_event_loop(services, delivery, listeners), "room-events")
    services.spawn(run_chat_loop(services, delivery), "chat")
    if router is not None:
        services.spawn(router.run_inbox(), "media-signal-in")
        services.spawn(router.run_outbox(), "media-signal-out")
        services.drain_hooks.append(router.close)
    services.spawn(
        run_sweeper(services, interval=min(2.0, services.settings.heartbeat_seconds / 2)),
        "sweeper",
        stops_between_rounds=True,
    )
    if services.webhooks is not None:
        settings = services.settings
        timeout = float(settings.webhook_timeout_seconds)
        webhook_delivery = live.webhook_delivery = WebhookDelivery(
            services.webhooks,
            HttpSender(timeout=timeout, allow_private=settings.effective_webhook_allow_private),
            policy=DeliveryPolicy(concurrency=settings.webhook_concurrency, timeout=timeout),
            clock=services.rooms.clock,
        )
        services.spawn(webhook_delivery.run(services.stopping), "webhooks", stops_between_rounds=True)
    scheduler = live.track_scheduler = TrackScheduler(services)
    services.spawn(scheduler.run(), "tracks", stops_between_rounds=True)
    no_shows = live.no_show_watcher = NoShowWatcher(services)
    services.spawn(no_shows.run(), "no-shows", stops_between_rounds=True)
    retention = policy_from(services.settings)
    services.spawn(
        run_daily(services.storage, retention, services.rooms.clock, stop=services.stopping),
        "retention",
        stops_between_rounds=True,
    )

    async def drain() -> None:
        for stream in list(services.live.presence_streams):
            stream.close(int(CloseCode.GOING_AWAY))
        await services.connections.close_all(CloseCode.GOING_AWAY, "server shutting down")
        if services.relay is not None:
            await services.relay.close()

    if services.node is not None:
        heartbeat = NodeHeartbeat(services, services.node)

        async def stop_taking_rooms() -> None:
            heartbeat.stop_taking_rooms()

        services.drain_hooks.insert(0, stop_taking_rooms)  # before the sockets close
        if router is not None:
            node = services.node
            moves: list[asyncio.Task[None]] = []  # at most one move of this node's rooms

            def start_moving() -> asyncio.Task[None]:
                if not moves:
                    moves.append(services.spawn(move_rooms_away(services, node), "drain-moves"))
                return moves[0]

            async def move_away() -> None:
                await start_moving()

            heartbeat.on_draining = start_moving  # `nodes drain`: the rooms move, the node stays up
            # SIGTERM: right after stop_taking_rooms, while the sockets and the media relay still work.
            services.drain_hooks.insert(1, move_away)
        services.spawn(heartbeat.run(), "node", stops_between_rounds=True)
        if router is not None:
            watch = MediaNodeWatch(services, services.node)
            router.on_unreachable = watch.wake
            channel = router.channel

            async def listening(node_id: str) -> bool:
                return node_id in await channel.listening([node_id])

            services.node.listening = listening
            services.spawn(watch.run(), "media-node-watch", stops_between_rounds=True)
    services.drain_hooks.append(drain)
    # After the sockets' drain hook: its last try comes once no host can end a room here any more.
    directory_sync(services).kick()  # reconcile at start: a previous run may have left ended rooms open


async def close_services(services: Services) -> None:
    await services.drain()
    await services.stop_background()
    if services.relay is not None:
        await services.relay.close()
    if services.node is not None:
        await leave_cluster(services.node)
    await services.redis.aclose()
    await services.storage.close()
    if services.embedded_redis is not None:
        await services.embedded_redis.astop()


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    """Build the ASGI app. ``services`` may be passed in when the caller opened them (``serve`` does,
    to fail fast with a clear message before binding); otherwise the lifespan opens and closes them."""
    holder: dict[str, Services] = {}

    def current() -> Services:
        return holder["services"]

    async def redis_ping() -> None:
        await current().redis.ping()

    async def database_round_trip() -> None:
        async with current().storage.db.read() as conn:
            await conn.execute(text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = services is None
        holder["services"] = services if services is not None else await open_services(settings)
        app.state.services = holder["services"]
        start_live(holder["services"])
        try:
            yield
        finally:
            if owned:
                await close_services(holder["services"])

    routes: list[BaseRoute] = []

    def draining() -> bool:
        live = holder.get("services")
        if live is None:
            return False
        return live.draining or (live.node is not None and live.node.state is not NodeState.SERVING)

    routes += health.routes({"redis": redis_ping, "database": database_round_trip}, draining)
    routes += http_auth.routes() + http_rooms.routes() + http_tickets.routes()
    routes += http_presence.routes() + http_attendance.routes() + http_turn.routes()
    routes += http_compliance.routes()
    routes += http_cohosts.routes() + http_account.routes() + http_chat_transcript.routes()
    routes += http_webhooks.routes()
    routes += http_tracks.routes()
    routes.append(
        documented_route(
            "/openapi.json",
            openapi_endpoint(lambda: routes),
            ["GET"],
            Operation(
                summary="This document",
                operation_id="openapi",
                responses={200: Reply(body=dict[str, Any])},
            ),
        )
    )
    routes.append(WebSocketRoute("/ws/signal", signal_endpoint))
    routes.append(WebSocketRoute("/ws/presence", presence_endpoint))
    routes += web.routes()
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(BodySizeLimitMiddleware, limit=MAX_BODY_BYTES),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app


__all__ = ["Route", "Services", "close_services", "create_app", "open_services"]
