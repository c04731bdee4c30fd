"""Uniform JSON error bodies for every refusal (``vIOP.errors.Error``: ``{"error": {"code", "message"}}``),
never a traceback."""

from __future__ import annotations

import contextlib
import logging
import math

from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from vIOP.api.audit_trail import audit_http_refusal
from vIOP.errors import Forbidden, VIOPError, error_body
from vIOP.storage.outage import is_store_outage
from vIOP.storage.redis_client import RedisError

log = logging.getLogger("vIOP.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        error_body(code, message), status_code=status, headers=headers, media_type="application/json"
    )


def _headers_for(exc: VIOPError) -> dict[str, str] | None:
    """RFC 6750: a 401 names the scheme; a 429 says when to come back (``retry_after`` when the error has it)."""
    if exc.http_status == 401:
        return {"WWW-Authenticate": 'Bearer realm="vIOP"'}
    retry_after = getattr(exc, "retry_after", None)
    if exc.http_status == 429 and isinstance(retry_after, int | float):
        return {"Retry-After": str(max(1, math.ceil(retry_after)))}
    return None


async def viop_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VIOPError)
    if exc.http_status >= 500:
        log.error("dependency failure", extra={"code": exc.code})
    if isinstance(exc, Forbidden) and request.scope["type"] == "http":
        await audit_http_refusal(request, exc)  # every 403 is a `denied` audit row
    return error_response(exc.http_status, exc.code, exc.message, headers=_headers_for(exc))


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}))


async def client_gone_handler(request: Request, exc: Exception) -> Response:
    """The client went away mid-request (or was cut off by the request deadline, vIOP/http_protocol.py):
    nobody is left to answer, and it is not a server fault."""
    assert isinstance(exc, ClientDisconnect)
    log.info("client disconnected before its request was read")
    return Response(status_code=400)


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal", "internal error; the request id is in the X-Request-Id header")


STORE_RETRY_AFTER_SECONDS = 5


async def store_error_handler(request: Request, exc: Exception) -> Response:
    """Redis or the database is unreachable (down, restarting, locked): 503 with Retry-After, as docs/API.md
    promises, not a 500 with a traceback; a WebSocket is closed 1013 (try again later). Any other driver or
    OS error is still a 500 (1011 on a WebSocket), logged with its traceback."""
    outage = is_store_outage(exc)
    if isinstance(request, WebSocket):  # Starlette passes the socket itself for a WebSocket route
        if outage:
            log.warning("store unavailable", extra={"kind": type(exc).__name__})
        else:
            log.error("unhandled error", exc_info=exc)
        with contextlib.suppress(Exception):
            await request.close(1013 if outage else 1011)
        return None  # type: ignore[return-value]  # nothing more to send on a WebSocket
    if not outage:
        return await unexpected_error_handler(request, exc)
    log.warning("store unavailable", extra={"kind": type(exc).__name__})
    return error_response(
        503,
        "unavailable",
        "a data store is unavailable right now; retry shortly",
        headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
    )


EXCEPTION_HANDLERS = {
    ClientDisconnect: client_gone_handler,
    VIOPError: viop_error_handler,
    HTTPException: http_error_handler,
    # Driver failures: store_error_handler tells an outage (503) from anything else (500).
    RedisError: store_error_handler,
    SQLAlchemyError: store_error_handler,
    OSError: store_error_handler,
    Exception: unexpected_error_handler,
}
