"""Typed errors shared by every layer.

Each error knows how it is shown at every edge: an HTTP status, a signaling error code and a WebSocket
close code. Messages are written for the person who sees them and never contain PHI, tokens or tickets.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class Error(msgspec.Struct):
    """The body of every HTTP refusal, ``{"error": {"code", "message"}}``: what the API's handlers, the
    HTTP protocol guard (408, 431) and the OpenAPI document (component ``Error``) all use."""

    error: ErrorDetail


def error_body(code: str, message: str) -> bytes:
    """An HTTP refusal's JSON body."""
    return msgspec.json.encode(Error(ErrorDetail(code, message)))


class VIOPError(Exception):
    """Base of every error vIOP turns into a clear answer instead of a traceback."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400
    ws_close_code: ClassVar[int] = 1008

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_body(self) -> Error:
        return Error(ErrorDetail(self.code, self.message))

    def as_dict(self) -> dict[str, dict[str, str]]:
        body: dict[str, dict[str, str]] = msgspec.to_builtins(self.as_body())
        return body


class ConfigError(VIOPError):
    """Invalid configuration; names the setting. Start-up stops with exit status 2."""

    code = "config_invalid"

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class BadRequest(VIOPError):
    code = "bad_request"
    http_status = 400


class Unauthenticated(VIOPError):
    code = "unauthenticated"
    http_status = 401


class Forbidden(VIOPError):
    code = "forbidden"
    http_status = 403


class NotFound(VIOPError):
    code = "not_found"
    http_status = 404


class Conflict(VIOPError):
    code = "conflict"
    http_status = 409


class PayloadTooLarge(VIOPError):
    code = "payload_too_large"
    http_status = 413
    ws_close_code = 1009


class UnsupportedMediaType(VIOPError):
    code = "unsupported_media_type"
    http_status = 415


class RateLimited(VIOPError):
    code = "rate_limited"
    http_status = 429


class Unavailable(VIOPError):
    code = "unavailable"
    http_status = 503
    ws_close_code = 1013


class StartupError(VIOPError):
    """A dependency could not be started (port busy, redis-server missing...)."""

    code = "startup_failed"
