"""The one place that wires concrete stores, relay and routes together: ``create_app(settings)``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from vIOP import web
from vIOP.api import health
from vIOP.api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from vIOP.api.openapi import documented_route, json_body, openapi_endpoint
from vIOP.api.responses import EXCEPTION_HANDLERS
from vIOP.settings import Settings
from vIOP.storage.bootstrap import Storage, open_storage
from vIOP.storage.embedded_redis import EmbeddedRedis

log = logging.getLogger("vIOP.app")

MAX_BODY_BYTES = 64 * 1024
ShutdownHook = Callable[[], Awaitable[None]]


@dataclass
class Services:
    """Everything the routes need, opened in the lifespan and closed in reverse order."""

    settings: Settings
    redis: aioredis.Redis
    storage: Storage
    embedded_redis: EmbeddedRedis | None = None
    # Run before uvicorn closes connections: close WebSockets with 1001, peer connections, flush.
    drain_hooks: list[ShutdownHook] = field(default_factory=list)
    draining: bool = False

    async def drain(self) -> None:
        """Stop taking new sessions and close live ones politely (SIGTERM path)."""
        if self.draining:
            return
        self.draining = True
        for hook in self.drain_hooks:
            try:
                await hook()
            except Exception:
                log.exception("drain hook failed")


def redis_client(url: str) -> aioredis.Redis:
    return aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=15)


async def open_services(settings: Settings) -> Services:
    embedded: EmbeddedRedis | None = None
    redis_url = settings.redis_url
    if redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        # Started from the event loop's thread on purpose: it is a child of this process.
        embedded.start()
        redis_url = embedded.url
    try:
        storage = await open_storage(settings, checkpoint_path=settings.audit_checkpoint_file)
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    return Services(
        settings=settings, redis=redis_client(redis_url), storage=storage, embedded_redis=embedded
    )


async def close_services(services: Services) -> None:
    await services.drain()
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
        try:
            yield
        finally:
            if owned:
                await close_services(holder["services"])

    routes: list[BaseRoute] = []
    routes += health.routes({"redis": redis_ping, "database": database_round_trip})
    routes.append(
        documented_route(
            "/openapi.json",
            openapi_endpoint(lambda: routes),
            ["GET"],
            {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {"200": json_body({"type": "object"})},
                }
            },
        )
    )
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
