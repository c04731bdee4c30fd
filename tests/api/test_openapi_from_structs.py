"""The OpenAPI bodies come from the msgspec Structs the handlers decode and encode, never from hand-written
JSON schemas (issue 12: one source of truth per contract)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import msgspec
from starlette.routing import Route

from tests.api.support import Api
from vIOP.api import openapi
from vIOP.api.http_rooms import CreateRoomBody
from vIOP.errors import Error, error_body
from vIOP.rooms.limits import MAX_ROOM_CAPACITY

API_DIR = Path(openapi.__file__).resolve().parent


def _hand_written_schemas(source: str) -> list[int]:
    """Lines of dict literals that spell a JSON-schema object by hand (``"properties"`` or
    ``"type": "object"``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Dict):
            continue
        keys = {
            k.value: v for k, v in zip(node.keys, node.values, strict=True) if isinstance(k, ast.Constant)
        }
        object_type = isinstance(keys.get("type"), ast.Constant) and keys["type"].value == "object"  # type: ignore[union-attr]
        if "properties" in keys or object_type:
            lines.append(node.lineno)
    return lines


def test_no_module_of_the_api_writes_an_object_schema_by_hand() -> None:
    found = {
        path.name: lines
        for path in sorted(API_DIR.glob("*.py"))
        if (lines := _hand_written_schemas(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_scan_finds_a_hand_written_schema() -> None:
    assert _hand_written_schemas('X = {"type": "object", "properties": {"a": {"type": "string"}}}') == [1]
    assert _hand_written_schemas('X = {"required": ["a"], "properties": {}}') == [1]


def _operations(api: Api) -> list[tuple[str, str, openapi.Operation]]:
    found = []
    for route in api.live.app.routes:
        operations = getattr(route, "openapi_operations", None)
        if isinstance(route, Route) and operations is not None:
            found += [(route.path, method, op) for method, op in operations.items()]
    return found


def _refs(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        return [schema["$ref"]] if "$ref" in schema else [r for v in schema.values() for r in _refs(v)]
    if isinstance(schema, list):
        return [r for v in schema for r in _refs(v)]
    return []


async def test_every_json_body_is_the_schema_msgspec_derives_from_its_struct(api: Api) -> None:
    doc: dict[str, Any] = (await api.http.get("/openapi.json")).json()
    components = doc["components"]["schemas"]
    operations = _operations(api)
    assert operations
    for path, method, operation in operations:
        documented = doc["paths"][path][method]
        if operation.request is not None:
            assert isinstance(operation.request, type) and issubclass(operation.request, msgspec.Struct)
            (schema,), _ = msgspec.json.schema_components(
                [operation.request], ref_template="#/components/schemas/{name}"
            )
            assert documented["requestBody"]["content"]["application/json"]["schema"] == schema, (
                method,
                path,
            )
        for status, reply in operation.responses.items():
            content = documented["responses"][str(status)].get("content", {})
            if reply.body is None:
                assert content == {}
                continue
            bodies = reply.body if isinstance(reply.body, tuple) else (reply.body,)
            structs = [b for b in bodies if b is not str and b != dict[str, Any]]
            assert all(isinstance(b, type) and issubclass(b, msgspec.Struct) for b in structs), bodies
            if structs:
                refs, _ = msgspec.json.schema_components(structs, ref_template="#/components/schemas/{name}")
                expected = refs[0] if len(refs) == 1 else {"anyOf": list(refs)}
                assert content["application/json"]["schema"] == expected, (method, path, status)
    # Every component is what msgspec makes of the documented types (one generation, no hand edits).
    for name, schema in components.items():
        assert schema.get("title") == name, name


async def test_a_struct_constraint_shows_in_the_document(api: Api) -> None:
    """Changing the Struct changes the docs: the capacity bound is read from CreateRoomBody."""
    doc: dict[str, Any] = (await api.http.get("/openapi.json")).json()
    create = doc["components"]["schemas"][CreateRoomBody.__name__]
    (capacity, _null) = create["properties"]["capacity"]["anyOf"]
    assert (capacity["minimum"], capacity["maximum"]) == (1, MAX_ROOM_CAPACITY)
    assert create["additionalProperties"] is False  # forbid_unknown_fields


def _hand_built_error_bodies(source: str) -> list[int]:
    """Lines of dict literals that build ``{"error": {"code": ...}}`` by hand."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == "error" and isinstance(value, ast.Dict):
                inner = {k.value for k in value.keys if isinstance(k, ast.Constant)}
                if "code" in inner:
                    lines.append(node.lineno)
    return lines


def test_no_module_builds_an_error_body_by_hand() -> None:
    """Every ``{"error": {"code", "message"}}`` is ``vIOP.errors.Error``: the API's refusals, the HTTP
    protocol guard's 408/431 and the OpenAPI component are one Struct."""
    package = API_DIR.parent
    found = {
        str(path.relative_to(package)): lines
        for path in sorted(package.rglob("*.py"))
        if (lines := _hand_built_error_bodies(path.read_text(encoding="utf-8")))
    }
    assert found == {}
    assert _hand_built_error_bodies('X = {"error": {"code": c, "message": m}}') == [1]


async def test_a_refusal_is_the_documented_error_struct(api: Api) -> None:
    doc: dict[str, Any] = (await api.http.get("/openapi.json")).json()
    (schema,), components = msgspec.json.schema_components(
        [Error], ref_template="#/components/schemas/{name}"
    )
    assert schema == {"$ref": "#/components/schemas/Error"}
    for name, component in components.items():
        assert doc["components"]["schemas"][name] == component
    refused = await api.http.get("/api/v1/rooms")  # no credential
    assert refused.status_code == 401
    body = msgspec.json.decode(refused.content, type=Error)
    assert body.error.code == "unauthenticated"
    assert refused.content == error_body(body.error.code, body.error.message)
    assert refused.headers["content-type"] == "application/json"
