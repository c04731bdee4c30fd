"""The OpenAPI 3.1 document, generated from the routes and from the msgspec Structs they decode and encode.

Every HTTP route is created with :func:`documented_route`, which attaches its :class:`Operation` objects.
An operation names its request body and response bodies as *types* (the Structs the handler decodes with
``read_json`` and encodes with :func:`struct_response`), never as hand-written JSON schemas: the document
asks msgspec for their schemas (``msgspec.json.schema_components``), so a route's docs cannot drift from
what it accepts and returns. A test fails if any HTTP route lacks its operation
(``tests/api/test_http_basics.py``) or if a hand-written ``properties`` schema appears in ``vIOP/api``
(``tests/api/test_openapi_from_structs.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import vIOP
from vIOP.errors import Error

# A time as the API writes it (docs/API.md "Times"); re-exported for the edge's Structs.
from vIOP.session.wire_time import IsoTime as IsoTime

JSON = dict[str, Any]
_REF_TEMPLATE = "#/components/schemas/{name}"


@dataclass(frozen=True, slots=True)
class Reply:
    """One documented response: its body's type (a Struct, ``str``), a tuple of Structs the handler picks
    from (``anyOf``: msgspec unions need tagged Structs), or none."""

    description: str = "OK"
    body: object = None
    media_type: str = "application/json"
    # Further representations of the same response (e.g. ``{"text/csv": str}``).
    alternatives: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Param:
    """A path, query or header parameter. ``schema`` is a type, or a JSON schema for a parameter the
    handler parses by hand (query strings are not msgspec-decoded)."""

    name: str
    location: Literal["path", "query", "header"]
    schema: object = str
    description: str | None = None
    required: bool = False


def path_param(name: str) -> Param:
    return Param(name, "path", required=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    summary: str
    operation_id: str
    responses: Mapping[int, Reply]
    security: Sequence[Mapping[str, list[str]]] | None = None
    parameters: Sequence[Param] = ()
    request: object = None  # the Struct the handler decodes (``read_json``)
    request_required: bool = True  # False: an empty body stands for the Struct's defaults


def struct_response(
    body: msgspec.Struct, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response encoded from its documented Struct (same bytes as Starlette's compact JSON)."""
    return Response(
        msgspec.json.encode(body),
        status_code=status_code,
        headers=dict(headers) if headers else None,
        media_type="application/json",
    )


def documented_route(
    path: str,
    endpoint: Callable[..., Any],
    methods: list[str],
    operations: Operation | Mapping[str, Operation],
) -> Route:
    """A Starlette route carrying its OpenAPI operations, keyed by lower-case method (a single
    :class:`Operation` documents a single-method route)."""
    if isinstance(operations, Operation):
        (method,) = methods
        operations = {method.lower(): operations}
    route = Route(path, endpoint, methods=methods)
    route.openapi_operations = dict(operations)  # type: ignore[attr-defined]
    return route


def _types_of(operation: Operation) -> list[object]:
    types: list[object] = []
    if operation.request is not None:
        types.append(operation.request)
    for reply in operation.responses.values():
        if isinstance(reply.body, tuple):
            types.extend(reply.body)
        elif reply.body is not None:
            types.append(reply.body)
        types.extend(reply.alternatives.values())
    types.extend(p.schema for p in operation.parameters if not isinstance(p.schema, dict))
    return types


def _render(operation: Operation, schema_of: Callable[[object], JSON]) -> JSON:
    rendered: JSON = {"summary": operation.summary, "operationId": operation.operation_id}
    if operation.security is not None:
        rendered["security"] = [dict(s) for s in operation.security]
    if operation.parameters:
        parameters = []
        for p in operation.parameters:
            item: JSON = {"name": p.name, "in": p.location, "required": p.required}
            item["schema"] = p.schema if isinstance(p.schema, dict) else schema_of(p.schema)
            if p.description is not None:
                item["description"] = p.description
            parameters.append(item)
        rendered["parameters"] = parameters
    if operation.request is not None:
        rendered["requestBody"] = {
            "required": operation.request_required,
            "content": {"application/json": {"schema": schema_of(operation.request)}},
        }
    responses: JSON = {}
    for status in sorted(operation.responses):
        reply = operation.responses[status]
        response: JSON = {"description": reply.description}
        if reply.body is not None:
            body = reply.body
            schema = {"anyOf": [schema_of(t) for t in body]} if isinstance(body, tuple) else schema_of(body)
            content = {reply.media_type: {"schema": schema}}
            content.update({media: {"schema": schema_of(t)} for media, t in reply.alternatives.items()})
            response["content"] = content
        responses[str(status)] = response
    rendered["responses"] = responses
    return rendered


def build_document(routes: list[BaseRoute], server_url: str | None = None) -> JSON:
    documented: list[tuple[str, str, Operation]] = []
    for route in routes:
        operations = getattr(route, "openapi_operations", None)
        if not isinstance(route, Route) or operations is None:
            continue
        documented += [(route.path, method, operation) for method, operation in operations.items()]
    types: list[object] = [Error]
    for _, _, operation in documented:
        types += [t for t in _types_of(operation) if t not in types]
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF_TEMPLATE)
    by_type = dict(zip(types, schemas, strict=True))
    paths: dict[str, JSON] = {}
    for path, method, operation in documented:
        paths.setdefault(path, {})[method] = _render(operation, by_type.__getitem__)
    doc: JSON = {
        "openapi": "3.1.0",
        "info": {
            "title": "vIOP",
            "version": vIOP.__version__,
            "description": "HTTP API of vIOP. WebSocket endpoints are described in docs/PROTOCOL.md.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
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
