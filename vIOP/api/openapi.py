"""The OpenAPI 3.1 document, generated from the routes themselves so it cannot drift.

Every HTTP route is created with :func:`documented_route`, which attaches its operation objects; the
document walks the app's routes. A test fails if any HTTP route lacks its operation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import vIOP

JSON = dict[str, Any]

ERROR_SCHEMA: JSON = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def json_body(schema: JSON, description: str = "OK") -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error(description: str) -> JSON:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def documented_route(
    path: str,
    endpoint: Callable[..., Any],
    methods: list[str],
    operations: Mapping[str, JSON],
) -> Route:
    """A Starlette route carrying its OpenAPI operations, keyed by lower-case method."""
    route = Route(path, endpoint, methods=methods)
    route.openapi_operations = dict(operations)  # type: ignore[attr-defined]
    return route


def build_document(routes: list[BaseRoute], server_url: str | None = None) -> JSON:
    paths: dict[str, JSON] = {}
    for route in routes:
        operations = getattr(route, "openapi_operations", None)
        if not isinstance(route, Route) or operations is None:
            continue
        item = paths.setdefault(route.path, {})
        for method, operation in operations.items():
            item[method] = operation
    doc: JSON = {
        "openapi": "3.1.0",
        "info": {
            "title": "vIOP",
            "version": vIOP.__version__,
            "description": "HTTP API of vIOP. WebSocket endpoints are described in docs/PROTOCOL.md.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def openapi_endpoint(routes_provider: Callable[[], list[BaseRoute]]) -> Callable[[Request], Any]:
    async def openapi(request: Request) -> Response:
        return JSONResponse(build_document(routes_provider()))

    return openapi
