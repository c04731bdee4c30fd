"""Health, readiness, metrics, OpenAPI, error bodies, security headers: against a real uvicorn socket."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from tests.support import LiveServer, run_live_server, test_settings
from vIOP.api.openapi import build_document
from vIOP.errors import StartupError
from vIOP.logging import configure_logging
from vIOP.server import bind_socket


async def test_health_ready_and_security_headers(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url) as http:
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "database": "ok"}
    csp = health.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert health.headers["x-content-type-options"] == "nosniff"
    assert len(health.headers["x-request-id"]) == 16


async def test_readyz_names_the_failing_dependency(data_dir: Path) -> None:
    settings = test_settings(data_dir, f"unix://{data_dir}/absent.sock")
    async with run_live_server(settings) as live, httpx.AsyncClient(base_url=live.base_url) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"] == {"redis": "down", "database": "ok"}
    assert "redis" in body["error"]["message"]


async def test_metrics_expose_process_http_and_websocket_series(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url) as http:
        await http.get("/healthz")
        text = (await http.get("/metrics")).text
    assert "process_cpu_seconds_total" in text
    assert "process_resident_memory_bytes" in text
    assert 'viop_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "viop_websocket_connections_total" in text


async def test_unknown_routes_and_methods_get_uniform_json_errors(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url) as http:
        missing = await http.get("/api/v1/nothing-here")
        wrong_method = await http.delete("/healthz")
        too_big = await http.post("/healthz", content=b"x" * (65 * 1024))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert too_big.status_code == 413
    assert set(too_big.json()["error"]) == {"code", "message"}


async def test_openapi_documents_every_http_route(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url) as http:
        doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    # HTML pages of the web client opt out with include_in_schema=False; every API route is in.
    routes = [r for r in live_server.app.routes if isinstance(r, Route) and r.include_in_schema]
    assert routes
    for route in routes:
        assert route.path in doc["paths"], f"{route.path} is missing from /openapi.json"
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in doc["paths"][route.path], f"{method} {route.path} undocumented"
    assert build_document(live_server.app.routes) == doc


async def test_query_strings_and_credentials_never_reach_the_logs(data_dir: Path, redis_url: str) -> None:
    canary = "CanaryTicket7f3a"
    stream = io.StringIO()
    handler = configure_logging("debug", stream=stream)
    try:
        async with run_live_server(test_settings(data_dir, redis_url)) as live:
            async with httpx.AsyncClient(base_url=live.base_url) as http:
                await http.get(f"/healthz?ticket={canary}&token={canary}")
                await http.get(f"/nothing/{canary}", headers={"Authorization": f"Bearer {canary}"})
                await http.post("/healthz", json={"display_name": canary, "password": canary})
            logging.getLogger("vIOP.test").info("user said %s", f'{{"display_name": "{canary}"}}')
    finally:
        logging.getLogger().removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 4
    for line in lines:
        json.loads(line)  # every line is one JSON object
    assert any('"path": "/healthz"' in line for line in lines)
    # The path segment carries the canary too: redaction must not depend on the key name alone
    # for query strings, and the path of an unknown route is still logged (it is not PHI by design).
    leaked = [line for line in lines if canary in line and "/nothing/" not in line]
    assert leaked == []


async def test_second_server_on_the_same_port_is_refused(live_server: LiveServer) -> None:
    with pytest.raises(StartupError, match="already in use"):
        bind_socket("127.0.0.1", live_server.settings.port)
