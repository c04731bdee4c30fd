"""Prometheus metrics, defined once per process (prometheus_client's registry is global)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter("viop_http_requests_total", "HTTP requests served", ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "viop_http_request_duration_seconds",
    "HTTP request duration",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
WS_CONNECTIONS = Counter("viop_websocket_connections_total", "WebSocket connections accepted", ["endpoint"])
WS_REFUSED = Counter("viop_websocket_refused_total", "WebSocket connections refused", ["endpoint", "code"])
WS_ACTIVE = Gauge("viop_websocket_connections_active", "WebSocket connections open now", ["endpoint"])
SIGNAL_MESSAGES = Counter("viop_signal_messages_total", "Signaling messages received", ["type"])
ICE_REMOTE_CANDIDATES_DROPPED = Counter(
    "viop_ice_remote_candidates_dropped_total",
    "Remote ICE candidates the relay dropped instead of contacting (egress policy or per-connection cap)",
    ["reason"],
)

WEBHOOK_ATTEMPTS = Counter(
    "viop_webhook_attempts_total",
    "Webhook sends by event type and outcome (delivered: a 2xx; failed: anything else, retried later)",
    ["event", "outcome"],
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
