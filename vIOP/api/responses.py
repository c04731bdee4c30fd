"""Uniform JSON error bodies: ``{"error": {"code", "message"}}`` for every refusal, never a traceback."""

from __future__ import annotations

import logging
import math

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from vIOP.errors import VIOPError

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


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


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


EXCEPTION_HANDLERS = {
    ClientDisconnect: client_gone_handler,
    VIOPError: viop_error_handler,
    HTTPException: http_error_handler,
    Exception: unexpected_error_handler,
}
