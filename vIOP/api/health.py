"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vIOP import metrics
from vIOP.api.openapi import documented_route, json_body

Check = Callable[[], Awaitable[None]]

_STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
_READY = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "unavailable"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        "error": {"type": "object"},
    },
}


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def readiness(checks: dict[str, Check], timeout: float = 2.0) -> Callable[[Request], Awaitable[Response]]:
    async def readyz(request: Request) -> Response:
        async def run(name: str, check: Check) -> tuple[str, str]:
            try:
                await asyncio.wait_for(check(), timeout)
            except Exception:
                return name, "down"
            return name, "ok"

        results = dict(await asyncio.gather(*(run(n, c) for n, c in checks.items())))
        down = [name for name, state in results.items() if state != "ok"]
        if down:
            body = {
                "status": "unavailable",
                "checks": results,
                "error": {"code": "dependency_down", "message": f"not ready: {', '.join(down)} unreachable"},
            }
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "checks": results})

    return readyz


async def metrics_endpoint(request: Request) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


def routes(checks: dict[str, Check]) -> list[Route]:
    return [
        documented_route(
            "/healthz",
            healthz,
            ["GET"],
            {
                "get": {
                    "summary": "Liveness",
                    "operationId": "healthz",
                    "responses": {"200": json_body(_STATUS)},
                }
            },
        ),
        documented_route(
            "/readyz",
            readiness(checks),
            ["GET"],
            {
                "get": {
                    "summary": "Readiness: Redis PING and a database round trip",
                    "operationId": "readyz",
                    "responses": {
                        "200": json_body(_READY),
                        "503": json_body(_READY, "A dependency is down; it is named"),
                    },
                }
            },
        ),
        documented_route(
            "/metrics",
            metrics_endpoint,
            ["GET"],
            {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        ),
    ]
