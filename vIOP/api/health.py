"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vIOP import metrics
from vIOP.api.openapi import Operation, Reply, documented_route, struct_response
from vIOP.errors import ErrorDetail

Check = Callable[[], Awaitable[None]]


class Status(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct, omit_defaults=True):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
    error: ErrorDetail | None = None  # only when a dependency is down


async def healthz(request: Request) -> Response:
    return struct_response(Status("ok"))


def readiness(
    checks: dict[str, Check], timeout: float = 2.0, draining: Callable[[], bool] | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """``draining``: this node is moving its rooms away or shutting down, so it should get no new work
    (a load balancer's or Kubernetes' readiness check then sends it elsewhere)."""

    async def readyz(request: Request) -> Response:
        async def run(name: str, check: Check) -> tuple[str, str]:
            try:
                await asyncio.wait_for(check(), timeout)
            except Exception:
                return name, "down"
            return name, "ok"

        results = dict(await asyncio.gather(*(run(n, c) for n, c in checks.items())))
        if draining is not None and draining():
            message = "this node is draining: new sessions go to other nodes"
            body = Readiness("unavailable", results, ErrorDetail("draining", message))
            return struct_response(body, status_code=503)
        down = [name for name, state in results.items() if state != "ok"]
        if down:
            unreachable = f"not ready: {', '.join(down)} unreachable"
            body = Readiness("unavailable", results, ErrorDetail("dependency_down", unreachable))
            return struct_response(body, status_code=503)
        return struct_response(Readiness("ready", results))

    return readyz


async def metrics_endpoint(request: Request) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


def routes(checks: dict[str, Check], draining: Callable[[], bool] | None = None) -> list[Route]:
    return [
        documented_route(
            "/healthz",
            healthz,
            ["GET"],
            Operation(summary="Liveness", operation_id="healthz", responses={200: Reply(body=Status)}),
        ),
        documented_route(
            "/readyz",
            readiness(checks, draining=draining),
            ["GET"],
            Operation(
                summary="Readiness: Redis PING and a database round trip",
                operation_id="readyz",
                responses={
                    200: Reply(body=Readiness),
                    503: Reply(
                        "A dependency is down (it is named), or this node is draining (code `draining`)",
                        Readiness,
                    ),
                },
            ),
        ),
        documented_route(
            "/metrics",
            metrics_endpoint,
            ["GET"],
            Operation(
                summary="Prometheus metrics",
                operation_id="metrics",
                responses={200: Reply("Prometheus text", str, media_type="text/plain")},
            ),
        ),
    ]
